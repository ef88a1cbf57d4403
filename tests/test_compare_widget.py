"""The compare widget in a real viewer: profile data, contrast, numbers."""

import numpy as np
import pytest

from napari_phase.widgets._common import real_space_layer
from napari_phase.widgets.compare_widget import PROFILE_LAYER, CompareWidget
from gui import click


def result_tuple(image, name, pixel, origin, source='scan.h5'):
    return real_space_layer(image, name, pixel, {'source': source},
                            origin=origin)


@pytest.fixture
def viewer_and_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    i, j = np.indices((12, 12))
    coarse = (10.0 * i + j).astype(np.float32)  # linear: exact interpolation
    fine = rng.standard_normal((30, 30))
    for data, name, pixel, origin in ((coarse, 'coarse', 2.0, (4.0, -6.0)),
                                      (fine, 'fine', 1.0, (0.0, 0.0))):
        viewer._add_layer_from_data(*result_tuple(data, name, pixel, origin))
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget, coarse, fine


def test_profile_equals_hand_sampling(viewer_and_widget):
    viewer, widget, coarse, fine = viewer_and_widget
    widget.layers.value = ['coarse', 'fine']
    line = widget.draw_line()
    assert viewer.layers[PROFILE_LAYER] is line
    assert widget.mode.value == 'overlay' and not viewer.canvas.grid.enabled
    line.data = [np.array([[6.0, -4.0], [6.0, 16.0]])]  # Å, scan frame
    profile = widget.profile
    distance = np.arange(21.0)  # every 1 Å, the finest pixel
    np.testing.assert_allclose(profile.distance, distance)
    # coarse: pixel (i, j) at (4 + 2i, -6 + 2j) Å  ->  i = 1, j = 1 + d/2
    np.testing.assert_allclose(profile.values[0], 10 * 1 + 1 + distance / 2)
    # fine: pixel (i, j) at (i, j) Å  ->  i = 6, j = d - 4 (outside: NaN)
    assert np.all(np.isnan(profile.values[1][:4]))
    np.testing.assert_allclose(profile.values[1][4:], fine[6, 0:17])
    plotted = [artist.get_ydata() for artist in widget.axes.lines]
    np.testing.assert_allclose(plotted[0], profile.values[0])
    assert len(plotted) == 2


def test_matched_contrast_and_grid(viewer_and_widget):
    viewer, widget, coarse, fine = viewer_and_widget
    viewer.add_image(np.zeros((5, 5)), name='other')
    widget.layers.value = ['coarse', 'fine']
    widget.low.value, widget.high.value = 0.0, 100.0
    widget.show()
    assert viewer.canvas.grid.enabled
    assert not viewer.layers['other'].visible
    # shared field of view: x 4..26 Å, y 0..16 Å (pixels of 2 Å)
    shared = coarse[:, 3:12]
    assert viewer.layers['coarse'].contrast_limits == pytest.approx(
        [shared.min(), shared.max()])
    widget.mode.value = 'overlay'
    widget.show()
    assert not viewer.canvas.grid.enabled


def test_numbers_and_different_datasets(viewer_and_widget):
    viewer, widget, coarse, _ = viewer_and_widget
    viewer._add_layer_from_data(*result_tuple(
        -coarse, 'inverted', 2.0, (4.0, -6.0)))
    widget.layers.value = ['coarse', 'inverted']
    widget.independent.value = True
    lines = widget.compute_numbers()
    assert lines[0] == 'coarse vs inverted: r = -1.000'
    assert lines[1].startswith('FRC resolution')
    viewer._add_layer_from_data(*result_tuple(
        coarse, 'other scan', 2.0, (4.0, -6.0), source='other.h5'))
    widget.layers.value = ['coarse', 'other scan']
    click(widget.numbers_button)
    assert 'different datasets' in widget.status.value
    assert "'other scan' from 'other.h5'" in widget.status.value


def test_a_source_given_as_the_datacube_layer_name_is_its_dataset(
    viewer_and_widget,
):
    from napari_phase import DataCube

    viewer, widget, coarse, _ = viewer_and_widget
    cube = DataCube(np.zeros((2, 2, 3, 3), np.float32), source='scan.h5')
    viewer.add_image(np.zeros((3, 3, 2, 2)), name='my scan',
                     metadata={'napari_phase': {'datacube': cube}})
    viewer._add_layer_from_data(*result_tuple(
        coarse, 'by layer name', 2.0, (4.0, -6.0), source='my scan'))
    widget.layers.value = ['coarse', 'by layer name']
    assert widget.compute_numbers()[0].endswith('r = 1.000')
