"""DPC against the simulator's truth: rotation (with the half-turn),
transpose, phase (sign and radians), masks, bad input."""

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from napari_phase import Calibration, CalibrationError, DataCube, dpc, simulate
from napari_phase.compute.dpc import (
    FIT_REGIONS,
    _mask_contrast,
    integrate_gradient,
)
from napari_phase.compute.geometry import wrap_degrees
from napari_phase.compute.optics import fourier_probe
from napari_phase.compute.rotation import anisotropy, noise_weight

ROTATIONS = (-170.0, -15.0, 0.0, 30.0, 168.0)
CASES = [(rot, tr) for rot in ROTATIONS for tr in (False, True)]
_SIMS = {}


def noise_free(rotation, transpose):
    """32×32 scan, 64² detector, in-focus probe, no noise (cached)."""
    key = (rotation, transpose)
    if key not in _SIMS:
        _SIMS[key] = simulate(
            scan_shape=(32, 32), detector_shape=(64, 64),
            rotation_deg=rotation, transpose=transpose, C1=0.0, dose=None,
            seed=3,
        )
    return _SIMS[key]


def noisy(sim, dose):
    """The simulator's noise model on its noise-free patterns (which hold
    one electron each): Poisson counts for ``dose`` e/Å²."""
    cal = sim.datacube.calibration
    rng = np.random.default_rng(7)
    counts = rng.poisson(sim.datacube.data * dose * cal.scan_step**2)
    return DataCube(counts.astype(np.float32), cal.copy(), 'noisy')


def blurred_truth(sim):
    """The true phase blurred by a Gaussian of the probe intensity's rms
    width (what a CoM phase can show: φ ∗ |P|²)."""
    cal = sim.datacube.calibration
    n, pixel = 256, 0.25
    probe = np.fft.ifft2(fourier_probe(
        (n, n), pixel, cal.wavelength, cal.semiangle,
        {'C10': sim.truth['C1']},
    ))
    intensity = np.abs(np.fft.fftshift(probe)) ** 2
    x = (np.arange(n) - n // 2) * pixel
    sigma = np.sqrt(np.sum(intensity.sum(axis=1) * x**2) / intensity.sum())
    return ndimage.gaussian_filter(sim.true_phase(), sigma / cal.scan_step)


def correlation(a, b):
    return np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]


def angle_error(result, truth):
    return abs(wrap_degrees(result.rotation_deg - truth['rotation_deg']))


@pytest.mark.parametrize(('rotation', 'transpose'), CASES)
def test_rotation_half_turn_transpose_and_phase(rotation, transpose):
    sim = noise_free(rotation, transpose)
    truth = blurred_truth(sim)

    clean = dpc(sim.datacube)
    assert angle_error(clean, sim.truth) < 0.5
    assert clean.transpose == transpose
    assert correlation(clean.phase, truth) >= 0.9  # correct sign included
    slope = np.polyfit(truth.ravel(), clean.phase.ravel(), 1)[0]
    assert 0.8 < slope < 1.2  # radians, not py4DSTEM's cycles

    # 1e5 e/Å²: within 1°, half-turn included
    result = dpc(noisy(sim, 1e5))
    assert angle_error(result, sim.truth) < 1.0
    assert result.transpose == transpose
    assert correlation(result.phase, truth) >= 0.9
    assert 'confident' in result.half_turn

    # 1e4 e/Å² (the seed's dose): on a 32×32 scan the CoM noise alone puts
    # the angle ~0.5–2° off; the half-turn and the transpose stay right
    seed_dose = dpc(noisy(sim, 1e4))
    assert angle_error(seed_dose, sim.truth) < 3.0
    assert seed_dose.transpose == transpose
    assert correlation(seed_dose.phase, truth) >= 0.85


@pytest.fixture(scope='module')
def defocused():
    """C1 = 400 Å, 1e4 e/Å²; 128² so that the defocused probe (≈ 18 Å
    across) fits the simulator's window without wrapping."""
    return simulate(scan_shape=(32, 32), detector_shape=(128, 128),
                    rotation_deg=168.0, transpose=True, C1=400.0, seed=3)


def test_bf_mask_with_a_defocused_probe(defocused):
    cube = defocused.datacube
    mean = cube.data.mean(axis=(0, 1))
    mask = mean > 0.8 * mean.max()  # the seed's mask
    result = dpc(cube, mask=mask)
    assert angle_error(result, defocused.truth) < 5  # geometric half-turn
    assert result.transpose is True
    assert correlation(result.phase, blurred_truth(defocused)) > 0.7
    assert result.mask_sign == 1
    assert 'keeps the contrast' in result.contrast
    assert result.parameters['mask'].startswith(f'{mask.sum()} of ')
    full = dpc(cube)
    assert angle_error(full, defocused.truth) < 5
    assert full.contrast == '' and full.mask_sign == 1


def test_mask_that_inverts_the_contrast_is_reported():
    rng = np.random.default_rng(0)
    full = rng.standard_normal((16, 16))
    sign, text = _mask_contrast(-0.5 * full + 0.1 * rng.random((16, 16)),
                                full)
    assert sign == -1
    assert 'inverts the contrast' in text
    assert _mask_contrast(full, full)[0] == 1


def test_forced_rotation_and_half_turn():
    sim = noise_free(-15.0, False)
    truth = blurred_truth(sim)
    wrong = dpc(sim.datacube, rotation_deg=165.0)  # py4DSTEM users' +180
    assert wrong.rotation_deg == 165.0
    assert wrong.transpose is False  # chosen at the forced angle
    assert correlation(wrong.phase, truth) < -0.9
    assert wrong.half_turn_evidence.source == 'user'  # decides over all

    fitted = dpc(sim.datacube, flip_half_turn=False)
    flipped = dpc(sim.datacube, flip_half_turn=True)
    assert abs(wrap_degrees(flipped.rotation_deg - fitted.rotation_deg
                            - 180)) < 1e-9
    np.testing.assert_allclose(flipped.phase, -fitted.phase, atol=1e-9)
    turned = fitted.other_half_turn()
    np.testing.assert_array_equal(turned.phase, flipped.phase)
    assert turned.rotation_deg == pytest.approx(flipped.rotation_deg)
    auto = dpc(sim.datacube, transpose=False)
    assert angle_error(auto, sim.truth) < 0.5
    assert auto.parameters['transpose'] is False
    assert fitted.parameters['transpose'] is None  # the input, not the fit


def test_com_units_and_result_fields():
    sim = noise_free(30.0, True)
    result = dpc(sim.datacube, max_iter=8)
    cal = sim.datacube.calibration
    assert result.com.shape == (2, 32, 32)
    np.testing.assert_allclose(result.com_inv_A,
                               result.com * 1e-3 / cal.wavelength)
    assert result.pixel_size == cal.scan_step
    assert result.iterations <= 8
    assert set(result.parameters) >= {
        'mask', 'rotation_deg', 'transpose', 'flip_half_turn', 'descan',
        'padding_factor', 'max_iter', 'step_size', 'tolerance',
        'calibration'}
    curve = result.rotation_curve
    assert curve.angles_deg.shape == curve.curl.shape == (180,)
    best = curve.angles_deg[np.argmin(curve.curl_transposed)]
    assert abs(wrap_degrees(2 * (best - 30.0))) / 2 <= 1.0  # mod 180


def test_integration_is_in_radians_and_converges():
    pixel = 2.0
    x, y = np.meshgrid(np.arange(40) * pixel, np.arange(30) * pixel,
                       indexing='ij')
    phase = 1.5 * np.exp(-((x - 35) ** 2 + (y - 30) ** 2) / (2 * 8.0**2))
    gradient = np.stack([-(x - 35) / 8.0**2 * phase,
                         -(y - 30) / 8.0**2 * phase])
    found, iterations, error = integrate_gradient(gradient, pixel,
                                                  max_iter=200)
    found += np.mean(phase - found)
    assert np.abs(found - phase).max() < 0.03 * phase.max()
    assert error < 1e-3
    few, _, few_error = integrate_gradient(gradient, pixel, max_iter=3)
    assert few_error > error  # more iterations fit better
    stopped, n, _ = integrate_gradient(gradient, pixel, max_iter=500,
                                       tolerance=1e-2)
    assert n < 500  # the tolerance stops it


def test_input_is_not_modified_and_dask_gives_the_same():
    sim = noise_free(0.0, False)
    cube = noisy(sim, 1e5)
    before = cube.data.copy()
    cal_before = cube.calibration.to_dict()
    result = dpc(cube)
    np.testing.assert_array_equal(cube.data, before)
    assert cube.calibration.to_dict() == cal_before
    lazy = DataCube(da.from_array(cube.data, chunks=(8, 32, 64, 64)),
                    cube.calibration)
    lazy_result = dpc(lazy)
    np.testing.assert_allclose(lazy_result.phase, result.phase, atol=1e-4)
    assert lazy_result.rotation_deg == pytest.approx(result.rotation_deg,
                                                     abs=1e-3)


def test_empty_frames_are_counted_and_nan_free():
    sim = noise_free(-15.0, False)
    data = noisy(sim, 1e5).data.copy()
    data[3, 4] = 0
    data[10, :5] = 0
    cube = DataCube(data, sim.datacube.calibration)
    result = dpc(cube)
    assert result.empty_patterns == 6
    assert np.isfinite(result.phase).all() and np.isfinite(result.com).all()
    assert angle_error(result, sim.truth) < 1.0


def test_progress_reaches_one():
    seen = []
    dpc(noise_free(0.0, False).datacube, progress=seen.append)
    assert seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)


def test_bad_input_messages():
    data = np.ones((4, 4, 8, 8), np.float32)
    with pytest.raises(CalibrationError, match='scan step'):
        dpc(DataCube(data, Calibration(q_pixel_mrad=1.0, energy=3e5)))
    cube = DataCube(data, Calibration(scan_step=1.0, q_pixel_mrad=1.0,
                                      energy=3e5))
    with pytest.raises(ValueError, match='selects no pixel'):
        dpc(cube, mask=np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match='does not match the detector'):
        dpc(cube, mask=np.ones((9, 8), bool))
    with pytest.raises(ValueError, match='out of range'):
        dpc(cube, rotation_deg=400.0)
    with pytest.raises(ValueError, match='every pattern is empty'):
        dpc(DataCube(np.zeros_like(data), cube.calibration))
    with pytest.raises(TypeError, match='transpose'):
        dpc(cube, transpose='yes')
    with pytest.raises(TypeError):
        dpc(cube, rotation=10.0)  # unknown keyword
    with pytest.raises(ValueError, match='padding_factor'):
        dpc(cube, padding_factor=0.5)
    with pytest.raises(ValueError, match='too small'):
        dpc(DataCube(np.ones((2, 8, 8, 8), np.float32), cube.calibration))


def test_rotation_fit_region_and_noise_weight():
    sim = noise_free(30.0, True)
    cube = noisy(sim, 1e4)
    assert dpc(cube).rotation_region == 'whole detector'  # no probe fit
    with pytest.raises(CalibrationError, match='not calibrated'):
        dpc(cube, fit_region='dark field')
    cube.calibration.probe_center = sim.truth['probe_center']
    cube.calibration.probe_radius = sim.truth['probe_radius']
    result = dpc(cube)
    assert result.rotation_region in FIT_REGIONS
    assert angle_error(result, sim.truth) < 3.0
    assert result.transpose is True and result.transpose_clarity > 2
    assert result.parameters['fit_region'] == 'auto'
    on_mask = dpc(cube, fit_region='mask')
    assert on_mask.rotation_region == 'bright field'  # the default mask
    with pytest.raises(ValueError, match='fit_region'):
        dpc(cube, fit_region='df')


def test_noise_weight_keeps_the_frequencies_with_signal():
    """A smooth gradient (low frequencies) in white noise: w > 0 where
    the signal is, 0 at the Nyquist frequency, all ones without noise."""
    x, y = np.meshgrid(np.arange(24.0), np.arange(24.0), indexing='ij')
    bump = np.exp(-((x - 12) ** 2 + (y - 10) ** 2) / (2 * 4.0**2))
    com = np.stack(np.gradient(bump))
    noise = 1e-3 * np.abs(com).max() ** 2
    rng = np.random.default_rng(1)
    w = noise_weight(com + rng.normal(0, np.sqrt(noise), com.shape), noise)
    assert w.shape == (48, 48)
    assert w[0, 1] > 0 and w[24, 24] == 0
    assert np.all(noise_weight(com, 0.0) == 1)


def test_anisotropy_is_the_stretch_of_a_round_field():
    """The gradient of a round Gaussian has the same power in every
    direction (1); stretched ×3 along one axis and turned by any angle it
    has ×3 (the hand-computed ratio of the field's amplitudes)."""
    x, y = np.indices((65, 65)) - 32.0
    blob = np.exp(-(x**2 + y**2) / (2 * 6.0**2))
    round_field = np.stack(np.gradient(blob))
    assert anisotropy(round_field) == pytest.approx(1, abs=1e-6)
    turn = np.deg2rad(25.0)
    rotation = np.array([[np.cos(turn), -np.sin(turn)],
                         [np.sin(turn), np.cos(turn)]])
    stretch = rotation @ np.diag([3.0, 1.0]) @ rotation.T
    stretched = np.einsum('ij,jxy->ixy', stretch, round_field)
    assert anisotropy(stretched) == pytest.approx(3, rel=1e-6)

