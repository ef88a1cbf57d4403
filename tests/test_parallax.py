"""Parallax against the simulator's truth (rotation, transpose, C1,
aberrations, phase), the KDE splat against a plain scatter, bad input."""

import numpy as np
import pytest
from scipy import ndimage

from napari_phase import (
    Calibration,
    CalibrationError,
    DataCube,
    parallax,
    simulate,
)
from napari_phase.compute.geometry import detector_to_scan, wrap_degrees
from napari_phase.compute.kde import _splat_bincount, _splat_strided

SMALL = dict(scan_shape=(32, 32), detector_shape=(96, 96), seed=1)


def _corr(a, b):
    n0, n1 = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    a, b = a[:n0, :n1] - a[:n0, :n1].mean(), b[:n0, :n1] - b[:n0, :n1].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.parametrize(
    'C1, rotation, transpose',
    [
        (400, -15, False),
        (-400, -15, True),
        (400, 168, True),
        (-400, 168, False),
    ],
)
def test_defocus_rotation_transpose_and_half_turn(C1, rotation, transpose):
    sim = simulate(C1=C1, rotation_deg=rotation, transpose=transpose, **SMALL)
    before = sim.datacube.data.copy()
    result = parallax(sim.datacube, upsample_factor=2)
    assert abs(wrap_degrees(result.rotation_deg - rotation)) < 1.0
    assert result.transpose is transpose
    assert result.C1 == pytest.approx(C1, rel=0.05)
    assert result.half_turn_evidence.source == 'parallax'
    assert result.half_turn_evidence.keeps
    # The convention, numerically: shifts = C1·θ mapped to the scan frame.
    expected = detector_to_scan(
        C1 * result.bf_mrad.T * 1e-3, rotation, transpose
    ).T
    error = result.shifts - expected
    assert np.sqrt(np.mean(np.sum(error**2, axis=1))) < 0.2 * np.sqrt(
        np.mean(np.sum(expected**2, axis=1))
    )
    assert np.array_equal(sim.datacube.data, before)  # input untouched


def test_astigmatism_and_coma_measured_with_significance():
    aberrations = {'C12': 100.0, 'phi12': 30.0, 'C21': 2000.0, 'phi21': 60.0}
    with_coma = parallax(
        simulate(aberrations=aberrations, **SMALL).datacube, upsample_factor=2
    )
    assert abs(with_coma.aberrations['C12'] - 100) < 10
    assert abs(wrap_degrees(2 * (with_coma.aberrations['phi12'] - 30))) / 2 < 5
    assert with_coma.significant['C21']
    assert with_coma.aberrations['C21'] == pytest.approx(2000, rel=0.35)
    assert not with_coma.significant['C23']  # none simulated

    no_coma = parallax(
        simulate(aberrations={'C12': 100.0, 'phi12': 30.0}, **SMALL).datacube,
        upsample_factor=2,
    )
    assert abs(no_coma.aberrations['C12'] - 100) < 10
    assert not no_coma.significant['C21']
    assert any('C21' in note for note in no_coma.warnings)


def _high_pass(image, pixel, scale=4.0):
    return image - ndimage.gaussian_filter(image, scale / pixel)


def test_upsampled_image_and_phase_against_truth(small_sim):
    result = parallax(small_sim.datacube, upsample_factor=4)
    pixel = result.pixel_size['upsampled']
    assert pixel == pytest.approx(small_sim.datacube.calibration.scan_step / 4)
    assert result.origin['upsampled'] == (0.0, 0.0)
    truth = small_sim.true_phase(pixel)
    assert abs(result.upsampled.shape[0] - truth.shape[0]) <= 4
    # Plain BF virtual image (disk sum), brought to the same grid.
    data = small_sim.datacube.data
    bf = data[..., 34:62, 34:62].sum(axis=(2, 3)).astype(float)
    bf = ndimage.zoom(bf, 4, order=3)
    # Detail below ~4 Å is what upsampling adds: compare high-passed images.
    ours = _corr(
        _high_pass(result.upsampled.astype(float), pixel),
        _high_pass(truth, pixel),
    )
    plain = _corr(_high_pass(bf, pixel), _high_pass(truth, pixel))
    assert ours > plain + 0.2
    # The CTF-corrected phase has the right sign in every frequency band,
    # the lowest included (py4DSTEM inverted them, ALGORITHMS §6.4).
    phase = result.phase.astype(float)
    assert _corr(phase, truth) > 0.3
    for low, high in [(0.0, 0.03), (0.03, 0.1), (0.1, 0.2), (0.2, 0.4)]:
        assert _band_corr(phase, truth, pixel, low, high) > 0.3, (low, high)


def _band_corr(a, b, pixel, low, high):
    """Correlation of two images within |k| ∈ (low, high] Å⁻¹."""
    n = min(a.shape[0], b.shape[0], a.shape[1], b.shape[1])
    fa, fb = (np.fft.fft2(x[:n, :n] - x[:n, :n].mean()) for x in (a, b))
    k = np.hypot(*np.meshgrid(*[np.fft.fftfreq(n, pixel)] * 2, indexing='ij'))
    band = (k > low) & (k <= high)
    cross = np.real(np.sum(fa[band] * np.conj(fb[band])))
    return cross / np.sqrt(
        np.sum(np.abs(fa[band]) ** 2) * np.sum(np.abs(fb[band]) ** 2)
    )


def test_forced_defocus_sign_and_rotation(small_sim):
    other = parallax(small_sim.datacube, defocus_sign=-1, upsample_factor=2)
    assert other.C1 == pytest.approx(-400, rel=0.05)
    assert abs(wrap_degrees(other.rotation_deg - 165)) < 1.0
    assert other.half_turn_evidence.source == 'user'
    forced = parallax(
        small_sim.datacube,
        rotation_deg=-15.0,
        transpose=False,
        upsample_factor=2,
    )
    assert forced.rotation_deg == -15.0
    assert forced.C1 == pytest.approx(400, rel=0.05)


def test_in_focus_dataset_says_no_parallax():
    result = parallax(simulate(C1=0.0, **SMALL).datacube, upsample_factor=2)
    assert result.rotation_deg is None and result.transpose is None
    assert not result.significant['C10']
    assert any('No parallax' in note for note in result.warnings)
    assert not result.shifts.any()  # in focus: the images are aligned


def test_bad_input_messages(small_sim):
    data = np.ones((8, 8, 16, 16), np.float32)
    data[..., 5, 5] = 100
    cube = DataCube(
        data,
        Calibration(scan_step=1, q_pixel_mrad=1, energy=300e3),
        source='hot.h5',
    )
    with pytest.raises(
        ValueError, match='hot.h5.*selects only 1 bright-field'
    ):
        parallax(cube)
    with pytest.raises(CalibrationError, match='scan step'):
        parallax(DataCube(data))
    with pytest.raises(TypeError):
        parallax(small_sim.datacube, force_rotation_deg=10)


def test_strided_splat_equals_scatter():
    rng = np.random.default_rng(3)
    images = rng.random((7, 10, 12)).astype(np.float32)
    shifts = rng.uniform(-3, 3, (7, 2))
    shifts[3] = shifts[1]  # images that share a shift are summed first
    v1, w1 = _splat_strided(images, shifts, 3)
    v2, w2 = _splat_bincount(images, shifts, 3)
    np.testing.assert_allclose(v1, v2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(w1, w2, rtol=1e-5, atol=1e-5)
    assert w1.sum() == pytest.approx(images.size)


def test_regularized_shifts_and_fractional_upsampling(small_sim):
    result = parallax(
        small_sim.datacube, regularize_shifts=True, upsample_factor=2.5
    )
    assert result.C1 == pytest.approx(400, rel=0.05)
    assert abs(wrap_degrees(result.rotation_deg + 15)) < 1.0
    assert result.pixel_size['upsampled'] == pytest.approx(2.39 / 2.5)
    assert result.upsampled.shape == (80, 80)  # 32 scan px × 2.5
    truth = small_sim.true_phase(result.pixel_size['upsampled'])
    assert _corr(result.phase.astype(float), truth) > 0.3
