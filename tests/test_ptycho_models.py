"""Mixed-state, multislice, position correction and continuing, against
truth: data from hand-written forward models (tests/ptycho_truth.py, not
the engine's code), the propagator checked by hand, exact equality of a
continued run with one run."""

import numpy as np
import pytest
from ptycho_truth import EXTENT, atoms, correlation, layer, phase_of, scan

from napari_phase import ptychography, ptychography_iter
from napari_phase.compute.calibration import electron_wavelength
from napari_phase.compute.optics import fourier_probe
from napari_phase.compute.ptycho.multislice import fresnel_propagator
from napari_phase.compute.ptycho.positions import affine_fit

FAST = {'max_batch_size': 32}


def test_propagating_a_probe_adds_the_distance_to_c1():
    """By hand: H(k) = exp(−iπλ|k|²dz) at one frequency, and a probe of
    C1 = c propagated dz Å downstream is the probe of C1 = c + dz
    (defocus − dz): its focus is dz Å nearer."""
    n, pixel, dz = 64, 0.27, 150.0
    wavelength = electron_wavelength(300e3)
    kernel = fresnel_propagator(n, pixel, wavelength, dz)
    k = 3 / (n * pixel)  # the third frequency along x, Å⁻¹
    assert kernel[3, 0] == pytest.approx(
        np.exp(-1j * np.pi * wavelength * k**2 * dz), abs=1e-6)

    def probe(c1):
        return np.fft.ifft2(fourier_probe((n, n), pixel, wavelength, 22.6,
                                          {'C10': c1}))

    propagated = np.fft.ifft2(np.fft.fft2(probe(-100.0)) * kernel)
    np.testing.assert_allclose(propagated, probe(-100.0 + dz), atol=1e-6)
    assert np.abs(propagated - probe(-100.0 - dz)).max() > 1e-3


@pytest.fixture(scope='module')
def thick():
    """Two thin layers 300 Å apart (the depth of field at 22.6 mrad is
    2λ/α² ≈ 77 Å), the probe focused halfway between them."""
    layers = [layer(EXTENT, 1), layer(EXTENT, 2)]
    return layers, scan(layers, C1=-150.0, thickness=300.0)


def test_multislice_separates_two_layers_that_one_slice_cannot(thick):
    layers, cube = thick
    kw = FAST | {'num_iter': 30, 'fix_probe': True}
    single = ptychography(cube, **kw)
    multi = ptychography(cube, num_slices=2, slice_thickness=300.0, **kw)
    truth = phase_of(layers, multi.phase.shape, multi.pixel_size)
    # measured: single slice r = 0.38, two slices 0.82
    assert correlation(single.phase, truth) < 0.5
    assert correlation(multi.phase, truth) > 0.75
    assert multi.object.shape[0] == 2
    assert multi.object_cropped.shape == (2, *multi.phase.shape)
    np.testing.assert_allclose(multi.phase, multi.slice_phases.sum(axis=0))
    # each slice is its own layer (measured 0.85 and 0.89, crossed < 0)
    for s, own in enumerate(layers):
        phase = multi.slice_phases[s]
        mine = correlation(phase, phase_of([own], phase.shape,
                                           multi.pixel_size))
        other = correlation(phase, phase_of([layers[1 - s]], phase.shape,
                                            multi.pixel_size))
        assert mine > 0.75 and other < 0.1


def test_probe_modes_fit_a_partially_coherent_source():
    """A Gaussian source of σ = 0.4 Å (3×3 Gauss–Hermite points), i.e. an
    incoherent sum of shifted probes: three modes explain the patterns
    better (measured error −19 %) and give a sharper, truer phase than
    one (r 0.972 against 0.967)."""
    sigma = 0.4
    nodes = np.array([-1, 0, 1]) * np.sqrt(3) * sigma
    weights = np.array([1, 4, 1]) / 6
    source = [((a, b), wa * wb) for a, wa in zip(nodes, weights, strict=True)
              for b, wb in zip(nodes, weights, strict=True)]
    layers = [atoms(EXTENT, 1, count=80)]
    cube = scan(layers, C1=200.0, source=source, dose=1e6)
    one = ptychography(cube, num_iter=30, **FAST)
    three = ptychography(cube, num_iter=30, num_probes=3, **FAST)
    truth = phase_of(layers, one.phase.shape, one.pixel_size)
    assert three.errors[-1] < 0.9 * one.errors[-1]
    assert correlation(three.phase, truth) > correlation(one.phase, truth)
    modes = three.probe_modes
    assert modes.shape == (3, 64, 64)
    gram = np.abs(np.einsum('kxy,lxy->kl', modes.conj(), modes))
    assert gram[0, 1] < 1e-3 * gram[0, 0]  # orthogonal
    powers = np.diag(gram)
    assert np.all(np.diff(powers) <= 0)  # by decreasing intensity
    np.testing.assert_array_equal(three.probe, modes[0])


def test_position_correction_reduces_random_position_errors():
    """Probe positions off the grid by random errors (0.47 Å RMS, a fifth
    of the step); the reconstruction starts from the grid. Measured on
    the positions two steps or more inside the scan (near its edge only
    those positions see the object there, which can absorb their
    errors): 0.48 → 0.07 Å after 25 iterations (0.47 → 0.18 Å over the
    whole scan)."""
    rng = np.random.default_rng(7)
    errors = rng.normal(0, 0.5 / np.sqrt(2), (400, 2))
    layers = [atoms(EXTENT, 1, count=80)]
    cube = scan(layers, C1=200.0, position_errors=errors, dose=1e6)
    result = ptychography(cube, num_iter=25, position_correction=True,
                          position_correction_start=5, **FAST)
    grid = np.indices((20, 20)).transpose(1, 2, 0) * 2.39

    def rms(positions):
        wrong = (positions - grid - errors.reshape(20, 20, 2))[2:-2, 2:-2]
        wrong = wrong.reshape(-1, 2) - wrong.reshape(-1, 2).mean(axis=0)
        return np.sqrt((wrong**2).sum(axis=1).mean())

    assert result.positions.shape == (20, 20, 2)
    assert rms(result.positions) < rms(grid) / 3
    np.testing.assert_allclose(result.position_corrections,
                               result.positions - grid)


def test_affine_fit_recovers_an_affine_map_from_the_active_positions():
    rng = np.random.default_rng(1)
    initial = rng.uniform(0, 50, (30, 2))
    matrix = np.array([[1.02, 0.01, 0.3], [-0.02, 0.99, -0.5]])
    current = initial @ matrix[:, :2].T + matrix[:, 2]
    active = np.ones(30, bool)
    active[:3] = False
    current[:3] += 5.0  # inactive (NaN) patterns: left out of the fit
    fitted, found = affine_fit(initial, current, active)
    np.testing.assert_allclose(found, matrix, atol=1e-10)
    np.testing.assert_allclose(fitted[3:], current[3:], atol=1e-10)


def test_affine_position_correction_keeps_an_affine_grid():
    """The scan was 3 % larger than calibrated: with ``position_affine``
    the positions stay an affine image of the grid and their scale moves
    towards the truth, slowly (measured 1.0098 after 19 iterations of
    correction: a scaled scan and a scaled object explain nearly the
    same patterns)."""
    grid = np.indices((20, 20)).transpose(1, 2, 0).reshape(-1, 2) * 2.39
    layers = [atoms(EXTENT, 1, count=80)]
    cube = scan(layers, C1=200.0, position_errors=0.03 * grid, dose=1e6)
    result = ptychography(cube, num_iter=20, position_correction=True,
                          position_correction_start=1, position_affine=True,
                          fix_probe=True, **FAST)
    found = result.positions.reshape(-1, 2)
    design = np.column_stack([grid, np.ones(len(grid))])
    matrix, residual, *_ = np.linalg.lstsq(design, found, rcond=None)
    assert np.sqrt(residual.sum() / len(grid)) < 1e-6  # affine
    assert np.all(np.diag(matrix[:2]) > 1.006)


@pytest.mark.parametrize('model', [
    {'num_probes': 2, 'position_correction': True,
     'position_correction_start': 1},
    {'num_slices': 2, 'slice_thickness': 40.0, 'fix_probe_iterations': 3,
     'object_type': 'potential', 'tv_weight': 0.01},
])
def test_a_continued_run_equals_one_run(model):
    layers = [layer(EXTENT, 1)]
    cube = scan(layers, scan_shape=(12, 12), C1=150.0)
    kw = FAST | model | {'seed': 5}
    whole = ptychography(cube, num_iter=6, **kw)
    first = ptychography(cube, num_iter=4, **kw)
    before = first.object.copy(), first.probe_modes.copy()
    steps = ptychography_iter(cube, num_iter=2, continue_from=first, **kw)
    (i5, _, _), (i6, _, _) = list(steps)
    assert (i5, i6) == (5, 6)  # iterations count on from the first run
    again = ptychography(cube, num_iter=2, continue_from=first, **kw)
    np.testing.assert_allclose(again.object, whole.object, atol=1e-5)
    np.testing.assert_allclose(again.probe_modes, whole.probe_modes,
                               atol=1e-5 * np.abs(whole.probe).max())
    np.testing.assert_allclose(again.positions, whole.positions, atol=1e-9)
    assert again.errors == pytest.approx(whole.errors, rel=1e-5)
    np.testing.assert_array_equal(first.object, before[0])  # not changed
    np.testing.assert_array_equal(first.probe_modes, before[1])
    assert again.parameters['iterations_done'] == 6
    runs = again.parameters['runs']
    assert [r['num_iter'] for r in runs] == [4, 2]
    assert runs[1]['num_probes'] == runs[0]['num_probes']


def test_a_continued_run_keeps_the_model():
    layers = [layer(EXTENT, 1)]
    cube = scan(layers, scan_shape=(8, 8), C1=150.0)
    first = ptychography(cube, num_iter=1, num_probes=2, **FAST)
    with pytest.raises(ValueError, match='num_probes=2.*asks 3'):
        ptychography(cube, num_iter=1, num_probes=3, continue_from=first)
    with pytest.raises(ValueError, match='rotation_deg'):
        ptychography(cube, num_iter=1, rotation_deg=10.0,
                     continue_from=first)
    other = scan(layers, scan_shape=(6, 8), C1=150.0)
    with pytest.raises(ValueError, match='other data'):
        ptychography(other, num_iter=1, continue_from=first)
    with pytest.raises(TypeError, match='PtychoResult'):
        ptychography(cube, num_iter=1, continue_from=first.object)


def test_model_parameters_are_checked():
    cube = scan([layer(EXTENT, 1)], scan_shape=(6, 6), C1=150.0)
    with pytest.raises(ValueError, match='slice_thickness'):
        ptychography(cube, num_iter=1, num_slices=3)
    with pytest.raises(ValueError, match='num_probes'):
        ptychography(cube, num_iter=1, num_probes=0)
    with pytest.raises(ValueError, match="'support'"):
        ptychography(cube, num_iter=1, probe_aperture='round')
    with pytest.raises(ValueError, match='tv_weight'):
        ptychography(cube, num_iter=1, tv_weight=-1.0)
