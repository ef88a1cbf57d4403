"""The headless pipeline on the simulator: one shared calibration, and
every result on one physical grid (particles overlay within a scan step)."""

import numpy as np
import pytest

from napari_phase import DataCube, load_results, save_results, simulate
from napari_phase.compute.compare import PlacedImage, local_centroid
from napari_phase.compute.score import score
from napari_phase.io.results import saved_recipe
from napari_phase.pipeline import Progress, pipeline, run_pipeline
from napari_phase.recipe import RecipeError, new_recipe, read_recipe

PHASES = ('DPC phase', 'parallax phase', 'ptychography phase')


def seed_recipe():
    return new_recipe({
        'calibrate': {'thresh_upper': 0.7},
        'virtual': {},
        'dpc': {'mask': 'threshold', 'mask_threshold': 0.8},
        'parallax': {},
        'ptychography': {'num_iter': 8, 'fix_probe': True},
    }, seed=0)


@pytest.fixture(scope='module')
def sim():
    return simulate(scan_shape=(24, 24), detector_shape=(128, 128),
                    n_particles=3, seed=6)


@pytest.fixture(scope='module')
def run(sim):
    cube = DataCube(sim.datacube.data, sim.datacube.calibration.copy(),
                    source='sim seed 6')
    reports = []
    result = run_pipeline(cube, seed_recipe(), probe=sim.vacuum_probe,
                          progress=reports.append)
    return cube, result, reports


def test_one_calibration_is_shared_and_filled(sim, run):
    cube, result, reports = run
    cal = result.calibration
    assert cal is cube.calibration
    truth = sim.truth
    np.testing.assert_allclose(cal.probe_center, truth['probe_center'],
                               atol=0.3)
    assert cal.probe_radius == pytest.approx(truth['probe_radius'], rel=0.03)
    assert cal.rotation_deg == pytest.approx(truth['rotation_deg'], abs=4)
    assert cal.C1 == pytest.approx(truth['C1'], rel=0.15)
    ptycho = result.results['ptychography'].parameters
    assert ptycho['defocus'] == pytest.approx(-cal.C1)
    assert ptycho['rotation_deg'] == pytest.approx(cal.rotation_deg)
    steps = list(dict.fromkeys(r.step for r in reports))
    assert steps == ['calibrate', 'virtual', 'dpc', 'parallax',
                     'ptychography']
    ptycho_fractions = [r.fraction for r in reports
                        if r.step == 'ptychography']
    assert ptycho_fractions == sorted(ptycho_fractions)
    assert len(ptycho_fractions) == 8 + 2
    assert all(0 <= r.fraction <= 1 for r in reports)


def test_results_overlay_on_one_grid(sim, run):
    """Every method's phase layer, placed by its scale/translate (Å),
    registers with the true phase within one scan step, and the most
    isolated particle's centroid is at its true position within one scan
    step in each of them."""
    _, result, _ = run
    layers = {attrs['name']: PlacedImage(data, attrs['scale'],
                                         attrs['translate'], attrs['name'])
              for data, attrs, _ in result.layers}
    assert set(PHASES) <= set(layers)
    step = sim.datacube.calibration.scan_step
    truth = sim.true_phase(pixel_size=1.0)
    for name in PHASES:
        layer = layers[name]
        match = score(layer.data, truth, layer.scale[0], 1.0, layer.translate)
        assert match.correlation > 0.3, (name, match)
        assert np.hypot(*match.shift_px) < step, (name, match.shift_px)

    x, y, radius = most_isolated_particle(sim, margin=1.6)
    for name in PHASES:
        found = local_centroid(layers[name], (x, y), 1.6 * radius)
        assert np.hypot(*(found - (x, y))) < step, (name, found, (x, y))


def test_every_phase_layer_says_what_its_radians_are_worth(run):
    """No phase reaches the true scale within 20 % on the independent
    suite at the seed's settings (docs/validation.md): every phase layer
    says it is not quantitative, and why."""
    _, result, _ = run
    recorded = {attrs['name']: attrs['metadata']['napari_phase']['parameters']
                for _, attrs, _ in result.layers}
    for name in PHASES:
        assert recorded[name]['quantitative'] is False, name
        assert 'true scale' in recorded[name]['phase_scale'], name
    assert 'converges' in recorded['ptychography phase']['phase_scale']
    assert 'phase_scale' not in recorded['virtual BF']


def most_isolated_particle(sim, margin):
    """(x, y, radius) Å of the particle farthest from the others among
    those ``margin`` radii inside the scanned field."""
    particles = sim.specimen.particles
    extent = (np.array(sim.datacube.scan_shape) - 1) * (
        sim.datacube.calibration.scan_step)
    inside = [i for i, p in enumerate(particles) if np.all(
        (p[:2] > margin * p[2]) & (p[:2] < extent - margin * p[2]))]
    assert inside, 'no particle lies inside the scan'

    def gap(i):
        p = particles[i]
        return min(np.hypot(*(p[:2] - q[:2])) - p[2] - q[2]
                   for j, q in enumerate(particles) if j != i)

    return tuple(particles[max(inside, key=gap)][:3])


def test_a_run_saves_and_reads_back(run, tmp_path):
    _, result, _ = run
    path = save_results(tmp_path / 'run.h5', result, recipe=result.recipe)
    loaded = load_results(path)
    assert [a['name'] for _, a, _ in loaded] == [
        a['name'] for _, a, _ in result.layers]
    for (data, attrs, _), (saved, saved_attrs, _) in zip(result.layers,
                                                         loaded):
        np.testing.assert_array_equal(saved, data)
        assert saved_attrs['translate'] == attrs['translate']
    assert saved_recipe(path) == result.recipe
    assert read_recipe(path) == result.recipe  # replay from the results
    with pytest.raises(RecipeError, match='holds no napari-phase recipe'):
        read_recipe(save_results(tmp_path / 'bare.h5', result.layers[:1]))


def test_methods_select_steps_and_bad_names_fail(sim):
    cube = DataCube(sim.datacube.data, sim.datacube.calibration.copy())
    steps = pipeline(cube, seed_recipe(), probe=sim.vacuum_probe,
                     methods=['dpc'])
    done = []
    while True:
        try:
            report = next(steps)
        except StopIteration as stop:
            result = stop.value
            break
        assert isinstance(report, Progress)
        done.append(report.step)
    assert set(done) == {'calibrate', 'virtual', 'dpc'}
    assert set(result.results) == {'calibrate', 'virtual', 'dpc'}
    with pytest.raises(RecipeError, match='unknown method.*phase'):
        run_pipeline(cube, seed_recipe(), methods=['phase'])
    with pytest.raises(RecipeError, match='vacuum_probe but no probe'):
        run_pipeline(cube, new_recipe(
            {'calibrate': {'pattern': 'vacuum_probe'}}))


def test_drawn_detectors_are_replayed(small_sim):
    """A recipe's drawn detectors (a rectangle, an annulus of two
    ellipses, detector px) give the images of their masks, and a drawn
    DPC mask gives the DPC of that mask."""
    from napari_phase import dpc, ellipse_mask, polygon_mask

    cube = DataCube(small_sim.datacube.data,
                    small_sim.datacube.calibration.copy(), 'sim')
    box = [[30.0, 28.0], [60.0, 28.0], [60.0, 70.0], [30.0, 70.0]]
    outer = [[8.0, 8.0], [88.0, 8.0], [88.0, 88.0], [8.0, 88.0]]
    inner = [[26.0, 26.0], [70.0, 26.0], [70.0, 70.0], [26.0, 70.0]]
    annulus = [{'type': 'ellipse', 'role': 'add', 'vertices': outer},
               {'type': 'ellipse', 'role': 'subtract', 'vertices': inner}]
    recipe = new_recipe({
        'virtual': {'detectors': [
            {'name': 'box', 'shapes': [{'type': 'rectangle',
                                        'vertices': box}]},
            {'name': 'ring', 'shapes': annulus}]},
        'dpc': {'mask': 'detector', 'mask_shapes': annulus}})
    result = run_pipeline(cube, recipe)
    layers = {attrs['name']: (data, attrs) for data, attrs, _ in
              result.layers}
    data = np.asarray(cube.data, np.float64)
    shape = cube.detector_shape
    ring = ellipse_mask(shape, outer) * (1 - ellipse_mask(shape, inner))
    for name, mask in (('virtual box', polygon_mask(shape, box)),
                       ('virtual ring', ring)):
        expected = np.einsum('ijkl,kl->ij', data, mask)
        np.testing.assert_allclose(layers[name][0], expected, rtol=1e-5)
    assert layers['virtual ring'][1]['metadata']['napari_phase'][
        'parameters']['shapes'] == recipe['steps']['virtual']['detectors'][
        1]['shapes']
    expected = dpc(cube, mask=ring).phase
    np.testing.assert_array_equal(layers['DPC phase'][0], expected)
