"""Ptychography widget in a real viewer: calibration prefill, live
progress, cancel keeps the partial result, the advanced fields reach the
computation, Continue goes on from the result (as one longer run of the
compute API) and its recipe replays on the command line."""

import numpy as np
import pytest
from gui import choose, click, type_into

from napari_phase import load_results, ptychography, simulate, write_emd
from napari_phase.cli import main
from napari_phase.widgets import ptycho_widget as pw
from napari_phase.widgets._common import META, Runner
from napari_phase.widgets.compare_widget import CompareWidget
from napari_phase.widgets.diffraction_view import diffraction_view


def test_fields_follow_the_calibration(make_napari_viewer, add_cube):
    viewer = make_napari_viewer()
    sim = simulate(scan_shape=(8, 8), detector_shape=(32, 32), dose=None)
    add_cube(viewer, sim.datacube)
    widget = pw.PtychoWidget(viewer)
    assert 'C1' in widget.calibration_note.value  # named as missing
    sim.datacube.calibration.update(C1=412.0, rotation_deg=-11.0,
                                    transpose=True)
    assert widget.defocus.value == -412.0
    assert widget.rotation_deg.value == -11.0
    assert widget.transpose.value is True
    assert widget.device.value == 'CPU' and not widget.device.enabled


def test_run_shows_progress_live_layer_and_cancel_keeps_result(
        make_napari_viewer, qtbot, monkeypatch, add_cube):
    monkeypatch.setattr(pw, 'REFRESH_MS', 50)
    viewer = make_napari_viewer(show=True)
    sim = simulate(scan_shape=(20, 20), detector_shape=(64, 64),
                   probe_radius_px=20, C1=200.0, dose=1e5, seed=3)
    sim.datacube.calibration.update(
        C1=200.0, rotation_deg=sim.truth['rotation_deg'], transpose=False)
    add_cube(viewer, sim.datacube)
    widget = pw.PtychoWidget(viewer)
    viewer.window.add_dock_widget(widget)
    type_into(widget.num_iter, '500')
    type_into(widget.max_batch_size, '16')
    descriptions = []
    describe = Runner.describe

    def record(runner, text):
        descriptions.append(text)
        describe(runner, text)

    monkeypatch.setattr(Runner, 'describe', record)

    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: pw.PHASE in viewer.layers
                    and len(widget.plot.errors) >= 3, timeout=60_000)
    live = viewer.layers[pw.PHASE]
    assert live.scale[0] == sim.truth['object_pixel']
    modes = diffraction_view(viewer).model.layers[pw.PROBE_MODES]
    assert 'calibration' not in modes.metadata[META]['parameters']  # live
    assert any(d.startswith('iteration ') for d in descriptions)
    assert widget.runner.worker is not None  # still running

    click(widget.runner.cancel_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=30_000)
    qtbot.waitUntil(lambda: viewer.layers[-1].name == pw.PHASE
                    and 'calibration' in viewer.layers[pw.PHASE].metadata[
                        META]['parameters'],  # the result, not a live one
                    timeout=5_000)
    result = widget.result
    assert result is not None, widget.runner.status.value
    done = result.parameters['iterations_done']
    assert 3 <= done < 500
    assert descriptions[-1].startswith('Stopped after')
    phase = viewer.layers[pw.PHASE]
    params = phase.metadata[META]['parameters']
    assert params['iterations_done'] == done, (descriptions[-6:], params)
    assert params['quantitative'] is False
    assert 'converges' in params['phase_scale']
    assert params['defocus'] == -200.0 and params['max_batch_size'] == 16
    assert np.array_equal(phase.data, result.phase)
    truth = sim.true_phase(pixel_size=result.pixel_size)
    assert np.corrcoef(truth.ravel(), phase.data.ravel())[0, 1] > 0.5
    assert not viewer.layers[pw.AMPLITUDE].visible  # the phase in front
    assert viewer.layers.selection.active is phase
    model = diffraction_view(viewer).model
    assert not model.layers[pw.PROBE_AMPLITUDE].visible
    assert not model.layers[pw.PROBE_PHASE].visible
    assert widget.plot.errors == result.errors


def test_a_warning_of_the_reconstruction_is_shown(make_napari_viewer,
                                                 qtbot, add_cube):
    """A defocus too large for the window: ptychography warns; the warning
    reaches the status line and a notification, on every run."""
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer(show=True)
    sim = simulate(scan_shape=(8, 8), detector_shape=(48, 48), dose=None,
                   seed=2)
    sim.datacube.calibration.update(C1=200.0, rotation_deg=-15.0,
                                    transpose=False)
    add_cube(viewer, sim.datacube)
    widget = pw.PtychoWidget(viewer)
    viewer.window.add_dock_widget(widget)
    type_into(widget.num_iter, '1')
    for _ in range(2):
        before = len(notification_manager.records)
        click(widget.runner.run_button)
        qtbot.waitUntil(lambda: widget.runner.worker is None,
                        timeout=30_000)
        assert 'the probe does not fit' in widget.runner.status.value
        assert any('Ptychography: ' in str(n.message)
                   and 'probe does not fit' in str(n.message)
                   for n in notification_manager.records[before:])


def calibrated_sample(scan_shape, seed=1):
    """A small noise-free scan, its probe and geometry in the calibration
    (as the probe fit and parallax would leave it)."""
    sim = simulate(scan_shape=scan_shape, detector_shape=(48, 48),
                   probe_radius_px=14, C1=60.0, dose=None, seed=seed)
    sim.datacube.calibration.update(
        C1=60.0, rotation_deg=sim.truth['rotation_deg'], transpose=False,
        probe_center=sim.truth['probe_center'],
        probe_radius=sim.truth['probe_radius'])
    return sim


def docked_widget(make_napari_viewer, qtbot, add_cube, sim):
    viewer = make_napari_viewer(show=True)
    add_cube(viewer, sim.datacube)
    widget = pw.PtychoWidget(viewer)
    viewer.window.add_dock_widget(widget)
    qtbot.waitUntil(widget.native.isVisible, timeout=5_000)
    return viewer, widget


def press_and_wait(qtbot, widget, button, iterations):
    """Press ``button``; wait for the result of ``iterations`` in all,
    and for its layers (the phase, shown last, is the result's)."""
    click(button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=60_000)
    result = widget.result
    assert result is not None, widget.runner.status.value
    assert result.parameters['iterations_done'] == iterations

    def shown():
        layers = widget.viewer.layers
        return pw.PHASE in layers and layers[pw.PHASE].metadata[META][
            'parameters'].get('runs') == result.parameters['runs']

    qtbot.waitUntil(shown, timeout=5_000)


def test_continue_equals_one_longer_run_and_its_recipe_replays(
        make_napari_viewer, qtbot, add_cube, tmp_path):
    """3 iterations, then Continue with 2: the object, probe and errors
    of 5 iterations in one call of the compute API (a free probe: its
    momentum goes on too); the exported recipe replays both runs on the
    command line to the same phase."""
    sim = calibrated_sample((10, 10))
    viewer, widget = docked_widget(make_napari_viewer, qtbot, add_cube, sim)
    assert not widget.continue_button.enabled  # no result yet
    type_into(widget.num_iter, '3')
    type_into(widget.max_batch_size, '32')
    click(widget.fix_probe)  # off
    press_and_wait(qtbot, widget, widget.runner.run_button, 3)
    first = list(widget.plot.errors)
    assert len(first) == 3
    type_into(widget.num_iter, '2')
    press_and_wait(qtbot, widget, widget.continue_button, 5)
    result = widget.result
    assert widget.plot.errors[:3] == first and len(widget.plot.errors) == 5

    truth = ptychography(sim.datacube, defocus=-60.0,
                         rotation_deg=sim.truth['rotation_deg'],
                         transpose=False, num_iter=5, max_batch_size=32,
                         fix_probe=False, seed=0)
    np.testing.assert_allclose(result.object, truth.object, atol=1e-5)
    np.testing.assert_allclose(result.probe_modes, truth.probe_modes,
                               atol=1e-5 * np.abs(truth.probe).max())
    assert result.errors == pytest.approx(truth.errors, rel=1e-5)
    phase = viewer.layers[pw.PHASE]
    np.testing.assert_array_equal(phase.data, result.phase)
    runs = phase.metadata[META]['parameters']['runs']
    assert [run['num_iter'] for run in runs] == [3, 2]

    compare = CompareWidget(viewer)
    recipe = tmp_path / 'session.yaml'
    type_into(compare.recipe_path, str(recipe))
    click(compare.export_button)
    assert recipe.exists(), compare.status.value
    data, out = tmp_path / 'scan.h5', tmp_path / 'replay.h5'
    write_emd(data, sim.datacube)
    assert main(['run', str(data), '--recipe', str(recipe), '--methods',
                 'ptycho', '-o', str(out)]) == 0
    replayed = {attrs['name']: array
                for array, attrs, _ in load_results(out)}
    np.testing.assert_array_equal(replayed[pw.PHASE], result.phase)


def test_advanced_fields_reach_the_reconstruction_and_its_layers(
        make_napari_viewer, qtbot, add_cube):
    """Two probe modes, two slices and position correction from iteration
    1, typed and clicked (the Advanced group unfolded first): the result
    is the compute API's with those settings, and the layers show the
    modes, the slices and the positions. Continue refuses another model
    and waits for the result's datacube; a plain run removes the slices
    and positions layers of the one before."""
    sim = calibrated_sample((8, 8))
    viewer, widget = docked_widget(make_napari_viewer, qtbot, add_cube, sim)
    assert not widget.position_correction.native.isVisible()  # folded
    click(widget.advanced.button)
    assert widget.position_correction.native.isVisible()
    type_into(widget.num_iter, '2')
    type_into(widget.num_probes, '2')
    type_into(widget.num_slices, '2')
    type_into(widget.slice_thickness, '20')
    click(widget.position_correction)
    type_into(widget.position_correction_start, '1')
    choose(widget.probe_aperture, 'Fourier amplitude')
    type_into(widget.tv_weight, '0.01')
    press_and_wait(qtbot, widget, widget.runner.run_button, 2)
    result = widget.result
    settings = {'num_probes': 2, 'num_slices': 2, 'slice_thickness': 20.0,
                'position_correction': True, 'position_correction_start': 1,
                'probe_aperture': 'amplitude', 'tv_weight': 0.01}
    assert {key: result.parameters[key] for key in settings} == settings
    truth = ptychography(sim.datacube, defocus=-60.0,
                         rotation_deg=sim.truth['rotation_deg'],
                         transpose=False, num_iter=2, fix_probe=True,
                         **settings)
    np.testing.assert_allclose(result.object, truth.object, atol=1e-5)
    np.testing.assert_allclose(result.positions, truth.positions,
                               atol=1e-6)

    modes = diffraction_view(viewer).model.layers[pw.PROBE_MODES]
    assert modes.data.shape == (2, 48, 48) and not modes.visible
    powers = modes.metadata[META]['mode_powers']
    assert len(powers) == 2 and sum(powers) == pytest.approx(1)
    slices = viewer.layers[pw.SLICES]
    assert slices.data.shape[0] == 2 and not slices.visible
    assert slices.scale[0] == 20.0
    np.testing.assert_allclose(slices.data[:, 0, 0].sum(axis=0),
                               result.phase, atol=1e-5)
    points = viewer.layers[pw.POSITIONS]
    assert not points.visible
    np.testing.assert_array_equal(points.data,
                                  result.positions.reshape(64, 2))
    shifts = viewer.layers[pw.CORRECTIONS].data
    np.testing.assert_allclose(shifts[:, 1], result.position_corrections
                               .reshape(64, 2), atol=1e-9)

    type_into(widget.num_probes, '3')  # another model: refused
    click(widget.continue_button)
    assert 'num_probes 2 → 3' in widget.status.value
    assert widget.runner.worker is None
    other = calibrated_sample((6, 6), seed=2).datacube
    other.source = 'other scan'
    add_cube(viewer, other, 'other')
    choose(widget.cube_layer, 'other')
    assert not widget.continue_button.enabled  # not this cube's result
    choose(widget.cube_layer, 'scan')
    assert widget.continue_button.enabled

    for field in ('num_probes', 'num_slices'):
        type_into(getattr(widget, field), '1')
    click(widget.position_correction)  # off
    press_and_wait(qtbot, widget, widget.runner.run_button, 2)
    assert not {pw.SLICES, pw.POSITIONS, pw.CORRECTIONS} & {
        layer.name for layer in viewer.layers}
