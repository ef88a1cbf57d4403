"""The DPC widget in a real viewer, on the simulated sample."""

import numpy as np
import pytest
from gui import canvas_point, choose, click, drag
from napari.layers import Vectors

from benchmarks import independent
from napari_phase import Calibration, DataCube, run_pipeline
from napari_phase.compute.geometry import wrap_degrees
from napari_phase.recipe import new_recipe
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


def run_and_wait(widget, qtbot):
    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=30_000)
    qtbot.waitUntil(lambda: widget.viewer.layers[-1].name == PHASE
                    or 'Error' in widget.runner.status.value, timeout=5_000)


def test_widget_makes_layers_and_writes_calibration(
    make_napari_viewer, qtbot, cube, small_sim, add_cube):
    viewer = make_napari_viewer(show=True)
    add_cube(viewer, cube)
    widget = DPCWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.write_calibration.value  # no rotation in it yet
    choose(widget.mask, THRESHOLD)
    run_and_wait(widget, qtbot)

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
    assert isinstance(viewer.layers[FIELD], Vectors)
    # the phase in front: on top, selected; the CoM layers hidden
    assert viewer.layers[-1].name == PHASE and viewer.layers[PHASE].visible
    assert viewer.layers.selection.active is viewer.layers[PHASE]
    assert not any(viewer.layers[name].visible
                   for name in (COM_X, COM_Y, FIELD))
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
    viewer = make_napari_viewer(show=True)
    add_cube(viewer, cube)
    widget = DPCWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert not widget.write_calibration.value
    run_and_wait(widget, qtbot)
    assert cube.calibration.rotation_deg == -11.0
    assert PHASE in viewer.layers


def test_widget_shows_bad_input(make_napari_viewer, qtbot, add_cube):
    viewer = make_napari_viewer(show=True)
    data = np.ones((4, 4, 8, 8), np.float32)
    add_cube(viewer, DataCube(data, Calibration(), 'no calibration'))
    widget = DPCWidget(viewer)
    viewer.window.add_dock_widget(widget)
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
                                      small_sim, add_cube):
    """A disk drawn with the mouse in the diffraction view is the mask;
    the layers record its shapes (a recipe replays it)."""
    from napari_phase.pipeline import drawn_mask
    from napari_phase.widgets.virtual_detectors import VirtualDetectors

    viewer = make_napari_viewer(show=True)
    add_cube(viewer, cube)
    detectors = VirtualDetectors(viewer)
    viewer.window.add_dock_widget(detectors)
    view = detectors.view
    qtbot.waitUntil(lambda: 'mean pattern' in view.model.layers,
                    timeout=10_000)
    qtbot.wait(100)  # the view fitted to the pattern
    q = cube.calibration.q_pixel_mrad
    cx, cy = small_sim.truth['probe_center']
    r = small_sim.truth['probe_radius'] + 2
    corners = [canvas_point(view.qt_viewer.canvas, view.model.scene.camera,
                            (x * q, y * q))
               for x, y in ((cx - r, cy - r), (cx + r, cy + r))]
    (ellipse,) = [b for b in view.tools.buttons() if b.text() == 'ellipse']
    click(ellipse)
    drag(view.qt_viewer.canvas, *corners, qtbot=qtbot)
    qtbot.waitUntil(lambda: 'virtual detector 1' in viewer.layers,
                    timeout=10_000)
    widget = DPCWidget(viewer)
    viewer.window.add_dock_widget(widget)
    choose(widget.mask, 'detector: detector 1')
    run_and_wait(widget, qtbot)
    params = viewer.layers[PHASE].metadata[META]['parameters']
    assert params['mask'] == 'detector'
    assert params['mask_detector'] == 'detector 1'
    assert params['quantitative'] is False
    assert 'probe-blurred' in params['phase_scale']
    disk = drawn_mask(params['mask_shapes'], cube.detector_shape)
    qx, qy = np.indices(cube.detector_shape)
    assert np.hypot(qx - cx, qy - cy)[disk > 0].max() == pytest.approx(
        r, abs=1.5)
    assert widget.result.parameters['mask'].startswith(
        f'{int(disk.sum())} of')
    assert 'keeps the contrast' in widget.result.contrast


def test_widget_warns_when_the_probe_is_astigmatic(make_napari_viewer, qtbot,
                                                   add_cube):
    """An abTEM scan whose astigmatism is twice the defocus
    (benchmarks/independent.py): Run DPC takes the wrong transpose,
    clearly, and says in its status line and summary that it may be
    wrong, because the CoM is much stronger along one direction."""
    loaded = independent.load('gold_carbon_astig_T')
    cube = loaded.cube
    run_pipeline(cube, new_recipe({'calibrate': {'thresh_upper': 0.7}}),
                 loaded.probe)
    viewer = make_napari_viewer(show=True)
    add_cube(viewer, cube)
    widget = DPCWidget(viewer)
    viewer.window.add_dock_widget(widget)
    run_and_wait(widget, qtbot)
    assert widget.result.transpose is not loaded.truth.transpose
    assert 'stronger along one direction' in widget.runner.status.value
    assert 'CoM anisotropy ×1.96' in widget.report.value

