"""explain(): shapes, default layer, consistency with the single-batch maps."""

from __future__ import annotations

import torch

from explain.api import default_layer, explain, spatial_layers
from explain.methods import gradient_maps
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
        ds["attribution"].sel({"method": "hirescam", "interpolation": "none"}).values
    )
    torch.testing.assert_close(blocks[:, ::2, ::2], maps["hirescam"])
    grad = torch.from_numpy(
        ds["attribution"].sel({"method": "gradient", "interpolation": "bilinear"}).values
    )
    torch.testing.assert_close(grad, maps["gradient"])
