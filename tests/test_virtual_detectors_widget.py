"""Virtual detector tool in a real viewer: presets and drawn shapes give
images equal to a numpy reference, moving a shape updates its image,
navigation shows the clicked pattern; bad shapes give messages."""

import dask.array as da
import numpy as np
import pytest
from napari.layers.shapes._shapes_mouse_bindings import select

from napari_phase import DataCube
from napari_phase.compute.detectors import (
    adf_mask,
    bf_mask,
    circle_mask,
    polygon_mask,
)
from napari_phase.io.layers import datacube_layers
from napari_phase.widgets.diffraction_view import diffraction_view
from napari_phase.widgets.virtual_detectors import (
    DETECTORS,
    VirtualDetectors,
    circle_box,
    detector_masks,
    tint_color,
)
from gui import click


@pytest.fixture
def cube(small_sim):
    """The small simulated scan with a fitted-looking probe calibration."""
    cal = small_sim.datacube.calibration.copy()
    cal.update(probe_center=(48.37, 47.71), probe_radius=21.13)
    return DataCube(small_sim.datacube.data, cal, 'sim')


def reference(cube, mask):
    data = np.asarray(cube.data, dtype=np.float64)
    return np.einsum('ijkl,kl->ij', data, mask.astype(np.float64))


class MouseEvent:
    """What napari's mouse bindings read from an event."""

    def __init__(self, kind, position, modifiers=()):
        self.type, self.position, self.modifiers = kind, position, modifiers


def settle(widget, qtbot):
    """Wait until no update is scheduled or running."""
    qtbot.waitUntil(
        lambda: widget.worker is None and not widget._timer.isActive(),
        timeout=10000)


def image(viewer, name):
    return np.asarray(viewer.layers[f'virtual {name}'].data)


@pytest.fixture
def tool(make_napari_viewer, qtbot, cube, add_cube):
    viewer = make_napari_viewer()
    add_cube(viewer, cube)
    widget = VirtualDetectors(viewer)
    viewer.window.add_dock_widget(widget)
    settle(widget, qtbot)
    return viewer, widget


def test_presets_equal_numpy(tool, qtbot, cube):
    viewer, widget = tool
    model = diffraction_view(viewer).model
    np.testing.assert_allclose(model.layers['mean pattern'].data,
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
    shapes = model.layers[DETECTORS]
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


def test_moving_a_shape_updates_its_image(tool, qtbot, cube):
    viewer, widget = tool
    click(widget.bf_button)
    qtbot.waitUntil(lambda: 'virtual BF' in viewer.layers, timeout=10000)
    settle(widget, qtbot)
    shapes = widget.shapes
    shapes.mode = 'select'
    start = np.asarray(cube.calibration.probe_center) * shapes.scale
    drag = select(shapes, event := MouseEvent('mouse_press', start))
    next(drag)  # press on the BF disk (world coordinates, mrad)

    def expected_after(shift_px):
        center = np.add(cube.calibration.probe_center, shift_px)
        radius = cube.calibration.probe_radius + 2
        mask = circle_mask(cube.detector_shape, center, radius)
        return reference(cube, mask)

    for shift_px in ([3.0, -2.0], [6.0, -4.0]):  # still dragging: live
        event.type, event.position = 'mouse_move', start + np.multiply(
            shift_px, shapes.scale)
        next(drag)
        expected = expected_after(shift_px)
        qtbot.waitUntil(
            lambda: np.allclose(image(viewer, 'BF'), expected, rtol=1e-5),
            timeout=10000)
    event.type = 'mouse_release'
    with pytest.raises(StopIteration):
        next(drag)
    shapes.data = [shapes.data[0] + np.array([-9.0, 1.0])]  # programmatic
    expected = expected_after([-3.0, -3.0])
    qtbot.waitUntil(
        lambda: np.allclose(image(viewer, 'BF'), expected, rtol=1e-5),
        timeout=10000)


def test_drawn_polygon_and_removal(tool, qtbot, cube):
    viewer, widget = tool
    vertices = np.array([[20.5, 30.2], [70.1, 35.7], [50.3, 80.9]])
    widget.shapes.add([vertices], shape_type='polygon')
    qtbot.waitUntil(lambda: 'virtual detector 1' in viewer.layers,
                    timeout=10000)
    settle(widget, qtbot)
    np.testing.assert_allclose(
        image(viewer, 'detector 1'),
        reference(cube, polygon_mask(cube.detector_shape, vertices)),
        rtol=1e-5)
    assert viewer.layers['virtual detector 1'].colormap.name == 'cyan'
    widget.shapes.data = []
    qtbot.waitUntil(lambda: 'virtual detector 1' not in viewer.layers,
                    timeout=10000)


def test_lazy_cube(make_napari_viewer, qtbot, cube):
    viewer = make_napari_viewer()
    lazy = DataCube(da.from_array(cube.data, chunks=(4, 32, -1, -1)),
                    cube.calibration, 'lazy sim')
    for layer_tuple in datacube_layers(lazy, 'lazy scan'):  # as read
        viewer._add_layer_from_data(*layer_tuple)
    widget = VirtualDetectors(viewer)
    click(widget.bf_button)
    qtbot.waitUntil(lambda: 'virtual BF' in viewer.layers, timeout=10000)
    settle(widget, qtbot)
    mask = bf_mask(cube.calibration, cube.detector_shape)
    np.testing.assert_allclose(image(viewer, 'BF'), reference(cube, mask),
                               rtol=1e-5)
    view = diffraction_view(viewer)  # the lazy cube's layer is hidden
    assert not viewer.layers['lazy scan'].visible
    view.show_pattern_at((0, 0, 3 * 2.39, 4 * 2.39))
    np.testing.assert_array_equal(
        view.model.layers['pattern at (3, 4)'].data, cube.data[3, 4])


def test_bad_shapes_and_uncalibrated_cube(make_napari_viewer, qtbot,
                                          small_sim, add_cube):
    viewer = make_napari_viewer()
    cube = DataCube(small_sim.datacube.data,  # no probe calibration
                    small_sim.datacube.calibration.copy(), 'sim')
    add_cube(viewer, cube)
    widget = VirtualDetectors(viewer)
    settle(widget, qtbot)
    click(widget.bf_button)
    assert 'missing probe centre' in widget.status.value
    assert 'probe calibration widget' in widget.status.value
    widget.shapes.add([circle_box((50, 50), 9)], shape_type='ellipse')
    qtbot.waitUntil(lambda: 'virtual detector 1' in viewer.layers,
                    timeout=10000)
    settle(widget, qtbot)
    cube.calibration.scan_step = None  # an image still comes, and a note
    widget.shapes.data = [widget.shapes.data[0] + 1]
    qtbot.waitUntil(lambda: 'Scan step unknown' in widget.status.value,
                    timeout=10000)
    widget.shapes.data = []
    settle(widget, qtbot)
    widget.shapes.add([circle_box((500, 500), 5)], shape_type='ellipse')
    settle(widget, qtbot)
    assert 'outside the detector' in widget.status.value
    widget.shapes.add([[[10, 10], [20, 20], [30, 30]]],
                      shape_type='polygon')
    settle(widget, qtbot)
    assert 'zero area' in widget.status.value
    assert not [layer for layer in viewer.layers  # removed with its shape
                if layer.name.startswith('virtual')]


def test_navigation_click_shows_that_pattern(tool, cube):
    viewer, _ = tool
    view = diffraction_view(viewer)

    at = (0, 0, 5 * 2.39 + 0.4, 17 * 2.39 - 0.6)  # world (Å)
    click = MouseEvent('mouse_press', at)
    callback = view._navigate(viewer, click)
    assert view._navigate in viewer.mouse_drag_callbacks
    next(callback)
    click.type = 'mouse_release'
    with pytest.raises(StopIteration):
        next(callback)
    layer = view.model.layers['pattern at (5, 17)']
    np.testing.assert_array_equal(layer.data, cube.data[5, 17])
    assert layer.scale[0] == pytest.approx(cube.calibration.q_pixel_mrad)


def test_plugin_menu_opens_both_widgets(make_napari_viewer, qtbot, cube, add_cube):
    viewer = make_napari_viewer()
    add_cube(viewer, cube)
    for name in ('Probe calibration', 'Virtual detectors'):
        _, widget = viewer.window.add_plugin_dock_widget('napari-phase', name)
        assert widget.cube_layer.value is viewer.layers['scan']
    settle(widget, qtbot)
