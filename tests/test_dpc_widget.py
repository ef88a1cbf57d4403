"""The DPC widget in a real viewer, on the simulated sample."""

import numpy as np
import pytest

from napari_phase import Calibration, DataCube
from napari_phase.compute.geometry import wrap_degrees
from napari_phase.widgets._common import META
from napari_phase.widgets.dpc_widget import (
    COM_X,
    COM_Y,
    FIELD,
    PHASE,
    THRESHOLD,
    DPCWidget,
    com_arrows,
)
from gui import click


def test_widget_makes_layers_and_writes_calibration(
    make_napari_viewer, qtbot, cube, small_sim, add_cube):
    viewer = make_napari_viewer()
    add_cube(viewer, cube)
    widget = DPCWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.write_calibration.value  # no rotation in it yet
    widget.mask.value = THRESHOLD
    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: widget.result is not None, timeout=30_000)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=5_000)

    step = cube.calibration.scan_step
    for name in (PHASE, COM_X, COM_Y):
        layer = viewer.layers[name]
        assert layer.data.shape == (32, 32)
        assert tuple(layer.scale) == (step, step)
        params = layer.metadata[META]['parameters']
        assert params['mask'] == 'threshold'
        assert params['mask_threshold'] == 0.8
        assert params['descan'] == 'plane'
        assert params['fitted_rotation_deg'] == widget.result.rotation_deg
    assert viewer.layers[FIELD]._type_string == 'vectors'
    # the defocused probe fills 96² badly (aliasing): a few degrees off,
    # but the geometric half-turn and the transpose are what matter here
    truth = small_sim.truth
    cal = cube.calibration
    assert abs(wrap_degrees(cal.rotation_deg - truth['rotation_deg'])) < 10
    assert cal.transpose == truth['transpose']
    assert cal.half_turn.startswith('DPC: ')
    assert small_sim.datacube.calibration.rotation_deg is None  # a copy
    truth_phase = small_sim.true_phase()
    r = np.corrcoef(viewer.layers[PHASE].data.ravel(), truth_phase.ravel())
    assert r[0, 1] > 0.5  # correct sign (probe blur lowers r: see test_dpc)
    assert len(widget.plot.axes.lines) == 3  # two curves and the fit
    assert 'rotation' in widget.report.value


def test_widget_keeps_a_rotation_already_there(
    make_napari_viewer, qtbot, cube, add_cube):
    cube.calibration.update(rotation_deg=-11.0, transpose=False)
    viewer = make_napari_viewer()
    add_cube(viewer, cube)
    widget = DPCWidget(viewer)
    assert not widget.write_calibration.value
    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: widget.result is not None, timeout=30_000)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=5_000)
    assert cube.calibration.rotation_deg == -11.0
    assert PHASE in viewer.layers


def test_widget_shows_bad_input(make_napari_viewer, qtbot, add_cube):
    viewer = make_napari_viewer()
    data = np.ones((4, 4, 8, 8), np.float32)
    add_cube(viewer, DataCube(data, Calibration(), 'no calibration'))
    widget = DPCWidget(viewer)
    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=10_000)
    assert 'scan step' in widget.runner.status.value
    assert PHASE not in viewer.layers


def test_com_arrows_subsample_and_scale():
    com = np.zeros((2, 48, 48))
    com[0, 10, 20] = 2.0  # mrad
    arrows, scale = com_arrows(com, step=2.0)
    assert arrows.shape == (24 * 24, 2, 2)  # stride 2
    longest = np.hypot(*arrows[:, 1].T).max()
    assert longest == pytest.approx(2 * 2.0)  # one arrow spacing, Å
    assert scale == pytest.approx(2.0)  # Å per mrad
    hit = arrows[np.hypot(*arrows[:, 1].T) > 0][0]
    np.testing.assert_allclose(hit[0], [20.0, 40.0])  # Å, scan frame


def test_widget_uses_a_drawn_detector(make_napari_viewer, qtbot, cube,
                                      small_sim, monkeypatch, add_cube):
    from napari_phase.widgets import virtual_detectors

    qx, qy = np.indices(cube.detector_shape)
    cx, cy = small_sim.truth['probe_center']
    disk = np.hypot(qx - cx, qy - cy) <= small_sim.truth['probe_radius'] + 2
    monkeypatch.setattr(virtual_detectors, 'detector_masks',
                        lambda viewer: {'my BF': disk.astype(np.float32)})
    viewer = make_napari_viewer()
    add_cube(viewer, cube)
    widget = DPCWidget(viewer)
    widget.mask.value = 'detector: my BF'
    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: widget.result is not None, timeout=30_000)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=5_000)
    params = viewer.layers[PHASE].metadata[META]['parameters']
    assert params['mask'] == 'detector: my BF'
    assert widget.result.parameters['mask'].startswith(f'{disk.sum()} of')
    assert 'keeps the contrast' in widget.result.contrast
