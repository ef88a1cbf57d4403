"""The whole workflow in a real window (Xvfb), driven as a microscopist
drives it: the sample opened from its menu, every step done with mouse
clicks, typed values and mouse drags on the canvases; after each step the
layers are checked and no error notification may have been raised. The
window is 1280×800, and every control of the open docks must be reachable
inside it."""

import numpy as np
import pytest
import yaml
from gui import (
    canvas_point,
    choose,
    click,
    click_at,
    drag,
    drag_slider,
    errors_since,
    outside_window,
    select_items,
    type_into,
)
from napari.layers import Shapes, Vectors
from napari.utils.notifications import notification_manager
from qtpy.QtWidgets import (
    QAbstractButton,
    QApplication,
    QMainWindow,
    QSlider,
    QToolBox,
    QWidget,
)

from napari_phase import _sample
from napari_phase.compute.detectors import bf_mask
from napari_phase.compute.geometry import wrap_degrees
from napari_phase.io.layers import META
from napari_phase.pipeline import drawn_mask
from napari_phase.widgets.diffraction_view import MARKER, diffraction_view
from napari_phase.widgets.virtual_detectors import DETECTORS

PHASES = ['DPC phase', 'parallax phase', 'ptychography phase']
SCREEN = (1280, 800)


def main_window(viewer) -> QMainWindow:
    windows = [w for w in QApplication.topLevelWidgets()
               if isinstance(w, QMainWindow) and w.isVisible()]
    (window,) = [w for w in windows if w.windowTitle() == viewer.title]
    return window


def menu_action(window, *path):
    """The QAction at ``path`` of the menu bar (texts without '&')."""
    actions = window.menuBar().actions()
    for name in path:
        (action,) = [a for a in actions if a.text().replace('&', '') == name]
        actions = action.menu().actions() if action.menu() else []
    return action


def open_step(workflow, title):
    """Click the section header of ``title`` in the napari-phase dock."""
    toolbox = workflow.findChild(QToolBox)
    headers = [b for b in toolbox.findChildren(QAbstractButton)
               if b.objectName() == 'qt_toolbox_toolboxbutton']
    (header,) = [b for b in headers if b.text() == title]
    click(header)
    assert toolbox.currentWidget() is workflow.steps[title].native
    return workflow.steps[title]


def wait_done(qtbot, step, timeout=120_000):
    qtbot.waitUntil(lambda: step.runner.worker is None, timeout=timeout)
    assert 'Error' not in step.status.value, step.status.value


def wait_layers(qtbot, viewer, top, *others):
    """Wait until ``others`` are shown and ``top`` is on top, selected."""
    qtbot.waitUntil(lambda: all(name in viewer.layers for name in others)
                    and viewer.layers[-1].name == top
                    and viewer.layers.selection.active is viewer.layers[-1],
                    timeout=10_000)


def tensordot(cube, mask):
    return np.tensordot(np.asarray(cube.data), mask, axes=((2, 3), (0, 1)))


def check_clean(before):
    assert not errors_since(before), errors_since(before)


@pytest.fixture
def viewer(make_napari_viewer, qtbot):
    """A shown viewer on a 1280×800 window (the window itself is looked up
    in the test: a fixture holding it would keep it alive past the
    viewer's teardown)."""
    viewer = make_napari_viewer(show=True, title='napari-phase test')
    viewer.window.resize(*SCREEN)
    qtbot.wait(50)
    return viewer


def test_whole_workflow_with_mouse_and_keyboard(viewer, qtbot, tmp_path):
    qt_window = main_window(viewer)
    before = len(notification_manager.records)
    sim = _sample.simulation()  # the truth; the window simulates its own

    # --- the dock and the sample, from their menus ---------------------
    menu_action(qt_window, 'Plugins', 'napari-phase (napari-phase)').trigger()
    (workflow,) = [w for w in qt_window.findChildren(QWidget)
                   if type(w).__name__ == 'Workflow']
    view = diffraction_view(viewer)
    menu_action(qt_window, 'File', 'Open Sample',
                'Gold nanoparticles (simulated) (napari-phase)').trigger()
    cube_layer = viewer.layers['gold nanoparticles']
    cube = cube_layer.metadata[META]['datacube']
    qtbot.waitUntil(lambda: not cube.is_lazy, timeout=60_000)
    qtbot.waitUntil(lambda: cube_layer.visible, timeout=5_000)
    np.testing.assert_array_equal(cube.data, sim.datacube.data)
    check_clean(before)

    # --- the dock fits the screen: every control can be reached ---------
    assert qt_window.height() <= SCREEN[1], qt_window.geometry()
    for title in workflow.steps:
        open_step(workflow, title)
        qtbot.wait(20)
        assert not outside_window(qt_window, [workflow, view]), (
            title, outside_window(qt_window, [workflow, view]))
    click(open_step(workflow, 'Ptychography').advanced.button)  # unfolded
    assert not outside_window(qt_window, [workflow, view])
    click(workflow.steps['Ptychography'].advanced.button)  # folded again

    # --- calibration: fit on the vacuum probe, apply ---------------------
    calibrate = open_step(workflow, 'Calibration')
    choose(calibrate.probe_layer, 'vacuum probe')
    type_into(calibrate.thresh_upper, '0.7')
    assert calibrate.thresh_upper.value == pytest.approx(0.7)
    click(calibrate.runner.run_button)
    wait_done(qtbot, calibrate)
    assert 'radius' in calibrate.result.value
    click(calibrate.apply_button)
    cal = cube.calibration
    np.testing.assert_allclose(cal.probe_center, sim.truth['probe_center'],
                               atol=0.5)
    assert cal.probe_radius == pytest.approx(sim.truth['probe_radius'],
                                             abs=0.5)
    assert not view.model.layers['vacuum probe'].visible  # auxiliary
    check_clean(before)

    # --- virtual detectors: presets, then an ellipse drawn and moved ------
    detectors = open_step(workflow, 'Virtual detectors')
    click(detectors.bf_button)
    click(detectors.adf_button)
    qtbot.waitUntil(lambda: 'virtual ADF' in viewer.layers, timeout=30_000)
    settle(detectors, qtbot)
    np.testing.assert_allclose(
        viewer.layers['virtual BF'].data,
        tensordot(cube, bf_mask(cal, cube.detector_shape)), rtol=1e-4)
    shapes = view.model.layers[DETECTORS]
    canvas = view.qt_viewer.canvas
    q = cal.q_pixel_mrad

    def to_screen(px):
        return canvas_point(canvas, view.model.scene.camera,
                            np.multiply(px, q))

    click(tool(view, 'ellipse'))
    drag(canvas, to_screen((30, 34)), to_screen((44, 50)), qtbot=qtbot)
    qtbot.waitUntil(lambda: 'virtual detector 1' in viewer.layers,
                    timeout=30_000)
    assert shapes.shape_type[-1] == 'ellipse'
    drawn = np.array(shapes.data[-1])
    np.testing.assert_allclose(drawn.min(axis=0), (30, 34), atol=1.0)
    np.testing.assert_allclose(drawn.max(axis=0), (44, 50), atol=1.0)
    click(tool(view, 'select/move'))
    centre = drawn.mean(axis=0)
    drag(canvas, to_screen(centre), to_screen(centre + (6, -4)), steps=8,
         qtbot=qtbot, pause_ms=30)
    settle(detectors, qtbot)
    moved = np.array(shapes.data[-1])
    np.testing.assert_allclose(moved - drawn, np.tile((6, -4), (4, 1)),
                               atol=1.0)
    expected = tensordot(cube, drawn_mask(
        [{'type': 'ellipse', 'vertices': moved}], cube.detector_shape))
    np.testing.assert_allclose(viewer.layers['virtual detector 1'].data,
                               expected, rtol=1e-4)
    check_clean(before)

    # --- a scan position picked on the main canvas ------------------------
    for layer in viewer.layers:
        layer.visible = layer is cube_layer
    viewer.reset_view()
    qtbot.wait(50)
    main_canvas = viewer.window._qt_viewer.canvas  # tests only
    step = cal.scan_step
    click_at(main_canvas, canvas_point(main_canvas, viewer.scene.camera,
                                       (20 * step, 31 * step)))
    qtbot.waitUntil(lambda: 'pattern at (20, 31)' in view.model.layers,
                    timeout=5_000)
    np.testing.assert_array_equal(
        view.model.layers['pattern at (20, 31)'].data, cube.data[20, 31])
    np.testing.assert_allclose(viewer.layers[MARKER].data,
                               [[20 * step, 31 * step]])
    assert '(20, 31)' in view.position.text()
    assert f'{20 * step:.2f}' in view.position.text()
    # scrubbing the detector pixel: the datacube shows another BF pixel
    slider = viewer.window._qt_viewer.dims.slider_widgets[0].slider
    drag_slider(slider, 0.25)
    assert viewer.dims.current_step[0] < 50
    check_clean(before)

    # --- DPC -----------------------------------------------------------
    dpc = open_step(workflow, 'DPC')
    choose(dpc.mask, 'mean pattern > threshold')
    click(dpc.runner.run_button)
    wait_done(qtbot, dpc)
    wait_layers(qtbot, viewer, 'DPC phase', 'DPC CoM field')
    phase = viewer.layers['DPC phase']
    assert phase.visible and viewer.layers.selection.active is phase
    for name in ('DPC CoM x', 'DPC CoM y', 'DPC CoM field'):
        assert not viewer.layers[name].visible
    assert isinstance(viewer.layers['DPC CoM field'], Vectors)
    truth = sim.true_phase()
    assert np.corrcoef(phase.data.ravel(), truth.ravel())[0, 1] > 0.5
    check_clean(before)

    # --- parallax --------------------------------------------------------
    parallax = open_step(workflow, 'Parallax')
    click(parallax.runner.run_button)
    wait_done(qtbot, parallax)
    wait_layers(qtbot, viewer, 'parallax phase', 'parallax BF')
    assert not viewer.layers['parallax BF'].visible
    assert cal.C1 == pytest.approx(sim.truth['C1'], rel=0.1)
    assert abs(wrap_degrees(cal.rotation_deg
                            - sim.truth['rotation_deg'])) < 2
    check_clean(before)

    # --- tune aberrations: from parallax's calibration, one drag ---------
    tune = open_step(workflow, 'Tune aberrations')
    c1 = tune.sliders['C10']
    assert c1.value == pytest.approx(cal.C1, abs=0.01)
    click(tune.runner.run_button)
    wait_done(qtbot, tune)
    qtbot.waitUntil(lambda: 'tuned phase' in viewer.layers, timeout=10_000)
    drag_slider(c1.slider.native.findChild(QSlider), 0.8)
    tuned = c1.value
    assert tuned > cal.C1 + 100  # the slider spans C1 ± max(|C1|, 200 Å)
    qtbot.waitUntil(lambda: viewer.layers['tuned phase'].metadata[META][
        'parameters']['C1'] == tuned, timeout=10_000)
    check_clean(before)

    # --- ptychography: 2 iterations, then a run cancelled ----------------
    ptycho = open_step(workflow, 'Ptychography')
    assert ptycho.defocus.value == pytest.approx(-cal.C1, abs=0.01)
    type_into(ptycho.num_iter, '2')
    click(ptycho.runner.run_button)
    wait_done(qtbot, ptycho)
    wait_layers(qtbot, viewer, 'ptychography phase',
                'ptychography amplitude')
    phase = viewer.layers['ptychography phase']
    qtbot.waitUntil(lambda: 'calibration' in phase.metadata[META][
        'parameters'], timeout=10_000)  # the result's, not a live one
    recorded = phase.metadata[META]['parameters']
    assert recorded['iterations_done'] == 2
    assert not viewer.layers['ptychography amplitude'].visible
    assert not view.model.layers['ptychography probe phase'].visible
    assert 'Done after 2 iteration' in ptycho.status.value
    type_into(ptycho.num_iter, '500')
    click(ptycho.runner.run_button)
    qtbot.waitUntil(lambda: len(ptycho._errors) >= 1, timeout=60_000)
    click(ptycho.runner.cancel_button)
    wait_done(qtbot, ptycho)
    done = ptycho.result.parameters['iterations_done']
    assert 1 <= done < 500
    assert ptycho.status.value.startswith('Stopped after')
    phase = viewer.layers['ptychography phase']
    qtbot.waitUntil(lambda: phase.metadata[META]['parameters'].get(
        'num_iter') == 500 and 'calibration' in phase.metadata[META][
        'parameters'], timeout=10_000)
    assert phase.metadata[META]['parameters']['iterations_done'] == done
    check_clean(before)

    # --- compare: grid, profile line, numbers ---------------------------
    compare = open_step(workflow, 'Compare')
    select_items(compare.layers, PHASES)
    choose(compare.mode, 'side by side')
    click(compare.show_button)
    assert viewer.canvas.grid.enabled
    assert {layer.name for layer in viewer.layers if layer.visible} == set(
        PHASES)
    click(compare.line_button)
    qtbot.waitUntil(lambda: compare.profile is not None, timeout=5_000)
    assert not viewer.canvas.grid.enabled
    assert len(compare.axes.lines) == 3
    assert isinstance(viewer.layers['Profile line'], Shapes)
    click(compare.numbers_button)
    lines = compare.numbers.value.splitlines()
    assert len(lines) == 3 and all(' r = ' in line for line in lines)
    check_clean(before)

    # --- export the recipe -----------------------------------------------
    path = tmp_path / 'session.yaml'
    type_into(compare.recipe_path, str(path))
    click(compare.export_button)
    assert path.exists(), compare.status.value
    recipe = yaml.safe_load(path.read_text())
    steps = recipe['steps']
    assert steps['ptychography']['num_iter'] == done
    assert steps['dpc']['mask'] == 'threshold'
    names = [d['name'] for d in steps['virtual']['detectors']]
    assert sorted(names) == ['ADF', 'BF', 'detector 1']
    (ellipse,) = [d for d in steps['virtual']['detectors']
                  if d['name'] == 'detector 1']
    np.testing.assert_allclose(ellipse['shapes'][0]['vertices'], moved)
    click(compare.export_button)  # exists: the message names the box
    assert 'tick "overwrite"' in compare.status.value
    assert errors_since(before) == [compare.status.value[len('Error: '):]]


def settle(widget, qtbot):
    qtbot.waitUntil(lambda: widget.worker is None and not widget._pending
                    and not widget._timer.isActive(), timeout=30_000)


def tool(view, text):
    (button,) = [b for b in view.tools.buttons() if b.text() == text]
    return button
