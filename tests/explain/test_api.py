"""explain(): shapes, default layer, consistency with the single-batch maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from data.errors import InputError
from explain.api import MIXED_UNITS, cam_applies, default_methods, every_method, explain
from explain.catalogue import METHODS
from explain.gradient import gradient_maps
from explain.layers import default_layer, spatial_layers
from surrogate import PhysicalSurrogate, RoughnessCNN


def model() -> PhysicalSurrogate:
    torch.manual_seed(0)
    net = PhysicalSurrogate(RoughnessCNN(widths=(4, 8), kernel_size=(3, 5), head="gap"))
    net.input_norm.set_statistics(0.0, 0.05)
    net.target_norm.set_statistics(0.1, 0.04)
    return net


def test_default_layer_feeds_the_pooling() -> None:
    net = model()
    assert default_layer(net, (16, 16)) == "network.features"
    names = dict(spatial_layers(net, (16, 16)))
    assert names["network.features.stage1"] == (16, 16)
    assert names["network.features.stage2"] == (8, 8)


def test_explain_matches_one_pass_maps_across_batches() -> None:
    net = model()
    x = 0.05 * torch.randn(5, 16, 16)
    ds = explain(net, x, methods=["cam", "hirescam", "gradient"], batch_size=2)
    assert ds["attribution"].shape == (5, 3, 2, 16, 16)
    assert ds["attribution_native"].shape == (5, 2, 8, 8)
    assert ds.attrs["layer"] == "network.features"
    y, maps = gradient_maps(net, x[:, None], "network.features", ["hirescam", "gradient"])
    torch.testing.assert_close(torch.from_numpy(ds["prediction"].values), y)
    native = torch.from_numpy(ds["attribution_native"].sel(layer_method="hirescam").values)
    torch.testing.assert_close(native, maps["hirescam"])
    blocks = torch.from_numpy(
        ds["attribution"].sel(attribution_method="hirescam", interpolation="none").values
    )
    torch.testing.assert_close(blocks[:, ::2, ::2], maps["hirescam"])
    grad = torch.from_numpy(
        ds["attribution"].sel(attribution_method="gradient", interpolation="bilinear").values
    )
    torch.testing.assert_close(grad, maps["gradient"])


def test_every_variable_is_described_and_methods_select_by_name() -> None:
    ds = explain(model(), 0.05 * torch.randn(3, 16, 16), methods=["cam", "hirescam", "gradient"])
    for name, var in ds.variables.items():
        assert {"units", "long_name"} <= set(var.attrs), name
    # a dimension named "method" would collide with the method= keyword of sel
    cam = ds["attribution"].sel(attribution_method="cam")
    assert cam.dims == ("sample", "interpolation", "y", "x")
    np.testing.assert_array_equal(cam.values, ds["attribution"].values[:, 0])
    layer, gradient = METHODS["cam"].units, METHODS["gradient"].units
    assert ds["attribution"].attrs["units"] == MIXED_UNITS
    assert ds["attribution"].attrs["units_by_method"] == (
        f"cam: {layer}; hirescam: {layer}; gradient: {gradient}"
    )
    assert ds["attribution_native"].attrs["units"] == layer  # one unit: CF's single string
    assert "units_by_method" not in ds["attribution_native"].attrs


def test_every_method_through_explain_matches_its_own_function() -> None:
    from explain.guided import guided_backprop
    from explain.perturbation import poly_cam, score_cam

    net = model()
    x = 0.05 * torch.randn(3, 16, 16)
    ds = explain(net, x, methods=["scorecam", "polycam", "guided-backprop"], batch_size=2)
    assert list(ds["attribution_method"].values) == [
        "scorecam",
        "polycam+",
        "polycam-",
        "polycam+-",
        "guided-backprop",
    ]
    assert ds.attrs["polycam_layers"] == "network.features.stage1,network.features"
    assert ds.attrs["polycam_shape"] == "16x16"  # the native grid, drawn on the figures
    assert ds.attrs["layer_shape"] == "8x8"
    assert ds.attrs["not_recommended"] == "guided-backprop"
    _, score = score_cam(net, x[:, None], "network.features")
    native = ds["attribution_native"].sel(layer_method="scorecam").values
    torch.testing.assert_close(torch.from_numpy(native), score)
    _, poly = poly_cam(net, x[:, None], ["network.features.stage1", "network.features"])
    pyramid = ds["attribution_polycam"].sel(polycam_method="polycam+-").values
    torch.testing.assert_close(torch.from_numpy(pyramid), poly["polycam+-"])
    _, guided = guided_backprop(net, x[:, None])
    values = (
        ds["attribution"].sel(attribution_method="guided-backprop", interpolation="none").values
    )
    torch.testing.assert_close(torch.from_numpy(values), guided)


def test_relu_and_normalise_options() -> None:
    net = model()
    x = 0.05 * torch.randn(4, 16, 16)
    plain = explain(net, x, methods=["hirescam"])
    scaled = explain(net, x, methods=["hirescam"], relu=True, normalise=True)
    raw = plain["attribution_native"].values.clip(min=0)
    peak = raw.max(axis=(2, 3), keepdims=True)
    expected = raw / np.where(peak > 0, peak, 1)
    np.testing.assert_allclose(scaled["attribution_native"].values, expected, rtol=1e-6)
    assert scaled.attrs["relu"] == "true"
    assert list(scaled["method_units"].values) == ["1"]


def test_cam_residual_is_reported_and_cam_refused_off_the_pooled_layer() -> None:
    net = model()
    x = 0.05 * torch.randn(4, 16, 16)
    ds = explain(net, x, methods=["cam"])
    assert ds.attrs["cam_relative_residual"] < 1e-4  # float32 sums
    with pytest.raises(InputError, match="global-average-pool"):
        explain(net, x, methods=["cam"], layer="network.features.stage1")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": ["gradcam", "occlusion"]}, "unknown method 'occlusion'"),
        ({"layer": "network.missing"}, "not found"),
        ({"layer": "network.fc"}, "no spatial"),
        ({"interpolation": ["spline"]}, "unknown interpolation"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        explain(model(), 0.05 * torch.randn(2, 16, 16), **kwargs)
    assert "\n" not in str(err.value)


def test_the_python_api_validates_like_the_command_line() -> None:
    """NaN heights, NaN weights and a grid the model was not trained on: one-line errors."""
    from explain.evaluation.protocol import evaluate

    x = 0.05 * torch.randn(3, 16, 16)
    bad = x.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(InputError, match=r"roughness has NaN or Inf values \(first in design 1\)"):
        explain(model(), bad)
    with pytest.raises(InputError, match="NaN or Inf"):
        evaluate(model(), bad.numpy(), ["gradient"], steps=2, sanity_samples=0)
    net = model()
    with torch.no_grad():
        net.network.fc.weight[0, 0] = float("inf")
    with pytest.raises(InputError, match=r"model weight 'network\.fc\.weight' has NaN or Inf"):
        explain(net, x)
    net = model()
    net.grid_shape = (32, 32)  # what a checkpoint records
    with pytest.raises(InputError, match="grid is 16x16 but the model was trained on 32x32"):
        explain(net, x)
    with pytest.raises(InputError, match="must be \\(batch, y, x\\) or \\(batch, 1, y, x\\)"):
        explain(model(), x[:, None].expand(3, 2, 16, 16))  # two channels


def test_layer_maps_must_lie_on_the_roughness_grid() -> None:
    """A network whose layers cover the patch plus the wake has no layer map to draw."""
    from surrogate.transport import TransportNet

    net = PhysicalSurrogate(TransportNet(channels=2, span=15, reach=20, wake=4, hidden=8)).eval()
    assert default_layer(net, (16, 16)) == "input_norm"  # the only map on the 16x16 grid
    with pytest.raises(InputError, match=r"4 map, not a map on the 16x16 roughness grid"):
        explain(net, torch.zeros(2, 16, 16), methods=["hirescam"], layer="network.response")
    ds = explain(net, torch.zeros(2, 16, 16), methods=["integrated-gradients"], ig_steps=4)
    assert ds["attribution"].shape == (2, 1, 2, 16, 16)


def test_default_methods_put_gradcam_where_cam_is_undefined(tiny_model: nn.Module) -> None:
    """CAM behind the CNN's pooled linear head; Grad-CAM at the transport network's source."""
    from surrogate.transport import TransportNet

    assert cam_applies(tiny_model, (16, 16), "network.features")
    assert not cam_applies(tiny_model, (16, 16), "network.features.stage1")  # not pooled
    ds = explain(tiny_model, 0.05 * torch.randn(2, 16, 16))
    assert list(ds["attribution_method"].values) == ["cam", "hirescam", "layercam"]
    torch.manual_seed(0)
    small = {"channels": 2, "span": 15, "reach": 20, "wake": 4, "hidden": 8}
    net = PhysicalSurrogate(TransportNet(**small, source=True, even=True, tau=0.0)).eval()
    with torch.no_grad():
        net.network.head[-1].weight.fill_(0.5)  # a head with a slope, as after training
    assert default_layer(net, (16, 16)) == "network.source"
    assert default_methods(net, (16, 16), "network.source") == ("gradcam", "hirescam", "layercam")
    ds = explain(net, 0.05 * torch.randn(2, 16, 16))
    assert list(ds["attribution_method"].values) == ["gradcam", "hirescam", "layercam"]
    # every method that applies, the evaluation's default: all of them, CAM only where defined
    every = every_method(net, (16, 16))
    assert "cam" not in every
    assert {"gradcam", "integrated-gradients", "abs-height"} <= set(every)
    assert every_method(tiny_model, (16, 16)) == ("cam", *every)


def test_a_single_name_is_one_name_not_its_letters(tiny_model: nn.Module) -> None:
    """``interpolation="none"`` once read as the modes n, o, n, e; a lone method name alike."""
    x = 0.05 * torch.randn(2, 16, 16)
    ds = explain(tiny_model, x, methods="hirescam", interpolation="none")
    assert list(ds["attribution_method"].values) == ["hirescam"]
    assert list(ds["interpolation"].values) == ["none"]
    listed = explain(tiny_model, x, methods=["hirescam"], interpolation=["none"])
    torch.testing.assert_close(
        torch.from_numpy(ds["attribution"].values), torch.from_numpy(listed["attribution"].values)
    )
