"""The compare widget in a real viewer: profile data, contrast, numbers."""

import numpy as np
import pytest
from gui import choose, click, select_items, type_into
from napari.layers import Layer

from napari_phase.widgets._common import real_space_layer
from napari_phase.widgets.compare_widget import PROFILE_LAYER, CompareWidget


def result_tuple(image, name, pixel, origin, source='scan.h5'):
    return real_space_layer(image, name, pixel, {'source': source},
                            origin=origin)


def add(viewer, layer_tuple):
    return viewer.add_layer(Layer.create(*layer_tuple))


@pytest.fixture
def viewer_and_widget(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    rng = np.random.default_rng(0)
    i, j = np.indices((12, 12))
    coarse = (10.0 * i + j).astype(np.float32)  # linear: exact interpolation
    fine = rng.standard_normal((30, 30))
    for data, name, pixel, origin in ((coarse, 'coarse', 2.0, (4.0, -6.0)),
                                      (fine, 'fine', 1.0, (0.0, 0.0))):
        add(viewer, result_tuple(data, name, pixel, origin))
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget, coarse, fine


def test_profile_equals_hand_sampling(viewer_and_widget):
    viewer, widget, _coarse, fine = viewer_and_widget
    select_items(widget.layers, ['coarse', 'fine'])
    click(widget.line_button)
    line = viewer.layers[PROFILE_LAYER]
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
    viewer, widget, coarse, _fine = viewer_and_widget
    viewer.add_image(np.zeros((5, 5)), name='other')
    viewer.add_vectors(np.zeros((2, 2, 2)), name='arrows')
    select_items(widget.layers, ['coarse', 'fine'])
    type_into(widget.low, '0')
    type_into(widget.high, '100')
    click(widget.show_button)
    assert viewer.canvas.grid.enabled
    assert [layer.name for layer in viewer.layers if layer.visible] == [
        'coarse', 'fine']  # the grid shows only the chosen images
    # shared field of view: x 4..26 Å, y 0..16 Å (pixels of 2 Å)
    shared = coarse[:, 3:12]
    assert viewer.layers['coarse'].contrast_limits == pytest.approx(
        [shared.min(), shared.max()])
    choose(widget.mode, 'overlay')
    click(widget.show_button)
    assert not viewer.canvas.grid.enabled


def test_numbers_and_different_datasets(viewer_and_widget):
    viewer, widget, coarse, _ = viewer_and_widget
    add(viewer, result_tuple(-coarse, 'inverted', 2.0, (4.0, -6.0)))
    select_items(widget.layers, ['coarse', 'inverted'])
    click(widget.independent)
    assert widget.independent.value
    click(widget.numbers_button)
    lines = widget.numbers.value.splitlines()
    assert lines[0] == 'coarse vs inverted: r = -1.000'
    assert lines[1].startswith('FRC resolution')
    add(viewer, result_tuple(coarse, 'other scan', 2.0, (4.0, -6.0),
                             source='other.h5'))
    select_items(widget.layers, ['coarse', 'other scan'])
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
    add(viewer, result_tuple(coarse, 'by layer name', 2.0, (4.0, -6.0),
                             source='my scan'))
    select_items(widget.layers, ['coarse', 'by layer name'])
    click(widget.numbers_button)
    assert widget.numbers.value.endswith('r = 1.000')


def test_export_recipe_names_the_box_to_tick(viewer_and_widget, tmp_path):
    """The default path is absolute; an existing file is kept until the
    overwrite box is ticked."""
    from napari_phase.widgets.compare_widget import DEFAULT_RECIPE

    viewer, widget, coarse, _ = viewer_and_widget
    assert DEFAULT_RECIPE.is_absolute()
    assert widget.recipe_path.value == DEFAULT_RECIPE
    params = {'method': 'dpc', 'descan': 'plane', 'mask': 'none',
              'source': 'scan.h5', 'calibration': {'scan_step': 2.0}}
    add(viewer, real_space_layer(coarse, 'DPC phase', 2.0, params))
    path = tmp_path / 'recipe.yaml'
    path.write_text('keep me')
    type_into(widget.recipe_path, str(path))
    click(widget.export_button)
    assert path.read_text() == 'keep me'
    assert 'tick "overwrite"' in widget.status.value
    assert '--force' not in widget.status.value
    click(widget.overwrite)
    click(widget.export_button)
    assert widget.status.value == f'Recipe written to {path}'
    assert 'dpc:' in path.read_text()
