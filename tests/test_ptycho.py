"""Ptychography against the simulator's truth (small, noisy, seeded)."""

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from napari_phase import (
    CalibrationError,
    DataCube,
    ptychography,
    ptychography_iter,
    simulate,
)
from napari_phase.compute.geometry import wrap_degrees
from napari_phase.compute.optics import fourier_probe
from napari_phase.compute.ptycho import access, memory, reconstruct

#: A 20×20 scan on a 64² detector whose window (17 Å) holds the probe.
SIM = {'scan_shape': (20, 20), 'detector_shape': (64, 64), 'probe_radius_px': 20,
           'C1': 200.0, 'dose': 1e5}
FAST = {'num_iter': 20, 'max_batch_size': 32, 'normalization_min': 0.2}


def correlation(a, b):
    return np.corrcoef(a.ravel(), b.ravel())[0, 1]


def truth_params(sim):
    t = sim.truth
    return {'defocus': -t['C1'], 'rotation_deg': t['rotation_deg'],
                'transpose': t['transpose']}


@pytest.fixture(scope='module')
def sim():
    return simulate(seed=3, **SIM)


@pytest.fixture(scope='module')
def result(sim):
    return ptychography(sim.datacube, fix_probe=True, **truth_params(sim),
                        **FAST)


def test_error_decreases_and_phase_matches_truth(sim, result):
    errors = np.array(result.errors)
    assert len(errors) == FAST['num_iter']
    assert errors[-1] < 0.8 * errors[0]
    assert result.pixel_size == pytest.approx(sim.truth['object_pixel'])
    truth = sim.true_phase(pixel_size=result.pixel_size)
    assert result.phase.shape == truth.shape
    assert correlation(result.phase, truth) > 0.93
    assert result.origin == (0.0, 0.0)
    assert result.parameters['defocus'] == -200.0
    assert result.parameters['iterations_done'] == FAST['num_iter']
    assert result.probe.shape == (64, 64)
    # Σ|FFT(P)|² equals the mean pattern counts (py4DSTEM's scaling).
    mean_counts = sim.datacube.data.sum(axis=(2, 3)).mean()
    assert np.sum(np.abs(np.fft.fft2(result.probe)) ** 2) == pytest.approx(
        mean_counts, rel=1e-3)


def test_vacuum_probe_gives_the_same_reconstruction(sim, result):
    with_vacuum = ptychography(sim.datacube, sim.vacuum_probe,
                               fix_probe=True, **truth_params(sim), **FAST)
    difference = np.linalg.norm(with_vacuum.probe - result.probe)
    assert difference < 0.01 * np.linalg.norm(result.probe)
    assert correlation(with_vacuum.phase, result.phase) > 0.999


def test_calibration_supplies_defaults_and_dask_input_matches(sim, result):
    cal = sim.datacube.calibration.copy()
    cal.update(C1=200.0, rotation_deg=sim.truth['rotation_deg'],
               transpose=False)
    lazy = DataCube(da.from_array(sim.datacube.data, chunks=(5, 20, 64, 64)),
                    cal)
    # storage='cpu' computes all amplitudes first, as for in-memory data
    # (dask data streams batches by default: tests/test_ptycho_lazy.py).
    again = ptychography(lazy, fix_probe=True, storage='cpu', **FAST)
    assert again.parameters['defocus'] == -200.0
    assert np.allclose(again.phase, result.phase, atol=1e-4)


@pytest.mark.parametrize(('rotation', 'transpose'), [(168.0, False),
                                                     (-15.0, True)])
def test_orientation_sign_and_positions_follow_py4dstem(rotation, transpose):
    sim = simulate(seed=4, rotation_deg=rotation, transpose=transpose, **SIM)
    res = ptychography(sim.datacube, fix_probe=True, **truth_params(sim),
                       **FAST)
    truth = sim.true_phase(pixel_size=res.pixel_size)
    assert correlation(res.phase, truth) > 0.9  # right sign and orientation
    # Each particle is where it truly is, within one scan step: the
    # highest phase within 1.5 steps of a particle's centre is near it.
    step = sim.datacube.calibration.scan_step
    smooth = ndimage.gaussian_filter(res.phase, 2)
    x, y = np.indices(smooth.shape) * res.pixel_size
    for px, py, _radius, _peak in sim.specimen.particles:
        near = np.hypot(x - px, y - py) < 1.5 * step
        best = np.argmax(np.where(near, smooth, -np.inf))
        assert np.hypot(x.flat[best] - px, y.flat[best] - py) < step


def fitted_defocus(probe, cal, pixel_size):
    """The defocus (Å, 1 Å steps) of the aberration-free probe that
    overlaps ``probe`` best."""
    n = probe.shape[0]

    def overlap(c1):
        model = np.fft.fftshift(np.fft.ifft2(fourier_probe(
            (n, n), pixel_size, cal.wavelength, cal.semiangle, {'C10': c1},
            edge_mrad=cal.q_pixel_mrad)))
        return abs(np.vdot(model, probe)) / np.linalg.norm(model)

    return -max(np.arange(100.0, 300.0), key=overlap)


def test_probe_update_corrects_a_wrong_defocus():
    """Defocus −160 Å for a true −200 Å (20 % off): after 30 iterations
    the probe's own defocus is within 16 Å of the truth (measured −188;
    without momentum −169; napari-phase 0.1, whose probe gradient kept
    each pattern's sub-pixel shift, −164), and the patterns fit better
    than with the wrong probe held fixed."""
    sim = simulate(seed=3, particle_phase=1.5, n_particles=6, **SIM)
    cal = sim.datacube.calibration
    wrong = truth_params(sim) | {'defocus': -160.0}
    kw = {'num_iter': 30, 'max_batch_size': 16, 'step_size': 1.0}
    fixed = ptychography(sim.datacube, fix_probe=True, **wrong, **kw)
    free = ptychography(sim.datacube, **wrong, **kw)
    plain = ptychography(sim.datacube, probe_momentum=0.0, **wrong, **kw)
    found = fitted_defocus(free.probe, cal, free.pixel_size)
    assert abs(found + 200) < 16
    assert abs(found + 200) < abs(
        fitted_defocus(plain.probe, cal, plain.pixel_size) + 200)
    assert free.errors[-1] < 0.9 * fixed.errors[-1]


def test_potential_object_is_positive_and_matches_truth(sim):
    res = ptychography(sim.datacube, object_type='potential',
                       fix_probe=True, **truth_params(sim), **FAST)
    assert res.object.dtype == np.float32
    assert res.object.min() >= 0
    truth = sim.true_phase(pixel_size=res.pixel_size)
    assert correlation(res.phase, truth) > 0.9
    assert np.all(res.amplitude == 1)


def test_amplitude_is_clipped(sim):
    res = ptychography(sim.datacube, amplitude_max=0.9, num_iter=2,
                       fix_probe=True, **truth_params(sim))
    assert np.abs(res.object).max() <= 0.9 + 1e-6


def test_stop_is_honoured_within_one_batch(sim):
    batches = []
    steps = ptychography_iter(
        sim.datacube, num_iter=5, max_batch_size=100, fix_probe=True,
        progress=batches.append, stop=lambda: len(batches) >= 2,
        **truth_params(sim),
    )
    with pytest.raises(StopIteration) as done:
        next(steps)
    partial = done.value.value
    assert len(batches) == 2  # 4 batches per iteration: stopped in the 1st
    assert partial.errors == []
    assert partial.parameters['iterations_done'] == 0
    assert not np.allclose(partial.object, 1)  # two batches of updates


def test_iterator_yields_iteration_error_and_phase(sim):
    steps = ptychography_iter(sim.datacube, num_iter=2, fix_probe=True,
                              **truth_params(sim))
    (i1, e1, p1), (i2, e2, _p2) = list(steps)
    assert (i1, i2) == (1, 2) and e2 <= e1
    assert p1.shape == sim.true_phase(pixel_size=0.2722).shape


def test_nan_frames_are_counted_and_left_out(sim):
    data = sim.datacube.data.copy()
    data[3, 4, 10, 10] = np.nan
    data[7, 1] = np.nan
    cube = DataCube(data, sim.datacube.calibration)
    with pytest.warns(RuntimeWarning, match='2 pattern'):
        res = ptychography(cube, num_iter=1, fix_probe=True,
                           **truth_params(sim))
    assert np.isfinite(res.object).all() and np.isfinite(res.errors).all()
    assert np.isnan(data[7, 1]).all()  # input untouched


def test_bad_inputs_give_clear_errors(sim):
    cube, params = sim.datacube, truth_params(sim)
    with pytest.raises(ValueError, match='vacuum probe has shape'):
        ptychography(cube, np.ones((32, 32)), **params)
    with pytest.raises(CalibrationError, match='C1'):
        ptychography(cube, rotation_deg=0.0, transpose=False)
    with pytest.raises(ValueError, match='nm or m'):
        ptychography(cube, **params | {'defocus': 4e6})
    with pytest.raises(ValueError, match='does not fit'):
        ptychography(cube, **params | {'defocus': -2000.0})
    with pytest.raises(TypeError):
        ptychography(cube, **params, iterations=3)
    with pytest.raises(ValueError, match='square'):
        ptychography(DataCube(cube.data[..., :60], cube.calibration),
                     **params)


def test_gpu_request_without_gpu_falls_back(sim):
    with pytest.warns(RuntimeWarning, match='CPU'):
        res = ptychography(sim.datacube, device='gpu', num_iter=1,
                           fix_probe=True, **truth_params(sim))
    assert len(res.errors) == 1
    assert res.parameters['device'] == 'cpu'  # what really ran


def test_memory_estimate_and_refusal(sim, monkeypatch):
    parts = memory.estimate_memory(400, (64, 64), (300, 300), 16,
                                   cached_probes=400)
    assert parts['amplitudes'] == 400 * 64 * 64 * 4
    assert parts['probe cache'] == 400 * 64 * 64 * 8
    assert parts['total'] == sum(v for k, v in parts.items() if k != 'total')
    # 3 modes × 2 slices: the object twice, a wave per mode and slice
    # more, thrice with the position derivatives
    model = memory.estimate_memory(400, (64, 64), (300, 300), 16,
                                   num_probes=3, num_slices=2,
                                   position_correction=True)
    assert model['object'] == 2 * parts['object']
    assert model['working set'] == 16 * 64 * 64 * 8 * (8 + 3 * 5 * 3)
    monkeypatch.setattr(reconstruct, 'available_memory', lambda xp: 1 << 20)
    with pytest.raises(MemoryError, match="free.*storage='lazy'"):
        ptychography(sim.datacube, **truth_params(sim))


def test_index_and_slice_patch_access_agree():
    rng = np.random.default_rng(0)
    obj = (rng.standard_normal((40, 40)) + 1j).astype(np.complex64)
    corners = np.array([[0, 0], [3, 5], [3, 5], [20, 12]])
    values = rng.standard_normal((4, 8, 8)).astype(np.complex64)
    out = {}
    for kind in ('slices', 'index'):
        strategy = access.patch_access(np, 8, kind)
        patches = strategy.gather(obj, corners, np.empty_like(values))
        target = np.zeros_like(obj)
        strategy.scatter(target, corners, values)
        out[kind] = patches, target
    assert np.array_equal(out['slices'][0], out['index'][0])
    assert np.allclose(out['slices'][1], out['index'][1])
    assert np.array_equal(out['slices'][0][1], obj[3:11, 5:13])
    overlap = values[0, 3, 5] + values[1, 0, 0] + values[2, 0, 0]
    assert out['slices'][1][3, 5] == pytest.approx(overlap)


def test_half_turn_evidence_flags_a_flipped_calibration():
    """(θ + 180°, −C1) explains the same intensities with conj(O): the
    phase comes out negatively skewed, confidently, and turning the result
    over gives the right phase and pair back."""
    sim = simulate(scan_shape=(16, 16), detector_shape=(64, 64), C1=100.0,
                   dose=None, seed=2)
    truth = sim.truth
    good = ptychography(sim.datacube, defocus=-truth['C1'],
                        rotation_deg=truth['rotation_deg'],
                        transpose=truth['transpose'], num_iter=8,
                        fix_probe=True)
    flipped = ptychography(sim.datacube, defocus=truth['C1'],
                           rotation_deg=truth['rotation_deg'] + 180,
                           transpose=truth['transpose'], num_iter=8,
                           fix_probe=True)
    assert good.half_turn_evidence.keeps
    evidence = flipped.half_turn_evidence
    assert not evidence.keeps and evidence.confident
    turned = flipped.other_half_turn()
    assert turned.half_turn_evidence.keeps
    assert turned.C1 == pytest.approx(truth['C1'])
    assert abs(wrap_degrees(turned.rotation_deg
                            - truth['rotation_deg'])) < 1e-9
    np.testing.assert_allclose(turned.phase, -flipped.phase, atol=1e-6)
    with pytest.raises(ValueError, match='other half-turn'):
        ptychography(sim.datacube, defocus=-truth['C1'],
                     rotation_deg=truth['rotation_deg'],
                     transpose=truth['transpose'], num_iter=1,
                     continue_from=turned)
