"""SSIM and min-max scaling: hand-computed cases, properties, and scikit-image where installed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from explain.evaluation.similarity import scale01, ssim, ssim_map

C1, C2 = 0.01**2, 0.03**2


@pytest.fixture
def smooth_maps() -> tuple[np.ndarray, np.ndarray]:
    """Two batches of smooth random maps ``(3, 24, 20)`` in ``[0, 1]``."""
    rng = np.random.default_rng(0)
    a = gaussian_filter(rng.normal(size=(3, 24, 20)), sigma=(0, 2, 2))
    b = 0.6 * a + 0.4 * gaussian_filter(rng.normal(size=(3, 24, 20)), sigma=(0, 2, 2))
    return scale01(a), scale01(b)


def test_scale01_per_sample_and_constant_maps() -> None:
    maps = np.array([[[1.0, 3.0], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]]])
    expected = np.array([[[0.0, 0.5], [0.25, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_array_equal(scale01(maps), expected)
    np.testing.assert_array_equal(scale01(-maps[:1]), 1 - expected[:1])


def test_constant_maps_by_hand() -> None:
    # constant maps: mu = the constants, all (co)variances 0 -> (2 ab + C1) / (a^2 + b^2 + C1)
    a = np.full((1, 6, 5), 0.2)
    b = np.full((1, 6, 5), 0.6)
    expected = (2 * 0.2 * 0.6 + C1) / (0.2**2 + 0.6**2 + C1)
    np.testing.assert_allclose(ssim_map(a, b), np.full((1, 6, 5), expected), rtol=1e-12)
    np.testing.assert_allclose(ssim(a, b), [expected], rtol=1e-12)
    np.testing.assert_allclose(ssim(a, a), [1.0], rtol=1e-12)


def test_identity_symmetry_and_negation(smooth_maps: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = smooth_maps
    np.testing.assert_allclose(ssim(a, a), np.ones(3), rtol=1e-12)
    np.testing.assert_array_equal(ssim(a, b), ssim(b, a))
    assert np.all(ssim(a, b) < 1)
    assert np.all(ssim(a, b) > 0.3)
    # the negative, rescaled, is 1 - a: anti-correlated structure everywhere
    assert np.all(ssim(a, scale01(-a)) < 0)


def test_maps_smaller_than_the_window() -> None:
    # layer-resolution maps (4 x 4) are smaller than the 11 x 11 window: reflect padding copes
    a = scale01(np.arange(32.0).reshape(2, 4, 4))
    assert ssim(a, a) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="crop needs maps larger"):
        ssim(a, a, crop=True)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="sample, y, x"):
        ssim(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="sample, y, x"):
        ssim(np.zeros((4, 4)), np.zeros((4, 4)))


def test_against_scikit_image(smooth_maps: tuple[np.ndarray, np.ndarray]) -> None:
    metrics = pytest.importorskip("skimage.metrics")
    a, b = smooth_maps
    ours_map = ssim_map(a, b)
    ours = ssim(a, b, crop=True)
    for i in range(len(a)):
        theirs, theirs_map = metrics.structural_similarity(
            a[i],
            b[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            full=True,
        )
        np.testing.assert_allclose(ours_map[i], theirs_map, rtol=1e-10, atol=1e-12)
        assert ours[i] == pytest.approx(theirs, rel=1e-10)
