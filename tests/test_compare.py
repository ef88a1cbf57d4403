"""Comparison on one physical grid: profiles, contrast, correlation, FRC."""

import numpy as np
import pytest

from napari_phase.compute.compare import (
    CompareError,
    PlacedImage,
    check_same_dataset,
    common_limits,
    correlation,
    fourier_ring_correlation,
    line_profile,
    local_centroid,
    robust_limits,
)


def plane(x, y):
    """A linear function of scan-frame position (exact under linear
    interpolation)."""
    return 1.0 + x + 2.0 * y


def placed(scale, translate, shape, name):
    x = translate[0] + np.arange(shape[0])[:, None] * scale
    y = translate[1] + np.arange(shape[1])[None, :] * scale
    return PlacedImage(plane(x, y), (scale, scale), translate, name)


def test_profile_uses_scale_and_translate():
    coarse = placed(2.0, (0.0, 0.0), (10, 10), 'coarse')
    fine = placed(0.5, (-1.0, 3.0), (40, 40), 'fine')
    start, end = (2.0, 4.0), (12.0, 10.0)
    profile = line_profile([coarse, fine], start, end)
    assert profile.names == ('coarse', 'fine')
    assert profile.distance[1] == pytest.approx(0.5)  # finest pixel
    length = np.hypot(10, 6)
    t = profile.distance / length
    expected = plane(2 + 10 * t, 4 + 6 * t)
    np.testing.assert_allclose(profile.values[0], expected, atol=1e-9)
    np.testing.assert_allclose(profile.values[1], expected, atol=1e-9)


def test_profile_is_nan_outside_an_image():
    small = placed(1.0, (0.0, 0.0), (5, 5), 'small')
    profile = line_profile([small], (0.0, 0.0), (8.0, 0.0), spacing=1.0)
    np.testing.assert_allclose(profile.values[0, :5], plane(np.arange(5), 0))
    assert np.all(np.isnan(profile.values[0, 5:]))


def test_robust_limits_ignore_outliers():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (100, 100))
    image[0, 0] = 1e6
    image[1, 1] = np.nan
    low, high = robust_limits(image, (1, 99))
    assert 0 < low < 0.03 and 0.97 < high < 1


def test_common_limits_use_the_shared_field_of_view():
    inner = placed(1.0, (0.0, 0.0), (10, 10), 'inner')
    padded_data = np.pad(inner.data, 10, constant_values=-100.0)
    padded = PlacedImage(padded_data, (1.0, 1.0), (-10.0, -10.0), 'padded')
    limits = common_limits([inner, padded], (0, 100))
    assert limits[0] == pytest.approx(limits[1])
    assert limits[0] == pytest.approx((plane(0, 0), plane(9, 9)))


def test_correlation_across_grids():
    coarse = placed(2.0, (0.0, 0.0), (10, 10), 'coarse')
    fine = placed(0.5, (1.0, 1.0), (30, 30), 'fine')
    assert correlation(coarse, fine) == pytest.approx(1.0)
    inverted = PlacedImage(-fine.data, fine.scale, fine.translate, 'inv')
    assert correlation(coarse, inverted) == pytest.approx(-1.0)


def test_correlation_matches_numpy_on_one_grid():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 16, 16))
    value = correlation(PlacedImage(a), PlacedImage(a + b))
    expected = np.corrcoef(a.ravel(), (a + b).ravel())[0, 1]
    assert value == pytest.approx(expected)


def test_no_overlap_is_a_clear_error():
    a = placed(1.0, (0.0, 0.0), (5, 5), 'a')
    b = placed(1.0, (100.0, 0.0), (5, 5), 'b')
    with pytest.raises(CompareError, match='do not overlap'):
        correlation(a, b)


def test_frc_resolution_of_band_limited_signal():
    """Signal band-limited at 0.25 Å⁻¹ (period 4 Å) plus independent noise
    in each copy: the FRC falls at the band limit (within the two rings
    that the Hann window smears it by)."""
    rng = np.random.default_rng(2)
    n, pixel, cutoff = 128, 0.5, 0.25
    k = np.hypot(*np.meshgrid(*[np.fft.fftfreq(n, pixel)] * 2))
    signal = np.real(np.fft.ifft2(
        np.fft.fft2(rng.standard_normal((n, n))) * (k < cutoff)
    ))
    noise = 0.1 * signal.std()
    a, b = (PlacedImage(signal + noise * rng.standard_normal((n, n)),
                        (pixel, pixel), name=name) for name in 'ab')
    result = fourier_ring_correlation(a, b)
    assert not result.limited_by_sampling
    ring = 1 / (n * pixel)
    assert 1 / (cutoff + 2 * ring) < result.resolution < 1 / (cutoff - ring)
    assert np.all(result.frc[1:10] > 0.9)


def test_frc_of_identical_images_is_limited_by_sampling():
    rng = np.random.default_rng(3)
    image = PlacedImage(rng.standard_normal((32, 32)), (0.7, 0.7))
    result = fourier_ring_correlation(image, image, threshold=1 / 7)
    assert result.limited_by_sampling
    assert result.resolution == pytest.approx(1.4)


def test_results_of_different_datasets_are_refused():
    check_same_dataset({'dpc': 'a.h5', 'parallax': 'a.h5', 'x': None})
    with pytest.raises(CompareError, match="'ptycho' from 'b.h5'"):
        check_same_dataset({'dpc': 'a.h5', 'ptycho': 'b.h5'})


def test_local_centroid_of_a_placed_disk():
    pixel, origin = 0.5, (-3.0, 2.0)
    x = origin[0] + np.arange(80)[:, None] * pixel
    y = origin[1] + np.arange(80)[None, :] * pixel
    centre = (14.3, 21.1)
    disk = np.clip(1 - ((x - centre[0])**2 + (y - centre[1])**2) / 16, 0, None)
    image = PlacedImage(disk, (pixel, pixel), origin)
    found = local_centroid(image, (12.0, 23.0), radius=9.0)
    np.testing.assert_allclose(found, centre, atol=0.05)
