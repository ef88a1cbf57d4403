"""Direct ptychography (SSB, OBF), the quick phases behind live tuning and
the aberration refinement, against truth:

- a weak phase grating built here by hand (its far field written down from
  the definitions, not with the simulator), whose SSB and OBF transfers are
  known on paper;
- the simulator (``compute/simulate.py``: self-consistency, it shares the
  forward model) for sign, scale in radians, the comparison with DPC, the
  half-turn, a wrong C1 and its refinement;
- numpy against dask, threads against sequential calls, progress, cancel,
  the recipe step and bad input.

Scale: the result's ``apply_transfer`` band-limits the true phase to the
scan's Nyquist frequency and filters it by the method's own transfer (SSB:
1 wherever a side band holds ≥ 0.1 % of the bright field, i.e. up to
2α/λ, here beyond the scan's Nyquist frequency; OBF: √(Σ_k|Γ|² /
2Σ_k a²)); the slope of the phase against that filtered truth, away from
the scan's edges (``edge_px``), is the scale, 1 when the phase is in
radians. The simulator's specimen has 0.8 rad particles, beyond the
weak-phase model: the slope measured there is 0.86 (SSB) and 0.95 (OBF);
on a weak grating made by hand SSB's is 1.00.
"""

import threading

import dask.array as da
import numpy as np
import pytest

from napari_phase import (
    Calibration,
    CalibrationError,
    DataCube,
    direct_ptychography,
    direct_ptychography_steps,
    dpc,
    parallax,
    prepare_direct,
    prepare_parallax_phase,
    refine_aberrations,
    run_pipeline,
    simulate,
)
from napari_phase.compute.aberrations import half_turn
from napari_phase.compute.calibration import electron_wavelength
from napari_phase.compute.direct.polynomial import (
    chi_coefficients,
    power_matrix,
    taylor_matrix,
    taylor_powers,
)
from napari_phase.compute.optics import chi
from napari_phase.recipe import new_recipe, recipe_from_parameters, step_of

C1 = 150.0  # Å: the probe (≈ 7 Å across) fits the simulator's 18 Å window
#: Scan px left out at each border: the scan's edges reach ``edge_px``
#: (edge blend 2 px + the largest defocus shift, 1.4 px) into the phase.
MARGIN = 5


def calibrated(sim, **changes):
    """``sim``'s cube with the true geometry in its calibration."""
    truth = sim.truth
    cal = sim.datacube.calibration.copy()
    cal.update(
        rotation_deg=truth['rotation_deg'], transpose=truth['transpose'],
        C1=truth['C1'], probe_center=truth['probe_center'],
        probe_radius=truth['probe_radius'],
    )
    cal.update(**changes)
    return DataCube(sim.datacube.data, cal, 'simulated')


@pytest.fixture(scope='module')
def sim():
    """32×32 scan, 96² detector, C1 = 150 Å, θ = −15°, noisy (seeded)."""
    return simulate(scan_shape=(32, 32), detector_shape=(96, 96), C1=C1,
                    seed=1)


@pytest.fixture(scope='module')
def prepared(sim):
    return prepare_direct(calibrated(sim))


def inner(image):
    return np.asarray(image)[MARGIN:-MARGIN, MARGIN:-MARGIN]


def correlation(a, b):
    return float(np.corrcoef(inner(a).ravel(), inner(b).ravel())[0, 1])


def slope(image, reference):
    """Least-squares scale of ``image`` against ``reference``."""
    a, b = inner(image), inner(reference)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (b * b).sum())


# --- a weak phase grating, by hand ------------------------------------------

ENERGY, DETECTOR, RADIUS, Q_PIXEL = 300e3, 64, 16.0, 1.25  # eV, px, px, mrad
SCAN, STEP = (20, 20), 0.25  # scan px, Å: frequencies up to 2 Å⁻¹ > 2α/λ
GRATINGS = [  # (m, n) cycles over the scan, amplitude (rad), phase (rad)
    ((5, 3), 0.01, 0.3),  # |Q| = 1.15 α/λ: side bands do not overlap
    ((2, 1), 0.02, -1.0),  # |Q| = 0.44 α/λ: with a triple overlap
]


def grating_cube(c1, rotation, transpose, aperture):
    """Far field of ``O = 1 + iφ``, φ = Σ ε cos(2π Q·r + ψ) (scan frame),
    for the probe ``Ψ(k) = A(|k|)·exp(−iπλC1|k|²)`` (docs/conventions.md):
    ``|Ψ(k) + (iε/2)(e^{i(2πQ·p + ψ)} Ψ(k − Q_d) + e^{−i(2πQ·p + ψ)}
    Ψ(k + Q_d))|²``, Q_d = swap?(R(−θ)·Q) the grating's frequency in the
    detector frame, summed over the gratings."""
    wavelength = electron_wavelength(ENERGY)
    dk = Q_PIXEL * 1e-3 / wavelength
    k = (np.arange(DETECTOR) - DETECTOR / 2) * dk
    kx, ky = np.meshgrid(k, k, indexing='ij')

    def probe(qx, qy):
        q2 = qx**2 + qy**2
        return aperture(np.sqrt(q2) / dk) * np.exp(
            -1j * np.pi * wavelength * c1 * q2
        )

    t = np.deg2rad(rotation)
    to_detector = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    px, py = np.meshgrid(*(np.arange(n) * STEP for n in SCAN), indexing='ij')
    wave = np.broadcast_to(probe(kx, ky), (*SCAN, DETECTOR, DETECTOR))
    wave = wave.astype(complex)
    for (m, n), eps, psi in GRATINGS:
        q = np.array([m / (SCAN[0] * STEP), n / (SCAN[1] * STEP)])
        qd = to_detector @ q
        qd = qd[::-1] if transpose else qd
        carrier = np.exp(1j * (2 * np.pi * (q[0] * px + q[1] * py) + psi))
        carrier = carrier[:, :, None, None]
        wave = wave + 0.5j * eps * (
            carrier * probe(kx - qd[0], ky - qd[1])
            + np.conj(carrier) * probe(kx + qd[0], ky + qd[1])
        )
    cal = Calibration(
        scan_step=STEP, q_pixel_mrad=Q_PIXEL, energy=ENERGY,
        semiangle=RADIUS * Q_PIXEL, probe_center=(DETECTOR / 2,) * 2,
        probe_radius=RADIUS, rotation_deg=rotation, transpose=transpose,
        C1=c1,
    )
    counts = (100 * np.abs(wave) ** 2).astype(np.float32)
    return DataCube(counts, cal, 'hand-made grating')


def fourier_coefficient(image, cycles):
    """Complex amplitude of ``cos(2π Q·r + ψ)`` in ``image`` (ε·e^{iψ})."""
    return 2 * np.fft.fft2(image)[cycles] / image.size


def soft(r):
    """Aperture with a 2 px linear edge centred on RADIUS."""
    return np.clip((RADIUS + 1 - r) / 2, 0, 1)


def hard(r):
    return (r < RADIUS).astype(float)


def lens_area(d, r):
    """Overlap area of two disks of radius ``r`` whose centres are ``d``
    apart."""
    return 2 * r**2 * np.arccos(d / (2 * r)) - d / 2 * np.sqrt(4 * r**2 - d**2)


@pytest.mark.parametrize('rotation, transpose', [(30.0, True),
                                                 (-110.0, False)])
def test_ssb_recovers_a_hand_made_grating_exactly(rotation, transpose):
    """SSB's transfer is 1 by construction: every grating comes back with
    its amplitude (rad) and phase, through the defocus, rotation and
    transpose; the half-turn pair gives exactly the negated phase; without
    the defocus the side bands lose their phase compensation."""
    cube = grating_cube(60.0, rotation, transpose, soft)
    prepared = prepare_direct(cube, edge_blend=0, object_padding_px=(0, 0))
    phase = prepared.phase()
    for cycles, eps, psi in GRATINGS:
        found = fourier_coefficient(phase, cycles)
        assert abs(found - eps * np.exp(1j * psi)) < 0.02 * eps
    other = prepared.phase({'C10': -60.0}, rotation + 180.0, transpose)
    np.testing.assert_allclose(other, -phase, atol=1e-6 * abs(phase).max())
    unfocused = prepared.phase({'C10': 0.0})
    for cycles, eps, _ in GRATINGS:
        assert abs(fourier_coefficient(unfocused, cycles)) < 0.3 * eps


def test_obf_transfer_of_a_hand_made_grating_matches_paper():
    """In focus, for |Q| > α/λ, Γ is 1 on the two lenses where the shifted
    disks overlap the bright field and 0 elsewhere: OBF's transfer is
    √(2·lens / (2·disk)) = √(lens(|Q|) / πR²)."""
    cube = grating_cube(0.0, 30.0, True, hard)
    prepared = prepare_direct(cube, edge_blend=0, object_padding_px=(0, 0))
    result = prepared.result(method='obf')
    (m, n), eps, psi = GRATINGS[0]
    distance = np.hypot(m / (SCAN[0] * STEP), n / (SCAN[1] * STEP)) / (
        Q_PIXEL * 1e-3 / electron_wavelength(ENERGY)
    )
    expected = np.sqrt(lens_area(distance, RADIUS) / (np.pi * RADIUS**2))
    found = fourier_coefficient(result.phase, (m, n))
    assert abs(found) / eps == pytest.approx(expected, rel=0.02)
    assert abs(np.angle(found * np.exp(-1j * psi))) < 0.02
    assert result.transfer[m, n] == pytest.approx(expected, rel=0.02)


# --- χ as a polynomial ------------------------------------------------------


def test_chi_polynomial_and_its_taylor_terms_are_optics_chi():
    aberrations = {'C10': 400.0, 'C12': 100.0, 'phi12': 30.0, 'C21': 2e3,
                   'phi21': 60.0, 'C23': 500.0, 'phi23': -10.0, 'C30': 1e5}
    wavelength = 0.0197
    rng = np.random.default_rng(0)
    k = rng.uniform(-1.5, 1.5, (40, 2))
    q = rng.uniform(-0.4, 0.4, (2, 9))
    c = chi_coefficients(aberrations, wavelength)
    values = np.polynomial.polynomial.polyval2d(k[:, 0], k[:, 1], c)
    exact = chi(k[:, 0], k[:, 1], wavelength, aberrations)
    np.testing.assert_allclose(values, exact, atol=1e-9 * abs(exact).max())
    powers = taylor_powers(c)
    change = taylor_matrix(c, k, powers) @ power_matrix(q, powers)
    expected = chi(k[:, :1] + q[0], k[:, 1:] + q[1], wavelength,
                   aberrations) - exact[:, None]
    np.testing.assert_allclose(change, expected, atol=1e-3)


# --- the simulator ------------------------------------------------------------


@pytest.mark.parametrize('method, least_slope', [('ssb', 0.8), ('obf', 0.8)])
def test_sign_scale_and_correlation_against_the_truth(sim, prepared, method,
                                                      least_slope):
    result = prepared.result(method=method)
    assert result.edge_px < MARGIN - 1
    truth = sim.true_phase()
    step = sim.datacube.calibration.scan_step
    seen = result.apply_transfer(sim.true_phase(step / 4), upsampling=4)
    assert least_slope <= slope(result.phase, seen) <= 1.2
    assert correlation(result.phase, seen) > 0.97
    assert result.half_turn_evidence.keeps
    assert result.pixel_size == sim.datacube.calibration.scan_step
    assert result.origin == (0.0, 0.0)
    assert result.phase.shape == sim.datacube.scan_shape
    dpc_r = correlation(dpc(sim.datacube).phase, truth)
    if method == 'ssb':  # a flat transfer: compare with the truth itself
        assert correlation(result.phase, truth) >= dpc_r
    else:  # OBF passes little of the lowest frequencies (|sin χ| there)
        assert correlation(result.phase, seen) >= dpc_r


@pytest.mark.parametrize('method', ['ssb', 'obf'])
def test_half_turn_pair_negates_the_phase(sim, prepared, method):
    rotation = sim.truth['rotation_deg']
    right = prepared.phase(method=method)
    other = prepared.phase(half_turn({'C10': C1}), rotation + 180.0,
                           method=method)
    np.testing.assert_allclose(other, -right, atol=1e-5 * abs(right).max())
    flipped = prepared.result(half_turn({'C10': C1}), rotation + 180.0,
                              method=method)
    assert not flipped.half_turn_evidence.keeps
    turned = flipped.other_half_turn()
    np.testing.assert_array_equal(turned.phase, -flipped.phase)
    assert turned.C1 == pytest.approx(C1)


@pytest.mark.parametrize('method', ['ssb', 'obf'])
def test_wrong_c1_lowers_correlation_and_refinement_recovers_it(
        sim, prepared, method):
    truth = sim.true_phase()
    right = prepared.result(method=method)
    seen = right.apply_transfer(truth)
    in_focus = prepared.phase({'C10': 0.0}, method=method)
    assert correlation(in_focus, seen) < correlation(right.phase, seen) - 0.03
    found = refine_aberrations(prepared, aberrations={'C10': 0.0}, span=300,
                               method=method)
    assert found.aberrations['C10'] == pytest.approx(C1, rel=0.05)
    assert found.score > found.start_score


def test_refinement_of_c1_and_astigmatism():
    astigmatic = simulate(scan_shape=(32, 32), detector_shape=(96, 96),
                          C1=C1, aberrations={'C12': 40.0, 'phi12': 20.0},
                          seed=1)
    prepared = prepare_direct(calibrated(astigmatic))
    start = refine_aberrations(prepared, aberrations={'C10': 100.0})
    found = refine_aberrations(prepared, fit=('C10', 'C12'),
                               aberrations=start.aberrations, span=50)
    assert found.aberrations['C10'] == pytest.approx(C1, rel=0.05)
    assert found.aberrations['C12'] == pytest.approx(40.0, rel=0.15)
    assert abs(found.aberrations['phi12'] - 20.0) < 5.0


def test_refinement_stopped_keeps_the_best_so_far(prepared):
    """``stop()`` turns true at its 4th question (before the 5th
    evaluation): the search ends with the best of the start and the
    first 3 points of its C1 grid (−300, −270, −240 Å)."""
    questions = []

    def stop():
        questions.append(1)
        return len(questions) >= 4

    found = refine_aberrations(prepared, aberrations={'C10': 0.0},
                               span=300, stop=stop)
    assert found.stopped and found.evaluations == 4
    tried = [0.0, -300.0, -270.0, -240.0]
    scores = [prepared.score({'C10': c}) for c in tried]
    assert found.aberrations['C10'] == tried[int(np.argmax(scores))]
    assert found.score == max(scores)


def test_numpy_and_chunked_dask_give_the_same_phase(sim, prepared):
    cube = calibrated(sim)
    lazy = DataCube(da.from_array(cube.data, chunks=(8, 32, 96, 96)),
                    cube.calibration, 'lazy')
    chunked = prepare_direct(lazy, chunk_bytes=32 * 32 * 4 * 100)
    assert len(prepared.bright_field.pixels) > 1000  # so > 10 chunks
    for method in ('ssb', 'obf'):
        np.testing.assert_allclose(
            chunked.phase(method=method), prepared.phase(method=method),
            atol=1e-5 * abs(prepared.phase(method=method)).max(),
        )


def test_updates_from_threads_equal_sequential_ones(prepared):
    values = [100.0, 150.0, 200.0, 120.0]
    expected = [prepared.phase({'C10': c}) for c in values]
    found = [None] * len(values)

    def update(i):
        found[i] = prepared.phase({'C10': values[i]})

    threads = [threading.Thread(target=update, args=(i,))
               for i in range(len(values))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for a, b in zip(found, expected):
        np.testing.assert_array_equal(a, b)


def test_progress_cancel_and_recorded_parameters(sim):
    cube = calibrated(sim)
    steps = direct_ptychography_steps(cube, method='obf', C1=140.0)
    fractions = []
    while True:
        try:
            fractions.append(next(steps))
        except StopIteration as done:
            result = done.value
            break
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len(fractions) >= 3
    assert result.aberrations['C10'] == 140.0
    assert result.parameters['C1'] == 140.0
    assert result.parameters['method'] == 'obf'
    assert result.parameters['rotation_deg'] is None  # the calibration's
    assert result.rotation_deg == pytest.approx(sim.truth['rotation_deg'])
    cancelled = direct_ptychography_steps(cube)
    next(cancelled)
    cancelled.close()  # stops between chunks: nothing left running
    seen = []
    direct_ptychography(cube, progress=seen.append)
    assert seen[-1] == 1.0


def test_parallax_quick_phase(sim):
    """The quick phase is parallax's CTF-corrected phase (a high-passed
    lower bound of the phase, r ≈ 0.55 with the truth here) without the
    fit and the upsampling; its score peaks at the true C1."""
    cube = calibrated(sim)
    quick = prepare_parallax_phase(cube)
    phase = quick.phase()
    assert phase.shape == sim.datacube.scan_shape
    fitted = parallax(cube, upsample_factor=1)
    assert correlation(phase, fitted.phase) > 0.9
    assert correlation(phase, sim.true_phase()) > 0.4
    rotation = sim.truth['rotation_deg']
    other = quick.phase(half_turn({'C10': C1}), rotation + 180.0)
    np.testing.assert_allclose(other, -phase, atol=1e-5 * abs(phase).max())
    found = refine_aberrations(quick, aberrations={'C10': 0.0}, span=300)
    assert found.aberrations['C10'] == pytest.approx(C1, rel=0.05)


def test_recipe_step_adds_a_direct_phase_layer():
    small = simulate(scan_shape=(16, 16), detector_shape=(64, 64), C1=100.0,
                     seed=0)
    recipe = new_recipe({'calibrate': {'pattern': 'mean'}, 'virtual': {},
                         'parallax': {}, 'direct': {'method': 'ssb'}})
    run = run_pipeline(small.datacube, recipe)
    (data, attrs, kind), = [layer for layer in run.layers
                            if layer[1]['name'] == 'direct phase']
    cal = run.calibration
    assert data.shape == (16, 16) and kind == 'image'
    assert attrs['scale'] == (cal.scan_step, cal.scan_step)
    assert attrs['translate'] == (0.0, 0.0)
    parameters = attrs['metadata']['napari_phase']['parameters']
    assert step_of(parameters) == 'direct'
    assert parameters['used']['aberrations']['C10'] == cal.C1  # parallax's
    replay = recipe_from_parameters([parameters], cal.to_dict())
    assert replay['steps']['direct']['method'] == 'ssb'


def test_bad_input_is_named(sim):
    cube = calibrated(sim)
    no_rotation = DataCube(cube.data, cube.calibration.copy(), 'scan.h5')
    no_rotation.calibration.rotation_deg = None
    with pytest.raises(CalibrationError, match='rotation'):
        direct_ptychography(no_rotation)
    with pytest.raises(ValueError, match='ssb, obf'):
        direct_ptychography(cube, method='wdd')
    with pytest.raises(ValueError, match='C1='):
        direct_ptychography(cube, aberrations={'C10': 10.0})
    with pytest.raises(TypeError, match='DataCube'):
        direct_ptychography(cube.data)
    dark = DataCube(np.zeros((8, 8, 32, 32), np.float32),
                    Calibration(scan_step=1.0, q_pixel_mrad=1.0, energy=3e5,
                                probe_center=(16, 16), probe_radius=5),
                    'dark.h5')
    with pytest.raises(ValueError, match='no counts'):
        direct_ptychography(dark, rotation_deg=0.0)


def test_quick_benchmark_times_every_stage(tmp_path):
    """``python -m benchmarks.direct --quick`` runs and reports finite
    times, the floors and the images' quality (times are never asserted)."""
    import json
    import math
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, '-m', 'benchmarks.direct', '--quick', '--repeats',
         '1', '--updates', '3', '--out', str(tmp_path)],
        cwd=repo, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / 'results.json').read_text())
    cpu = report['devices']['cpu']
    for name, stage in cpu['stages'].items():
        assert 'error' not in stage, f'{name}: {stage}'
        assert all(math.isfinite(s) and s >= 0 for s in stage['seconds'])
    assert report['floors']['fft']['seconds'] > 0
    assert cpu['quality']['SSB']['correlation'] > 0.5
    assert (tmp_path / 'results.md').read_text() == report['markdown']


def test_too_large_for_memory_is_refused_with_the_sizes(sim, monkeypatch):
    from napari_phase.compute.direct import sideband

    monkeypatch.setattr(sideband, 'available_memory', lambda xp: 10**6)
    with pytest.raises(MemoryError, match=r'GB .*bright-field pixels.*bin'):
        prepare_direct(calibrated(sim))


def test_aperture_edge_from_the_vacuum_probe():
    """A specimen's scattering widens the mean pattern's disk edge; the
    vacuum probe, when given, sets the edge (here: an amplitude ramp from
    19.5 to 20.5 px; the mean pattern blurred to a ≈ 6 px edge)."""
    from scipy import ndimage

    from napari_phase.compute.direct.spectra import find_bright_field

    r = np.hypot(*(np.indices((64, 64)) - 32.0))
    probe = np.clip(20.5 - r, 0, 1) ** 2 * 50
    mean = ndimage.gaussian_filter(probe, 2.0)
    cal = Calibration(q_pixel_mrad=1.0, energy=3e5, probe_center=(32, 32),
                      probe_radius=20)
    dk = cal.q_pixel_inv_A
    sharp = find_bright_field(mean, cal, vacuum_probe=probe).aperture
    assert sharp.inner / dk == pytest.approx(19.5, abs=0.2)
    assert sharp.outer / dk == pytest.approx(20.5, abs=0.2)
    wide = find_bright_field(mean, cal).aperture
    assert (wide.outer - wide.inner) / dk > 4
