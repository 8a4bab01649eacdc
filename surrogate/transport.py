"""A surrogate shaped like the physics: learned linear transport, pointwise response, wake maximum.

The reduced-order model is ``max_vorticity = ω_s tanh(max_wake |K_h * h| / ω_s)``: a linear,
causal convolution of the heights, then a saturated maximum over the wake. :class:`TransportNet`
has the same three parts, each learned:

1. ``channels`` linear transport kernels ``K_c`` spanning ``±span`` cells across the flow and
   ``-1 .. reach - 1`` cells downstream (nothing reaches upstream), applied by zero-padded FFT
   convolution over the patch plus the wake — a non-periodic, linear, causal map. The kernel is
   either ``"free"`` (every tap a parameter) or ``"marching"``: each spanwise wavenumber ``k``
   is carried downstream by ``modes`` learned complex rates, ``K^(k, xi) = sum_m a_m(k)
   exp(g_m(k) xi)`` for ``xi >= 1``, with free near-field columns at ``xi = -1, 0`` (the
   receptivity). That is the form of every linear marching equation that is homogeneous across
   the flow and invariant along it (``d w^/dx = G(k) w^ + source``), linear stability theory's
   normal modes; it knows no wavelength, growth rate or angle of this campaign's physics;
2. a per-location MLP of the ``channels`` transported fields (1x1 convolutions), which can
   form ``|w|`` and its saturation — or, with ``even``, simply each field's magnitude;
3. a maximum over the wake, ``wake`` cells downstream of the patch (plain, or smooth by a
   log-sum-exp with temperature ``tau``), then a small head that can saturate it.

Optionally a learned 3x3 ``source`` stencil per channel comes first (the physics' source is a
slope of the heights): a local layer on the roughness grid for the CAM family.

Because the only path from the heights to the output is the linear transport, the input
gradient is ``K^T`` applied to the pointwise sensitivities, and gradient x input or integrated
gradients read per-cell contributions the way the physics defines them.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from scipy.fft import next_fast_len
from torch import nn


class TransportNet(nn.Module):
    """Roughness ``(batch, 1, y, x)`` (standardised) -> standardised target ``(batch,)``.

    Args:
        channels: Number of learned transport kernels.
        span: Spanwise half-width of each kernel, in cells.
        reach: Streamwise reach of each kernel downstream, in cells (the patch plus the wake
            at the reference size: 64 + 16).
        wake: Cells downstream of the patch over which the maximum is taken.
        hidden: Width of the per-location MLP and of the head.
        tau: Temperature of the log-sum-exp maximum (standardised response units); 0 takes
            the plain maximum.
        kernel: ``"marching"`` (per-wavenumber downstream rates, see the module docstring)
            or ``"free"`` (every tap learned).
        modes: Downstream rates per wavenumber of a marching kernel.
        even: Make the output even in the heights, ``f(-h) = f(h)``, by construction: the
            wake maximum is taken of each transported field's magnitude ``|w_c|`` and the
            head maps the ``channels`` peaks to the output (no per-location response). The
            symmetry the ``sign_flip`` augmentation teaches, exact where the target is a
            vorticity magnitude of a linear response; the maximum of ``|w|`` also gives the
            kernel a gradient from the first step whatever the head's initial slope.
        source: Apply a learned 3x3 linear stencil per channel (``1 -> channels``, no bias)
            before the transport, which then convolves channel ``c`` with kernel ``c``. A
            local layer on the roughness grid for the CAM family to explain.
    """

    # Linear in the heights up to the wake maximum: the surrogate scales the input but does not
    # centre it. A shift would add a constant source field, take the smooth wall off zero and
    # break the h -> -h symmetry that ``even`` builds in.
    centre_input = False

    def __init__(
        self,
        channels: int = 2,
        span: int = 63,
        reach: int = 80,
        wake: int = 16,
        hidden: int = 16,
        tau: float = 0.1,
        kernel: Literal["marching", "free"] = "free",
        modes: int = 1,
        even: bool = False,
        source: bool = False,
        monotone: bool = False,
        smoothness: float = 0.0,
    ) -> None:
        super().__init__()
        if min(channels, span, reach, wake, hidden, modes) < 1 or not tau >= 0:
            raise ValueError(
                "channels, span, reach, wake, hidden and modes must be >= 1 and tau >= 0, got "
                f"{(channels, span, reach, wake, hidden, modes, tau)}"
            )
        if kernel not in ("marching", "free"):
            raise ValueError(f"kernel must be 'marching' or 'free', got {kernel!r}")
        if not smoothness >= 0:
            raise ValueError(f"smoothness must be >= 0, got {smoothness}")
        self.span, self.reach, self.wake, self.tau, self.even = span, reach, wake, tau, even
        self.smoothness = smoothness
        if kernel == "free":
            # rows: spanwise offset -span..span; columns: streamwise offset -1..reach-1
            self.taps = nn.Parameter(torch.empty(channels, 2 * span + 1, reach + 1))
            self.reset_parameters()
        else:
            # after a source stencil the march starts at the source: no free near field
            self.marching = MarchingKernel(channels, span, reach, modes, near=not source)
        # a local, linear source stencil per channel: the layer the CAM family can explain
        self.source = SourceStencil(1, channels, 3, padding=1, bias=False) if source else None
        if even:  # magnitudes pooled per channel, then the head
            self.response, peaks = None, channels
        else:
            self.response = nn.Sequential(
                nn.Conv2d(channels, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, 1, 1)
            )
            peaks = 1
        if monotone:
            self.head = MonotoneHead(peaks, hidden)
        else:
            self.head = nn.Sequential(
                OrderedLinear(peaks, hidden), nn.SiLU(), OrderedLinear(hidden, 1)
            )
            # the head starts flat: its slope is learnt from the data before the kernel moves,
            # so a head that happens to start decreasing cannot shrink the transport to zero
            nn.init.zeros_(self.head[-1].weight)

    def reset_parameters(self) -> None:
        """Draw the free kernel's taps afresh (small, so training starts near zero transport)."""
        if hasattr(self, "taps"):
            with torch.no_grad():
                self.taps.normal_().div_(self.taps[0].numel())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # checkpoints written before the marching kernel call the free taps "kernel"
        if prefix + "kernel" in state_dict:
            state_dict[prefix + "taps"] = state_dict.pop(prefix + "kernel")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def kernel(self) -> torch.Tensor:
        """Transport kernels ``(channels, 2 span + 1, reach + 1)``: row ``span + eta`` holds
        spanwise offset ``eta``, column ``1 + xi`` streamwise offset ``xi``."""
        return self.taps if hasattr(self, "taps") else self.marching()

    def penalty(self) -> torch.Tensor:
        """``smoothness`` times the kernels' spanwise roughness, a term for the training loss.

        The roughness is the energy of the kernel's spanwise differences over its energy, i.e.
        its mean squared spanwise wavenumber (``4 sin^2(k / 2)``): a scale-free preference for
        responses that vary smoothly across the flow, as a viscous flow's do. What the designs
        constrain is untouched by it to first order; what they leave free — the kernel's
        content at wavenumbers the roughness barely has — is drawn to zero instead of
        wandering into the per-cell contributions.
        """
        kernel = self.kernel
        if self.smoothness == 0:
            return kernel.new_zeros(())
        steps = kernel.diff(dim=1)
        return self.smoothness * steps.pow(2).sum() / kernel.pow(2).sum().clamp_min(1e-30)

    def transport(self, h: torch.Tensor) -> torch.Tensor:
        """Transported fields ``(batch, channels, y, x + wake)`` over the patch and the wake.

        Always in float32 at least: torch's FFTs take no bfloat16 (nor, on most sizes,
        float16), so under mixed-precision autocast this part runs with autocast off.
        """
        device = h.device.type
        if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                return self.transport(h)
        if h.dtype in (torch.float16, torch.bfloat16):
            h = h.float()
        ny, nx = h.shape[-2:]
        lx = nx + self.wake
        fy = next_fast_len(ny + self.span, real=True)  # ny + span rows: no offset wraps
        fx = next_fast_len(nx + lx + 1, real=True)
        rows = torch.arange(-self.span, self.span + 1, device=h.device) % fy
        cols = torch.arange(-1, self.reach, device=h.device) % fx
        kernel = self.kernel
        wrapped = kernel.new_zeros(kernel.shape[0], fy, fx)
        wrapped[:, rows[:, None], cols[None, :]] = kernel
        spectrum = torch.fft.rfft2(h, s=(fy, fx)) * torch.fft.rfft2(wrapped)
        if torch.is_grad_enabled():
            return torch.fft.irfft2(spectrum, s=(fy, fx))[..., :ny, :lx]
        # without autograd (deletion, insertion, ROAD: most forward passes of an evaluation):
        # the inverse along y, then along x for the ny rows kept only: a third less work, and
        # irfft2's numbers bit for bit with torch's CPU FFT (MKL) here (tested; to rounding on
        # other back ends). With autograd irfft2 stays: its backward differs in the last bit
        rows = torch.fft.ifft(spectrum, n=fy, dim=-2)[..., :ny, :]
        return torch.fft.irfft(rows, n=fx, dim=-1)[..., :lx]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised prediction ``(batch,)`` for a standardised field ``(batch, 1, y, x)``."""
        nx = x.shape[-1]
        if self.source is not None:
            x = self.source(x)  # (batch, channels, y, x), transported channel by channel
        wake = self.transport(x)[..., nx:]  # (batch, channels, y, wake)
        # even: each channel's magnitude; otherwise a per-location response (one channel)
        field = wake.abs() if self.response is None else self.response(wake)
        flat = field.flatten(2)  # (batch, peaks, cells)
        if self.tau == 0:
            peak = flat.amax(dim=2)
        else:
            peak = self.tau * (torch.logsumexp(flat / self.tau, dim=2) - math.log(flat.shape[2]))
        return self.head(peak).squeeze(1)


class SourceStencil(nn.Conv2d):
    """The source's 3x3 convolution from one input channel; its parameters are a Conv2d's.

    Without autograd, on the CPU in float32 and for two designs or more, it is computed as
    nine fused multiply-adds per output channel in row-major tap order: the numbers of
    torch's oneDNN convolution bit for bit (``tests/surrogate/test_transport.py``), about six
    times faster for one input channel. oneDNN takes another kernel for a single design, and
    the backward pass is the convolution's own, so those keep ``conv2d``. A subclass rather
    than a function: the CAM family's hooks on the layer see it as before.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            torch.is_grad_enabled()
            or x.device.type != "cpu"
            or x.dtype != torch.float32
            or x.dim() != 4
            or x.shape[0] < 2
            or self.in_channels != 1
            or self.kernel_size != (3, 3)
            or self.bias is not None
            or self.padding != (1, 1)
            or self.stride != (1, 1)
            or self.dilation != (1, 1)
            or self.groups != 1
            or self.padding_mode != "zeros"
        ):
            return super().forward(x)
        ny, nx = x.shape[-2:]
        padded = nn.functional.pad(x, (1, 1, 1, 1))
        out = x.new_zeros(x.shape[0], self.out_channels, ny, nx)
        for c in range(self.out_channels):
            for i in range(3):
                for j in range(3):
                    tap = padded[:, :, i : i + ny, j : j + nx]
                    out[:, c : c + 1].addcmul_(tap, self.weight[c, 0, i, j])
        return out


class MonotoneHead(nn.Module):
    """A readout that never decreases in its inputs: ``b + v . tanh(W p + c)``, ``v, W >= 0``.

    The target is the largest vorticity magnitude downstream; a larger transported peak cannot
    lower it. Holding the readout to that keeps the attribution's sign honest: integrated
    gradients of the network are the transport's per-cell contributions times
    ``(g(peak) - g(0)) / peak``, and a readout with a dip below the data's range (free to
    form one, since no design has a near-zero peak) turns that factor negative and flips the
    whole map of every low-vorticity design. ``tanh`` lets it saturate as the flow does.
    Non-negative weights are stored through ``softplus``.
    """

    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(hidden, inputs))
        self.bias = nn.Parameter(torch.empty(hidden))
        self.slope = nn.Parameter(torch.empty(1, hidden))
        self.offset = nn.Parameter(torch.empty(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Unit-scale inner slopes spread over the peaks' range, a small positive outer slope."""
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)  # softplus: slopes 0.31 .. 1.31
            self.bias.uniform_(-2.0, 2.0)
            self.slope.fill_(-3.0)  # softplus(-3) = 0.049: starts almost flat, never decreasing
            self.offset.zero_()

    def forward(self, peaks: torch.Tensor) -> torch.Tensor:
        """``(batch, inputs)`` -> ``(batch, 1)``."""
        inner = torch.tanh(ordered_matmul(peaks, nn.functional.softplus(self.weight)) + self.bias)
        return ordered_matmul(inner, nn.functional.softplus(self.slope)) + self.offset


def ordered_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` for ``x (batch, k)``, ``weight (n, k)``, summed over ``k`` in order.

    Elementwise products and sums only, so each row's result depends on that row alone: a
    BLAS product splits the batch over threads and gives the rows at the end of a thread's
    share a different summation order, so a design's prediction (and its attributions)
    changed in the last bit with the number of threads or processes and with its place in a
    batch. The heads are narrow (``k, n <= hidden``), so the loop costs nothing measurable.
    """
    out = x[:, :1] * weight[:, 0]
    for k in range(1, x.shape[1]):
        out = out + x[:, k : k + 1] * weight[:, k]
    return out


class OrderedLinear(nn.Linear):
    """:class:`torch.nn.Linear` (same parameters) computed by :func:`ordered_matmul`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = ordered_matmul(x.flatten(0, -2), self.weight).unflatten(0, x.shape[:-1])
        return out if self.bias is None else out + self.bias


class MarchingKernel(nn.Module):
    """Kernels built from per-wavenumber downstream rates (the ``"marching"`` transport).

    Across the flow the kernel lives on a period of ``2 span + 2`` cells (wavenumbers
    ``k_j = 2 pi j / (2 span + 2)``); along it, column ``xi >= 1`` is
    ``sum_m a_m(k) exp(g_m(k) xi)`` and columns ``xi = -1, 0`` are free (``near``). Without
    ``near`` the march starts at ``xi = 0`` and nothing reaches upstream: the form for a
    field that a local source stencil has already differentiated. Rates are stored divided by
    ``RATE_SCALE`` so that one optimiser step changes ``exp(g xi)`` gently over the kernel's
    ``reach`` cells.
    """

    RATE_SCALE = 0.1
    INIT = 1.0  # amplitudes start at INIT / (2 span + 1)

    def __init__(self, channels: int, span: int, reach: int, modes: int, near: bool = True) -> None:
        super().__init__()
        self.span, self.reach = span, reach
        bins = span + 2  # rfft bins of a period of 2 span + 2
        # (..., 2): real and imaginary parts
        self.rate = nn.Parameter(torch.empty(channels, modes, bins, 2))
        self.amplitude = nn.Parameter(torch.empty(channels, modes, bins, 2))
        self.near = nn.Parameter(torch.empty(channels, 2, bins, 2)) if near else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Slow decay, no drift, small random amplitudes."""
        scale = self.INIT / (2 * self.span + 1)
        with torch.no_grad():
            self.rate.zero_()
            self.rate[..., 0] = -0.02 / self.RATE_SCALE
            self.amplitude.normal_().mul_(scale)
            if self.near is not None:
                self.near.normal_().mul_(scale)

    def forward(self) -> torch.Tensor:
        """Kernels ``(channels, 2 span + 1, reach + 1)`` as :attr:`TransportNet.kernel`."""
        first = 1 if self.near is not None else 0
        xi = torch.arange(first, self.reach, dtype=self.rate.dtype, device=self.rate.device)
        rate = torch.view_as_complex(self.rate * self.RATE_SCALE)  # (c, m, k)
        amplitude = torch.view_as_complex(self.amplitude)
        far = (amplitude[..., None] * torch.exp(rate[..., None] * xi)).sum(1)  # (c, k, xi)
        if self.near is not None:
            near = torch.view_as_complex(self.near).transpose(1, 2)  # (c, k, 2): xi = -1, 0
        else:
            near = far.new_zeros(*far.shape[:2], 1)  # xi = -1: nothing upstream
        spectrum = torch.cat([near, far], dim=2)  # (c, k, reach + 1)
        period = 2 * self.span + 2
        periodic = torch.fft.irfft(spectrum, n=period, dim=1)  # rows: eta mod period
        rows = torch.arange(-self.span, self.span + 1, device=periodic.device) % period
        return periodic[:, rows]
