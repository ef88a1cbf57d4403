"""Ptychography widget in a real viewer: calibration prefill, live
progress, cancel keeps the partial result."""

import numpy as np
from gui import click, type_into

from napari_phase import simulate
from napari_phase.widgets import ptycho_widget as pw
from napari_phase.widgets._common import META, Runner
from napari_phase.widgets.diffraction_view import diffraction_view


def add_cube(viewer, cube):
    q, step = cube.calibration.q_pixel_mrad, cube.calibration.scan_step
    return viewer.add_image(
        cube.data.transpose(2, 3, 0, 1), name='scan',
        scale=(q, q, step, step), metadata={META: {'datacube': cube}},
    )


def test_fields_follow_the_calibration(make_napari_viewer):
    viewer = make_napari_viewer()
    sim = simulate(scan_shape=(8, 8), detector_shape=(32, 32), dose=None)
    add_cube(viewer, sim.datacube)
    widget = pw.PtychoWidget(viewer)
    assert 'C1' in widget.calibration_note.value  # named as missing
    sim.datacube.calibration.update(C1=412.0, rotation_deg=-11.0,
                                    transpose=True)
    assert widget.defocus.value == -412.0
    assert widget.rotation.value == -11.0
    assert widget.transpose.value is True
    assert widget.device.value == 'CPU' and not widget.device.enabled


def test_run_shows_progress_live_layer_and_cancel_keeps_result(
        make_napari_viewer, qtbot, monkeypatch):
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
    type_into(widget.batch, '16')
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
                                                 qtbot):
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
