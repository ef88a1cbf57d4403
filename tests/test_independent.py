"""The independent validation suite: abTEM multislice data stored under
tests/data/independent (benchmarks/independent.py, docs/validation.md).

First the data themselves: they load with our reader, and their truth is
self-consistent by hand-computed checks that share nothing with our code
(the rotation is written out here). Then the methods, asserting only what
is right today (docs/validation.md lists what is not).
"""

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage

from benchmarks import independent
from napari_phase import DataCube, dpc, parallax, ptychography, run_pipeline
from napari_phase.compute.direct import prepare_direct, refine_aberrations
from napari_phase.compute.rotation import ANISOTROPIC
from napari_phase.compute.score import quality, relative_error, rotation_error
from napari_phase.recipe import new_recipe, seed_recipe

NAMES = list(independent.SPECS)


@pytest.fixture(scope='module')
def datasets():
    """Every stored dataset, loaded once (never modify their cubes)."""
    return {name: independent.load(name) for name in NAMES}


def calibrated(loaded) -> DataCube:
    """A copy of the cube calibrated as the seed does: probe fit on the
    vacuum probe (thresh_upper 0.7), Q pixel = semiangle / radius."""
    cube, probe, _ = loaded
    own = DataCube(cube.data, cube.calibration.copy(), cube.source)
    run_pipeline(own, new_recipe({'calibrate': {'thresh_upper': 0.7}}),
                 probe)
    return own


def to_scan(v, rotation_deg, transpose):
    """By hand: v_R = R(θ)·swap?(v_Q), R(θ) = [[c, −s], [s, c]]."""
    x, y = (v[1], v[0]) if transpose else (v[0], v[1])
    t = math.radians(rotation_deg)
    return np.array([math.cos(t) * x - math.sin(t) * y,
                     math.sin(t) * x + math.cos(t) * y])


def centres_of_mass(data):
    """(2, Rx, Ry) CoM of every pattern (detector pixels)."""
    data = np.asarray(data, float)
    q = np.arange(data.shape[-1])
    total = data.sum(axis=(2, 3))
    return np.stack([(data.sum(axis=3) * q).sum(axis=2) / total,
                     (data.sum(axis=2) * q).sum(axis=2) / total])


# --- the data ----------------------------------------------------------------


@pytest.mark.parametrize('name', NAMES)
def test_dataset_loads_with_the_reader_and_carries_its_truth(name):
    cube, probe, truth = independent.load(name)
    spec = independent.SPECS[name]
    assert cube.data.shape == (24, 24, 96, 96)
    assert cube.data.dtype == np.uint16 and not cube.is_lazy
    assert cube.source.endswith(f'{name}.h5::/datacube')
    cal = cube.calibration
    assert (cal.scan_step, cal.energy, cal.semiangle) == (2.39, 300e3, 22.6)
    assert cal.q_pixel_mrad is None and cal.rotation_deg is None
    assert probe.shape == (96, 96) and probe.dtype == np.float32
    assert truth.name == name
    assert (truth.rotation_deg, truth.transpose, truth.C1, truth.dose) == (
        spec.rotation_deg, spec.transpose, spec.C1, spec.dose)
    assert truth.aberrations == spec.aberrations
    assert truth.phase.shape == (93, 93)  # 23 steps × 4 + 1
    assert truth.phase_pixel == pytest.approx(2.39 / 4)
    assert np.isfinite(truth.phase).all() and truth.phase.min() > -0.01
    assert truth.probe_intensity.sum() == pytest.approx(1, abs=1e-5)
    assert truth.extra['abtem'] == '1.0.11'


def test_the_only_4d_dataset_is_read_without_naming_it():
    from napari_phase import read_datacube

    path = independent.SMALL_DIR / 'gold_carbon.h5'
    with pytest.warns(UserWarning, match='does not give the'):
        cube = read_datacube(path)  # no calibration in the file
    assert cube.source.endswith('::/datacube')
    assert cube.data.shape == (24, 24, 96, 96)


@pytest.mark.parametrize('name', NAMES)
def test_counts_per_pattern_are_the_dose_times_the_step_squared(
        datasets, name):
    cube, _, truth = datasets[name]
    expected = truth.counts_per_pattern * (
        1 - truth.extra['mean_lost_fraction'])
    total = cube.data.sum(axis=(2, 3), dtype=np.int64)
    # Poisson: the mean of 576 patterns is good to ~0.1 %
    assert total.mean() == pytest.approx(expected, rel=0.01)
    assert total.std() < 0.05 * expected
    assert truth.counts_per_pattern == pytest.approx(truth.dose * 2.39**2)


@pytest.mark.parametrize('name', NAMES)
def test_vacuum_probe_is_centred_on_the_stated_beam_centre(datasets, name):
    _, probe, truth = datasets[name]
    centre = np.array(centres_of_mass(probe[None, None])[:, 0, 0])
    assert centre == pytest.approx(truth.probe_center, abs=0.01)
    radius = math.sqrt((probe > 0.5 * probe.max()).sum() / math.pi)
    assert radius == pytest.approx(truth.probe_radius_px, abs=0.5)


def test_mean_com_of_vacuum_patterns_is_the_beam_centre(datasets):
    cube, _, truth = datasets['holey_carbon']
    blurred = ndimage.correlate(truth.phase.astype(float),
                                truth.probe_intensity, mode='nearest')
    vacuum = blurred[::4, ::4] < 0.02  # rad: the probe sees only the hole
    assert vacuum.sum() >= 15
    com = centres_of_mass(cube.data)
    found = [com[axis][vacuum].mean() for axis in (0, 1)]
    assert found == pytest.approx(truth.probe_center, abs=0.03)


def test_com_points_up_the_phase_gradient_under_the_stated_geometry(
        datasets):
    """A thin, weak phase object (carbon: little is scattered beyond the
    detector): the full-detector CoM is ∇(φ ⋆ |P|²)/2π (detector frame);
    mapped by hand with the stated θ and transpose it matches the true
    gradient in direction and size, and nothing else does."""
    cube, _, truth = datasets['holey_carbon']
    spec = independent.SPECS['holey_carbon']
    reference = ndimage.correlate(truth.phase.astype(float),
                                  truth.probe_intensity, mode='nearest')
    gradient = np.stack(np.gradient(reference, truth.phase_pixel))
    gradient = gradient[:, ::4, ::4][:, 2:-2, 2:-2]  # scan positions
    to_px = spec.wavelength * 1e3 / truth.q_pixel_mrad / (2 * math.pi)
    com = centres_of_mass(cube.data)[:, 2:-2, 2:-2]
    com -= np.reshape(truth.probe_center, (2, 1, 1))

    def agreement(rotation_deg, transpose):
        mapped = to_scan(com, rotation_deg, transpose)
        r = np.corrcoef(mapped.ravel(), gradient.ravel())[0, 1]
        slope = (mapped * gradient).sum() / (gradient**2).sum() / to_px
        return r, slope

    # r is limited by the counting noise (the film's CoM is ~0.1 px);
    # measured: r = +0.44, slope 1.00; −0.44 turned; −0.01 transposed
    r, slope = agreement(truth.rotation_deg, truth.transpose)
    assert r > 0.3 and slope == pytest.approx(1, abs=0.2)
    assert agreement(truth.rotation_deg + 180, truth.transpose)[0] < -0.3
    assert abs(agreement(truth.rotation_deg, not truth.transpose)[0]) < 0.1


def shift_between(a, b):
    """s (scan px) with a(p) ≈ b(p − s): peak of the cross-correlation,
    refined by a parabola through its neighbours."""
    surface = np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))).real
    peak = np.unravel_index(surface.argmax(), surface.shape)
    shift = []
    for axis, n in enumerate(surface.shape):
        before, after = list(peak), list(peak)
        before[axis], after[axis] = (peak[axis] - 1) % n, (peak[axis] + 1) % n
        low, mid, high = (surface[tuple(i)] for i in (before, peak, after))
        whole = (peak[axis] + n // 2) % n - n // 2
        shift.append(whole + 0.5 * (low - high) / (low - 2 * mid + high))
    return np.array(shift)


def parallax_matrix(loaded, offset=15):
    """M (Å per rad, detector frame) with the virtual image of a BF pixel
    at detector angle θ_b seeing the specimen at p + R(θ)·swap?(M·θ_b):
    measured from groups of BF pixels at ±offset px along each detector
    axis and the stated θ and transpose, inverted by hand."""
    cube, _, truth = loaded
    data = cube.data.astype(float)
    qx, qy = np.indices(data.shape[2:]) - np.reshape(
        truth.probe_center, (2, 1, 1))

    def image(u):
        near = (qx - u[0]) ** 2 + (qy - u[1]) ** 2 <= 16
        values = (data * near).sum(axis=(2, 3))
        return values / values.mean() - 1

    theta_b = 2 * offset * truth.q_pixel_mrad * 1e-3
    columns = []
    for u in (np.array([offset, 0]), np.array([0, offset])):
        found = shift_between(image(u), image(-u))  # scan px
        seen = -found * truth.scan_step / theta_b  # R(θ)·swap?(M·u/|u|)
        back = to_scan(seen, -truth.rotation_deg, False)
        columns.append(back[::-1] if truth.transpose else back)
    return np.array(columns).T


@pytest.mark.parametrize('name', ['gold_carbon', 'gold_carbon_T_under',
                                  'holey_carbon'])
def test_bright_field_parallax_follows_the_stated_geometry(datasets, name):
    """Pure defocus: M = C1·I (a crossover C1 upstream of the specimen,
    rays at θ_b), with C1 at mid-specimen (docs/validation.md). A wrong
    half-turn would give −C1·I, a wrong rotation or transpose a rotated
    or mirrored M."""
    truth = datasets[name].truth
    matrix = parallax_matrix(datasets[name])
    expected = truth.C1_mid_specimen * np.eye(2)
    assert matrix == pytest.approx(expected,
                                   abs=0.1 * abs(truth.C1_mid_specimen))


def test_bright_field_parallax_shows_the_stated_astigmatism(datasets):
    """C12 adds C12·[[cos 2φ12, sin 2φ12], [sin 2φ12, −cos 2φ12]] to M:
    its off-diagonal, C12·sin 2φ12 = +87 Å, checks the azimuth
    convention (a mirrored azimuth or transpose gives −87 Å). The
    diagonal is not checked: with C1 + t/2 = 81 Å against C12 = 100 Å
    one axis is nearly in focus and its BF images are not pure shifts."""
    truth = datasets['gold_carbon_astig'].truth
    matrix = parallax_matrix(datasets['gold_carbon_astig'])
    twice = math.radians(2 * truth.aberrations['phi12'])
    off_diagonal = truth.aberrations['C12'] * math.sin(twice)
    assert [matrix[0, 1], matrix[1, 0]] == pytest.approx(
        [off_diagonal] * 2, rel=0.3)


def test_phase_histograms_are_skewed_as_designed(datasets):
    """Gold particles: positive tail. Holey film: the film covers most of
    the scored area, so at the resolution the methods see (2 scan
    steps) the histogram is negatively skewed."""
    from napari_phase.compute.halfturn import skewness

    def skew_at_scan_resolution(name):
        truth = datasets[name].truth
        sigma = 2 * 2.39 / 2.355 / truth.phase_pixel
        smooth = ndimage.gaussian_filter(truth.phase.astype(float), sigma)
        return skewness(smooth[9:-9, 9:-9])

    assert skew_at_scan_resolution('gold_carbon') > 0.3
    assert skew_at_scan_resolution('holey_carbon') < -0.3


# --- the methods, as they are today -----------------------------------------


def modulo_half_turn(error_deg):
    return abs((error_deg + 90) % 180 - 90)


@pytest.mark.parametrize('name', ['gold_carbon', 'gold_carbon_T_under'])
def test_dpc_with_the_seed_mask_finds_the_rotation_modulo_a_half_turn(
        datasets, name):
    cube = calibrated(datasets[name])
    truth = datasets[name].truth
    mean = cube.mean_and_max_pattern()[0]
    found = dpc(cube, mask=mean > 0.8 * mean.max())
    assert modulo_half_turn(rotation_error(found.rotation_deg,
                                           truth.rotation_deg)) < 1.0
    assert found.transpose == truth.transpose


#: Where DPC's defaults reach 1° (modulo the half-turn) with the right
#: transpose; the rest fail as docs/validation.md says (astigmatism: no
#: region's CoM is a gradient, clarity 1.1; the crystal: 1.04°, clarity
#: 1.1).
DPC_ROTATION_RIGHT = {'gold_carbon': 'dark field',
                      'gold_carbon_T_under': 'bright field',
                      'gold_carbon_low_dose': 'dark field',
                      'holey_carbon': 'dark field'}


@pytest.mark.parametrize('name', list(DPC_ROTATION_RIGHT))
def test_dpc_defaults_find_the_rotation_and_transpose_modulo_a_half_turn(
        datasets, name):
    """The noise-weighted least curl on the clearest detector region:
    measured 0.93°, 0.93°, 0.19°, 0.44° off (docs/validation.md)."""
    truth = datasets[name].truth
    found = dpc(calibrated(datasets[name]))
    assert modulo_half_turn(rotation_error(found.rotation_deg,
                                           truth.rotation_deg)) < 1.0
    assert found.transpose == truth.transpose
    assert found.rotation_region == DPC_ROTATION_RIGHT[name]
    assert found.transpose_clarity > 2
    assert found.com_anisotropy < ANISOTROPIC  # measured 1.09–1.28


def test_dpc_says_when_its_transpose_is_a_toss(datasets):
    """Astigmatism as large as the defocus: no region's CoM is close to a
    gradient, so the fit is wrong; its clarity says so and DPC warns."""
    with pytest.warns(UserWarning, match='DPC cannot tell the transpose'):
        found = dpc(calibrated(datasets['gold_carbon_astig']))
    assert found.transpose_clarity < 1.2


def seed_parallax(loaded):
    """Parallax with the seed's settings on a calibrated copy."""
    params = seed_recipe()['steps']['parallax']
    return parallax(calibrated(loaded), **{
        k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


@pytest.mark.parametrize('name', ['gold_carbon', 'gold_carbon_T_under',
                                  'gold_carbon_low_dose', 'holey_carbon'])
def test_parallax_finds_rotation_transpose_and_c1_modulo_a_half_turn(
        datasets, name):
    """At 500 e/Å² too: each group is aligned to the sum of the others.
    The bright-field CoM tells the transpose on gold_carbon (clarity 3.5)
    and gold_carbon_T_under (7.7) only; elsewhere (1.04–1.09) parallax
    takes the transpose with |C1| > |A1|, quietly: the other candidate
    (C1 ≈ 0, |A1| ≈ 420 Å) is beyond the astigmatism it names."""
    truth = datasets[name].truth
    with warnings.catch_warnings(record=True) as told:
        warnings.simplefilter('always')
        found = seed_parallax(datasets[name])
    error = rotation_error(found.rotation_deg, truth.rotation_deg)
    assert modulo_half_turn(error) < 1.0
    assert found.transpose == truth.transpose
    assert not any('cannot tell the transpose' in str(w.message)
                   for w in told)
    sign = 1 if abs(error) < 90 else -1  # the half-turn it chose
    assert relative_error(sign * found.C1, truth.C1_mid_specimen) == (
        pytest.approx(0, abs=0.05))


#: Astigmatism larger than the defocus (|A1|/|C1| 2.0 and 1.3 at the
#: entrance surface, 1.6 and 1.55 mid-specimen): rotation error modulo
#: the half-turn measured 0.2° and 2.0° (the 1° the issue asks for is
#: not reached on the holey film: docs/validation.md).
ASTIGMATIC = {'gold_carbon_astig_T': 0.5, 'holey_carbon_astig': 2.5}


@pytest.mark.parametrize('name', list(ASTIGMATIC))
def test_parallax_tells_the_transpose_when_astigmatism_exceeds_defocus(
        datasets, name):
    """The shifts fit both transposes (|C1| and |A1| swapped) and the
    bright-field CoM would take the one with |C1| > |A1|, the wrong one
    here; direct ptychography's score tells them apart (×1.5 and ×2.0)."""
    truth = datasets[name].truth
    with warnings.catch_warnings(record=True) as told:
        warnings.simplefilter('always')
        found = seed_parallax(datasets[name])
    assert not any('cannot tell the transpose' in str(w.message)
                   for w in told)
    assert found.transpose == truth.transpose
    error = rotation_error(found.rotation_deg, truth.rotation_deg)
    assert modulo_half_turn(error) < ASTIGMATIC[name]
    sign = 1 if abs(error) < 90 else -1  # the half-turn it chose
    assert relative_error(sign * found.C1, truth.C1_mid_specimen) == (
        pytest.approx(0, abs=0.05))
    assert relative_error(found.aberrations['C12'],
                          truth.aberrations['C12']) == pytest.approx(
        0, abs=0.1)
    assert any('direct ptychography scores' in note
               for note in found.warnings)


def test_dpc_takes_the_transpose_under_which_c1_exceeds_a1(datasets):
    """DPC's bright-field CoM is about c = H·∇F (H the aberration
    matrix), whose least-curl transpose is the one with the more nearly
    isotropic H, |C1| > |A1|: here the wrong one, with clarity above
    TOSS_CLARITY (docs/conventions.md). The CoM's anisotropy (×1.96)
    says not to trust it, and DPC warns."""
    loaded = datasets['gold_carbon_astig_T']
    with pytest.warns(UserWarning, match='stronger along one direction'):
        found = dpc(calibrated(loaded))
    assert found.transpose != loaded.truth.transpose
    assert found.transpose_clarity > 2
    assert found.com_anisotropy >= ANISOTROPIC


@pytest.mark.parametrize('name', ['gold_carbon_astig',
                                  'holey_carbon_astig'])
def test_dpc_sees_the_astigmatic_probe_in_its_com(datasets, name):
    """Astigmatism comparable to the defocus: the whole-detector or
    dark-field CoM is ×2.59 and ×1.77 stronger along one direction, and
    DPC says its transpose may be wrong (it is a toss there too)."""
    with pytest.warns(UserWarning, match='stronger along one direction'):
        found = dpc(calibrated(datasets[name]))
    assert found.com_anisotropy >= ANISOTROPIC


def test_parallax_says_why_it_finds_none_on_aliased_images(datasets):
    """A probe hardly wider than the 2.39 Å step (C1 + t/2 = 81 Å, one
    astigmatic axis nearly in focus): the images align to a sharper one
    but are not shifted copies, so the shifts follow no aberration
    function, at the seed's 8 px bins nor at 12 px, and nothing is
    reported."""
    found = seed_parallax(datasets['gold_carbon_astig'])
    assert found.rotation_deg is None and found.calibration_update() == {}
    assert any('not shifted copies' in note for note in found.warnings)


def test_parallax_takes_coarser_bins_where_the_finest_do_not_fit(datasets):
    """The crystal's 3.9 Å lattice, aliased by the 2.39 Å scan: the
    seed's 8 px bins give shifts that follow no aberration function (the
    fit explains 25 %), 12 px bins fit: θ 0.7° off, C1 within 2 %."""
    truth = datasets['srtio3_001'].truth
    found = seed_parallax(datasets['srtio3_001'])
    error = rotation_error(found.rotation_deg, truth.rotation_deg)
    assert modulo_half_turn(error) < 1.0
    assert found.transpose == truth.transpose
    sign = 1 if abs(error) < 90 else -1
    assert relative_error(sign * found.C1, truth.C1_mid_specimen) == (
        pytest.approx(0, abs=0.05))
    assert found.warnings[0].startswith('Shifts from 12 px bins')


@pytest.mark.filterwarnings('ignore:.*near the edge:RuntimeWarning')
@pytest.mark.parametrize('name', ['gold_carbon', 'gold_carbon_T_under',
                                  'holey_carbon', 'srtio3_001'])
def test_ptychography_from_the_true_pair_is_right_signed(datasets, name):
    """(1–2 % of the 400 Å probe lies near the edge of the 26 Å window:
    the warning is expected.)"""
    cube = calibrated(datasets[name])
    truth = datasets[name].truth
    found = ptychography(
        cube, datasets[name].probe, defocus=-truth.C1,
        rotation_deg=truth.rotation_deg, transpose=truth.transpose,
        num_iter=16, step_size=0.5, max_batch_size=512, fix_probe=True,
        seed=0)
    score = quality(found.phase, truth.phase, found.pixel_size,
                    truth.phase_pixel, 2 * truth.phase_pixel,
                    image_origin=found.origin)
    assert score.correlation > 0.6
    assert 0.1 < score.slope < 1.2



@pytest.mark.filterwarnings('ignore:.*near the edge:RuntimeWarning')
@pytest.mark.parametrize('name', ['gold_carbon', 'gold_carbon_T_under',
                                  'gold_carbon_low_dose', 'holey_carbon',
                                  'srtio3_001'])
def test_the_chain_settles_one_half_turn_and_no_phase_is_inverted(
        datasets, name):
    """The seed's recipe (16 iterations) from the bare file: ptychography
    decides the half-turn with confidence (DPC's and parallax's phases are
    wrong-signed on gold over carbon at overfocus), the calibration holds
    the true pair, and every phase layer correlates positively with the
    truth (docs/validation.md)."""
    cube = calibrated(datasets[name])
    truth = datasets[name].truth
    run = run_pipeline(cube, seed_recipe(ptycho_iterations=16),
                       datasets[name].probe,
                       methods=['dpc', 'parallax', 'ptycho'])
    cal = run.calibration
    assert abs(rotation_error(cal.rotation_deg, truth.rotation_deg)) < 1.0
    assert cal.transpose == truth.transpose
    assert relative_error(cal.C1, truth.C1_mid_specimen) == pytest.approx(
        0, abs=0.05)
    assert cal.half_turn_source == 'ptychography'
    assert cal.half_turn_confidence >= 3
    phases = {attrs['name']: (data, attrs) for data, attrs, _ in run.layers
              if attrs['name'].endswith('phase')}
    assert sorted(phases) == ['DPC phase', 'parallax phase',
                              'ptychography phase']
    for data, attrs in phases.values():
        score = quality(data, truth.phase, attrs['scale'][0],
                        truth.phase_pixel, 2 * cal.scan_step,
                        image_origin=attrs['translate'])
        assert score.correlation > 0.3, attrs['name']


@pytest.mark.filterwarnings('ignore:.*near the edge:RuntimeWarning')
@pytest.mark.parametrize('name', list(ASTIGMATIC))
def test_the_chain_keeps_parallax_transpose_under_astigmatism(datasets,
                                                              name):
    """The seed's recipe from the bare file: the calibration ends at the
    true transpose, rotation, C1 and half-turn, and the DPC and
    ptychography phases are right-signed. Where DPC fitted the other
    transpose the chain says so. (The CTF-corrected parallax phase is
    poor under such astigmatism, band r +0.3–0.6: docs/validation.md.)"""
    cube = calibrated(datasets[name])
    truth = datasets[name].truth
    with warnings.catch_warnings(record=True) as told:
        warnings.simplefilter('always')
        run = run_pipeline(cube, seed_recipe(ptycho_iterations=16),
                           datasets[name].probe,
                           methods=['dpc', 'parallax', 'ptycho'])
    cal = run.calibration
    assert cal.transpose == truth.transpose
    assert abs(rotation_error(cal.rotation_deg, truth.rotation_deg)) < (
        ASTIGMATIC[name])
    assert relative_error(cal.C1, truth.C1_mid_specimen) == pytest.approx(
        0, abs=0.05)
    assert cal.half_turn_source == 'ptychography'
    assert cal.half_turn_confidence >= 3
    dpc_differs = run.results['dpc'].transpose != truth.transpose
    assert dpc_differs == any('DPC fitted transpose' in str(w.message)
                              for w in told)
    phases = {attrs['name']: (data, attrs) for data, attrs, _ in run.layers}
    for layer in ('DPC phase', 'ptychography phase'):
        data, attrs = phases[layer]
        score = quality(data, truth.phase, attrs['scale'][0],
                        truth.phase_pixel, 2 * cal.scan_step,
                        image_origin=attrs['translate'])
        assert score.correlation > 0.8, layer


@pytest.mark.parametrize('name', NAMES)
def test_direct_ptychography_from_the_true_pair(datasets, name):
    """SSB and OBF with the true rotation, transpose and C1 (mid-specimen):
    right sign and better than DPC at the true rotation; SSB's slope 0.72–
    0.87 against the truth seen through its transfer (docs/validation.md);
    a wrong C1 (0) lowers SSB's correlation (scored in place: the
    crystal's would match a lattice vector away), and refining C1 and C12
    from C1 = 0 finds C1 within 5 % (the crystal's aliased lattice: 6 %)."""
    cube = calibrated(datasets[name])
    truth = datasets[name].truth
    cube.calibration.update(rotation_deg=truth.rotation_deg,
                            transpose=truth.transpose,
                            C1=truth.C1_mid_specimen,
                            aberrations=truth.aberrations)
    step = cube.calibration.scan_step
    prepared = prepare_direct(cube, vacuum_probe=datasets[name].probe)

    def score(phase, reference, pixel):
        return quality(phase, reference, step, pixel, 2 * step)

    shown = dpc(cube, rotation_deg=truth.rotation_deg,
                transpose=truth.transpose)
    dpc_r = score(shown.phase, truth.phase, truth.phase_pixel).correlation
    ssb = prepared.result(method='ssb')
    ssb_score = score(ssb.phase, truth.phase, truth.phase_pixel)
    assert ssb_score.correlation > max(0.9, dpc_r)
    upsampling = round(step / truth.phase_pixel)
    for method, least_r in (('ssb', 0.9), ('obf', 0.75)):
        result = prepared.result(method=method)
        seen = result.apply_transfer(truth.phase, upsampling=upsampling)
        found = score(result.phase, seen, step)
        assert found.correlation > least_r, method
        if method == 'ssb':
            assert 0.6 < found.slope < 1.2
    defocused = quality(prepared.phase({'C10': 0.0}), truth.phase, step,
                        truth.phase_pixel, 2 * step, max_shift=0.02)
    if not truth.aberrations:  # else C1 is not the larger aberration
        assert defocused.correlation < ssb_score.correlation - 0.3
    refined = refine_aberrations(prepared, fit=('C10', 'C12'),
                                 aberrations={'C10': 0.0}, span=800)
    tolerance = 0.07 if name == 'srtio3_001' else 0.05
    assert relative_error(refined.aberrations['C10'],
                          truth.C1_mid_specimen) == pytest.approx(
        0, abs=tolerance)


@pytest.mark.filterwarnings('ignore:.*near the edge:RuntimeWarning')
def test_without_parallax_c1_comes_from_ssb_and_ptychography_runs(
        datasets):
    """Parallax finds none (above); given the rotation and transpose (what
    DPC should hand on), C1 (and the astigmatism where it pays) comes
    from refining SSB, the user is told, and ptychography, started from
    it, settles the half-turn with confidence."""
    name = 'gold_carbon_astig'
    cube = calibrated(datasets[name])
    truth = datasets[name].truth
    recipe = seed_recipe(ptycho_iterations=16)
    recipe['calibration'] |= {'rotation_deg': truth.rotation_deg,
                              'transpose': truth.transpose}
    with pytest.warns(UserWarning, match='refining direct ptychography'):
        run = run_pipeline(cube, recipe, datasets[name].probe,
                           methods=['parallax', 'ptycho'])
    cal = run.calibration
    assert abs(rotation_error(cal.rotation_deg, truth.rotation_deg)) < 0.01
    assert relative_error(cal.C1, truth.C1_mid_specimen) == pytest.approx(
        0, abs=0.05)  # measured: +0.2 %
    assert ('C12' in cal.aberrations) == ('C12' in truth.aberrations)
    assert cal.half_turn_source == 'ptychography'
    assert cal.half_turn_confidence >= 3
    phase, attrs, _ = next(layer for layer in run.layers
                           if layer[1]['name'] == 'ptychography phase')
    score = quality(phase, truth.phase, attrs['scale'][0], truth.phase_pixel,
                    2 * cal.scan_step, image_origin=attrs['translate'])
    assert score.correlation > 0.6


def test_the_chain_says_when_no_method_checked_the_geometry(datasets):
    """gold_carbon_astig: DPC's transpose is a toss on an anisotropic CoM
    and parallax finds none, so C1 comes from SSB at DPC's doubtful
    rotation and transpose (the wrong ones): the chain says that every
    result may be wrong and what to give (docs/validation.md)."""
    name = 'gold_carbon_astig'
    with pytest.warns(UserWarning, match='no method checked them') as told:
        run = run_pipeline(calibrated(datasets[name]), seed_recipe(),
                           datasets[name].probe, methods=['dpc', 'parallax'])
    assert run.calibration.transpose != datasets[name].truth.transpose
    assert any('give the rotation and transpose' in str(w.message)
               for w in told)


@pytest.mark.filterwarnings('ignore:.*near the edge:RuntimeWarning')
def test_scorecard_scores_every_method(tmp_path):
    from benchmarks import quality as scorecard

    report = scorecard.main(['gold_carbon_T_under', '--iterations', '2',
                             '--out', str(tmp_path)])
    rows = report['gold_carbon_T_under']['tools']['ours']
    assert list(rows) == list(scorecard.METHODS)
    for method, row in rows.items():
        assert not row.get('failed'), (method, row['note'])
        assert -1 <= row['band_r'] <= 1 and math.isfinite(row['slope'])
        assert abs(row['rotation_error_deg']) < 2, method  # see the docs
        assert row['transpose_right'], method
    assert rows['parallax']['C1_error'] == pytest.approx(0.075, abs=0.03)
    table = (tmp_path / 'results.md').read_text()
    assert table.count('| gold_carbon_T_under | ours |') == 5
