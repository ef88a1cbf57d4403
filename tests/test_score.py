"""Scoring a reconstruction against the true phase: registration, sign."""

import numpy as np
import pytest
from scipy import ndimage

from napari_phase.compute.score import (
    Score,
    quality,
    register,
    relative_error,
    rotation_error,
    score,
)


def blobs(x, y):
    """A smooth, aperiodic test phase (Gaussian blobs) at positions x, y."""
    centres = [(12.0, 20.0, 5.0), (40.0, 30.0, 7.0), (25.0, 50.0, 4.0),
               (50.0, 8.0, 6.0), (30.0, 32.0, 3.0)]
    return sum(np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s**2))
               for cx, cy, s in centres)


def sampled(pixel, shape, shift=(0.0, 0.0)):
    """``blobs`` on a grid of ``pixel`` Å, displaced by ``shift`` Å: pixel
    (i, j) shows the phase at (i, j)·pixel − shift."""
    x = np.arange(shape[0])[:, None] * pixel - shift[0]
    y = np.arange(shape[1])[None, :] * pixel - shift[1]
    return blobs(x, y)


def test_identical_images_score_one():
    truth = sampled(1.0, (64, 64))
    result = score(truth, truth)
    assert result.correlation == pytest.approx(1.0, abs=1e-9)
    assert result.shift_px == pytest.approx((0.0, 0.0), abs=1e-6)
    assert result.sign == 1 and not result.inverted


def test_shifted_copy_registers():
    truth = sampled(1.0, (64, 64))
    shifted = sampled(1.0, (64, 64), shift=(3.3, -2.6))
    assert np.corrcoef(truth.ravel(), shifted.ravel())[0, 1] < 0.9
    result = score(shifted, truth)
    assert result.shift_px == pytest.approx((3.3, -2.6), abs=0.25)
    assert result.correlation > 0.99


def test_sign_flip_is_detected_and_reported():
    truth = sampled(1.0, (64, 64))
    flipped = 5.0 - 2.0 * sampled(1.0, (64, 64), shift=(-1.5, 2.0))
    result = score(flipped, truth)
    assert result.sign == -1 and result.inverted
    assert result.correlation < -0.99
    assert result.shift_px == pytest.approx((-1.5, 2.0), abs=0.25)
    assert 'inverted' in str(result)


def test_other_pixel_size_and_origin_are_resampled():
    truth = sampled(1.0, (64, 64))
    # finer pixels (0.25 Å), pixel (0, 0) at (-4, 2) Å of the truth frame
    x = -4.0 + np.arange(280)[:, None] * 0.25
    y = 2.0 + np.arange(240)[None, :] * 0.25
    fine = blobs(x, y)
    result = score(fine, truth, image_pixel=0.25, image_origin=(-4.0, 2.0))
    assert result.shift_px == pytest.approx((0.0, 0.0), abs=0.2)
    assert result.correlation > 0.99
    # coarser pixels (2 Å) are compared on the truth grid too
    coarse = sampled(2.0, (32, 32))
    assert score(coarse, truth, image_pixel=2.0).correlation > 0.98


def test_unrelated_noise_scores_low():
    rng = np.random.default_rng(0)
    truth = sampled(1.0, (64, 64))
    result = score(rng.standard_normal((64, 64)), truth)
    assert abs(result.correlation) < 0.3


def test_register_respects_max_shift():
    rng = np.random.default_rng(1)
    reference = rng.standard_normal((40, 40))
    moved = np.roll(reference, (15, 0), axis=(0, 1))
    shift, sign = register(moved, reference, max_shift=0.5)
    assert tuple(shift) == (15, 0) and sign == 1
    shift, _ = register(moved, reference, max_shift=0.2)
    assert np.all(np.abs(shift) <= 8)


def test_score_is_a_plain_value():
    assert str(Score(0.5, (0.0, 0.0), 1)) == 'r = +0.500'


def test_quality_measures_the_phase_scale_in_its_band():
    truth = sampled(0.5, (128, 128))
    same = quality(truth, truth, 0.5, 0.5, resolution=1.0)
    assert same.correlation == pytest.approx(1, abs=1e-3)
    assert same.slope == pytest.approx(1, abs=1e-3)
    weak = quality(0.3 * truth + 2.0, truth, 0.5, 0.5, resolution=1.0)
    assert weak.correlation == pytest.approx(1, abs=1e-3)
    assert weak.slope == pytest.approx(0.3, abs=1e-3)
    inverted = quality(-truth, truth, 0.5, 0.5, resolution=1.0)
    assert inverted.inverted and inverted.slope == pytest.approx(-1, 1e-3)
    assert 'inverted' in str(inverted)


def test_a_smooth_background_does_not_move_the_registration():
    """A broad hump twice the blobs' height (as integration leaves in a
    DPC phase): registered on the band-passed images, the shift stays
    within a pixel and the band r near 1 (registered on the raw images,
    the peak went 30 px astray and r fell to +0.29)."""
    truth = sampled(0.5, (128, 128))
    x, y = np.indices(truth.shape) * 0.5
    hump = 2.0 * np.exp(-((x - 60) ** 2 + (y - 60) ** 2) / (2 * 15.0**2))
    found = quality(truth + hump, truth, 0.5, 0.5, resolution=1.0)
    assert np.abs(found.registered.shift_px).max() <= 1.0
    assert found.correlation > 0.9


def test_quality_compares_with_the_truth_seen_through_the_psf():
    truth = sampled(0.5, (128, 128))
    x = np.arange(-20, 21)  # a Gaussian of σ = 3 Å
    kernel = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 6.0**2))
    kernel /= kernel.sum()
    blurred = ndimage.correlate(truth, kernel, mode='nearest')
    plain = quality(blurred, truth, 0.5, 0.5, resolution=1.0)
    seen = quality(blurred, truth, 0.5, 0.5, resolution=1.0, psf=kernel)
    assert plain.slope < 0.8
    assert seen.slope == pytest.approx(1, abs=0.01)
    assert seen.correlation > 0.999


def test_geometry_errors_count_the_half_turn():
    assert rotation_error(165.0, -15.0) == pytest.approx(180.0)
    assert rotation_error(-179.0, 179.0) == pytest.approx(2.0)
    assert rotation_error(37.5, 37.3) == pytest.approx(0.2)
    assert relative_error(-400.0, 400.0) == pytest.approx(-2.0)
    assert relative_error(-370.0, -400.0) == pytest.approx(0.075)
