"""Virtual detector tool in a real window, driven with the mouse: presets
and detectors drawn on the diffraction canvas give images equal to a numpy
reference, dragging a shape updates its image while it moves, a click on
the main canvas shows that scan position's pattern; bad shapes give
messages."""

import dask.array as da
import numpy as np
import pytest
from gui import canvas_point, click, click_at, drag
from napari.layers import Layer
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_phase import DataCube
from napari_phase.compute.detectors import (
    adf_mask,
    bf_mask,
    circle_mask,
    polygon_mask,
)
from napari_phase.io.layers import datacube_layers
from napari_phase.pipeline import drawn_mask
from napari_phase.widgets.diffraction_view import MARKER, diffraction_view
from napari_phase.widgets.virtual_detectors import (
    DETECTORS,
    VirtualDetectors,
    detector_masks,
    tint_color,
)


@pytest.fixture
def cube(small_sim):
    """The small simulated scan with a fitted-looking probe calibration."""
    cal = small_sim.datacube.calibration.copy()
    cal.update(probe_center=(48.37, 47.71), probe_radius=21.13)
    return DataCube(small_sim.datacube.data, cal, 'sim')


def reference(cube, mask):
    data = np.asarray(cube.data, dtype=np.float64)
    return np.einsum('ijkl,kl->ij', data, mask.astype(np.float64))


def settle(widget, qtbot):
    """Wait until no update is scheduled, waiting or running."""
    qtbot.waitUntil(
        lambda: widget.worker is None and not widget._pending
        and not widget._timer.isActive(), timeout=10000)


def image(viewer, name):
    return np.asarray(viewer.layers[f'virtual {name}'].data)


def tool(view, text):
    (button,) = [b for b in view.tools.buttons() if b.text() == text]
    return button


def screen(view, detector_px):
    """Diffraction-canvas pixel of a detector pixel (the view in mrad)."""
    q = view.model.layers[DETECTORS].scale[0]
    return canvas_point(view.qt_viewer.canvas, view.model.scene.camera,
                        np.multiply(detector_px, q))


def start(viewer, qtbot, cube_layer_tuples):
    for layer_tuple in cube_layer_tuples:
        viewer.add_layer(Layer.create(*layer_tuple))
    widget = VirtualDetectors(viewer)
    viewer.window.add_dock_widget(widget)
    settle(widget, qtbot)
    qtbot.wait(50)
    return widget, diffraction_view(viewer)


@pytest.fixture
def tool_in_window(make_napari_viewer, qtbot, cube):
    viewer = make_napari_viewer(show=True)
    widget, view = start(viewer, qtbot, datacube_layers(cube, 'scan'))
    return viewer, widget, view


def test_presets_equal_numpy(tool_in_window, qtbot, cube):
    viewer, widget, view = tool_in_window
    np.testing.assert_allclose(view.model.layers['mean pattern'].data,
                               cube.data.mean(axis=(0, 1)), rtol=1e-5)
    click(widget.bf_button)
    click(widget.adf_button)
    qtbot.waitUntil(lambda: 'virtual ADF' in viewer.layers, timeout=10000)
    settle(widget, qtbot)
    shape = cube.detector_shape
    np.testing.assert_allclose(image(viewer, 'BF'),
                               reference(cube, bf_mask(cube.calibration,
                                                       shape)), rtol=1e-5)
    np.testing.assert_allclose(image(viewer, 'ADF'),
                               reference(cube, adf_mask(cube.calibration,
                                                        shape)), rtol=1e-5)
    bf = viewer.layers['virtual BF']
    assert tuple(bf.scale) == (2.39, 2.39)
    params = bf.metadata['napari_phase']['parameters']
    assert params['method'] == 'virtual' and params['detector'] == 'BF'
    np.testing.assert_array_equal(  # the shapes replay the same mask
        drawn_mask(params['shapes'], shape), detector_masks(viewer)['BF'])
    shapes = view.model.layers[DETECTORS]
    assert shapes.scale[0] == pytest.approx(cube.calibration.q_pixel_mrad)
    # colour ties each shape to its image
    for i, name in enumerate(shapes.features['detector']):
        layer = viewer.layers[f'virtual {name}']
        np.testing.assert_allclose(shapes.edge_color[i],
                                   tint_color(layer.colormap.name))
    viewer.layers['virtual BF'].colormap = 'red'  # the tie goes both ways
    np.testing.assert_allclose(shapes.edge_color[0], tint_color('red'))
    cube.calibration.update(scan_step=3.0, q_pixel_mrad=1.5)  # e.g. Apply
    assert tuple(bf.scale) == (3.0, 3.0)
    assert tuple(shapes.scale) == (1.5, 1.5)
    masks = detector_masks(viewer)
    assert set(masks) == {'BF', 'ADF'}
    np.testing.assert_array_equal(masks['BF'] + masks['ADF'], 1)


def test_dragging_a_shape_updates_its_image_as_it_moves(tool_in_window,
                                                        qtbot, cube):
    viewer, widget, view = tool_in_window
    click(widget.bf_button)
    qtbot.waitUntil(lambda: 'virtual BF' in viewer.layers, timeout=10000)
    settle(widget, qtbot)
    shown = []
    viewer.layers['virtual BF'].events.data.connect(
        lambda event: shown.append(np.array(event.value)))
    click(tool(view, 'select/move'))
    centre = np.asarray(cube.calibration.probe_center)
    drag(view.qt_viewer.canvas, screen(view, centre),
         screen(view, centre + (6, -4)), steps=10, qtbot=qtbot,
         pause_ms=60)
    settle(widget, qtbot)
    assert len(shown) >= 2  # images came while the mouse moved
    moved = np.asarray(widget.shapes.data[0]).mean(axis=0) - centre
    np.testing.assert_allclose(moved, (6, -4), atol=1.0)
    radius = cube.calibration.probe_radius + 2
    expected = reference(cube, circle_mask(cube.detector_shape,
                                           centre + moved, radius))
    np.testing.assert_allclose(image(viewer, 'BF'), expected, rtol=1e-5)


def test_drawn_polygon_and_removal(tool_in_window, qtbot, cube):
    viewer, widget, view = tool_in_window
    canvas = view.qt_viewer.canvas
    vertices = np.array([[20.5, 30.2], [70.1, 35.7], [50.3, 80.9]])
    click(tool(view, 'polygon'))
    for vertex in vertices:  # a click per vertex, Escape to finish
        click_at(canvas, screen(view, vertex))
        qtbot.wait(20)
    QTest.keyClick(canvas.native, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: 'virtual detector 1' in viewer.layers,
                    timeout=10000)
    settle(widget, qtbot)
    drawn = np.asarray(widget.shapes.data[0])
    assert widget.shapes.shape_type[0] == 'polygon'
    np.testing.assert_allclose(drawn, vertices, atol=1.0)
    np.testing.assert_allclose(
        image(viewer, 'detector 1'),
        reference(cube, polygon_mask(cube.detector_shape, drawn)),
        rtol=1e-5)
    assert viewer.layers['virtual detector 1'].colormap.name == 'cyan'
    click(tool(view, 'select/move'))
    click_at(canvas, screen(view, vertices.mean(axis=0)))
    assert widget.shapes.selected_data == {0}
    click(tool(view, 'remove'))
    qtbot.waitUntil(lambda: 'virtual detector 1' not in viewer.layers,
                    timeout=10000)


def test_lazy_cube_and_picking_its_patterns(make_napari_viewer, qtbot,
                                            cube):
    viewer = make_napari_viewer(show=True)
    lazy = DataCube(da.from_array(cube.data, chunks=(4, 32, -1, -1)),
                    cube.calibration, 'lazy sim')
    widget, view = start(viewer, qtbot, datacube_layers(lazy, 'lazy scan'))
    click(widget.bf_button)
    qtbot.waitUntil(lambda: 'virtual BF' in viewer.layers, timeout=10000)
    settle(widget, qtbot)
    mask = bf_mask(cube.calibration, cube.detector_shape)
    np.testing.assert_allclose(image(viewer, 'BF'), reference(cube, mask),
                               rtol=1e-5)
    assert not viewer.layers['lazy scan'].visible  # lazy: starts hidden
    viewer.reset_view()
    qtbot.wait(50)
    main = viewer.window._qt_viewer.canvas  # tests only
    step = cube.calibration.scan_step
    click_at(main, canvas_point(main, viewer.scene.camera,
                                (3 * step + 0.4, 4 * step - 0.6)))
    qtbot.waitUntil(lambda: 'pattern at (3, 4)' in view.model.layers,
                    timeout=5000)
    np.testing.assert_array_equal(
        view.model.layers['pattern at (3, 4)'].data, cube.data[3, 4])
    np.testing.assert_allclose(viewer.layers[MARKER].data,
                               [[3 * step, 4 * step]])
    assert viewer.layers[-1].name == MARKER and viewer.layers[MARKER].visible
    assert view.position.text() == (
        f'Pattern at scan position (3, 4) = ({3 * step:.2f}, '
        f'{4 * step:.2f}) Å')
    drag(main, canvas_point(main, viewer.scene.camera, (0, 0)),
         canvas_point(main, viewer.scene.camera, (20, 20)), qtbot=qtbot)
    assert 'pattern at (3, 4)' in view.model.layers  # a drag pans, no pick


def test_bad_shapes_and_uncalibrated_cube(make_napari_viewer, qtbot,
                                          small_sim):
    viewer = make_napari_viewer(show=True)
    cube = DataCube(small_sim.datacube.data,  # no probe calibration
                    small_sim.datacube.calibration.copy(), 'sim')
    widget, view = start(viewer, qtbot, datacube_layers(cube, 'scan'))
    canvas = view.qt_viewer.canvas
    click(widget.bf_button)
    assert 'missing probe centre' in widget.status.value
    assert 'probe calibration widget' in widget.status.value
    click(tool(view, 'ellipse'))
    drag(canvas, screen(view, (40, 40)), screen(view, (58, 58)), qtbot=qtbot)
    qtbot.waitUntil(lambda: 'virtual detector 1' in viewer.layers,
                    timeout=10000)
    settle(widget, qtbot)
    cube.calibration.scan_step = None  # an image still comes, and a note
    click(tool(view, 'select/move'))
    drag(canvas, screen(view, (49, 49)), screen(view, (53, 52)), steps=8,
         qtbot=qtbot, pause_ms=40)
    qtbot.waitUntil(lambda: 'Scan step unknown' in widget.status.value,
                    timeout=10000)
    click(tool(view, 'remove'))
    settle(widget, qtbot)
    click(tool(view, 'ellipse'))  # beyond the detector's last pixel
    drag(canvas, screen(view, (-30, -30)), screen(view, (-10, -12)),
         qtbot=qtbot)
    settle(widget, qtbot)
    assert 'outside the detector' in widget.status.value
    assert not [layer for layer in viewer.layers  # removed with its shape
                if layer.name.startswith('virtual')]


def test_the_workflow_dock_opens_from_the_plugins_menu(
        make_napari_viewer, qtbot, cube, add_cube):
    viewer = make_napari_viewer()
    add_cube(viewer, cube)
    _, workflow = viewer.window.add_plugin_dock_widget('napari-phase',
                                                       'napari-phase')
    assert list(workflow.steps) == ['Open 4D-STEM data', 'Calibration',
                                    'Virtual detectors', 'DPC', 'Parallax',
                                    'Tune aberrations', 'Ptychography',
                                    'Compare']
    for title, step in workflow.steps.items():
        if hasattr(step, 'cube_layer'):
            assert step.cube_layer.value is viewer.layers['scan'], title
    settle(workflow.steps['Virtual detectors'], qtbot)
