"""The "Open 4D-STEM data" widget in a real window: the path typed, the
dataset picked with the keyboard, the scan shape and calibration typed,
Open pressed with the mouse."""

import h5py
import numpy as np
import pytest
from gui import click
from qtpy.QtCore import Qt

from napari_phase.io.layers import META
from napari_phase.widgets.open_datacube import AUTOMATIC, OpenDatacube


def type_into(qtbot, widget, text):
    """Select what a field holds and type ``text`` over it, as a user."""
    native = getattr(widget, 'line_edit', widget).native
    native.setFocus()
    qtbot.keyClick(native, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(native, text)
    qtbot.keyClick(native, Qt.Key.Key_Tab)


def open_and_wait(qtbot, widget, viewer, name):
    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=20_000)
    assert name in viewer.layers, widget.runner.status.value
    return viewer.layers[name].metadata[META]['datacube']


@pytest.fixture
def frames_file(tmp_path):
    """Frames stored as a flat list (N, Qx, Qy), no scan shape, no
    calibration, next to a small parameter table."""
    rng = np.random.default_rng(8)
    frames = rng.random((12, 20, 24), dtype=np.float32)
    path = tmp_path / 'frames.h5'
    with h5py.File(path, 'w') as h5:
        h5['entry/frames'] = frames
        h5['entry/threshold'] = np.ones((12, 8))
    return path, frames


def test_scan_shape_and_calibration_typed_in_napari(
        make_napari_viewer, qtbot, frames_file):
    path, frames = frames_file
    viewer = make_napari_viewer(show=True)
    widget = OpenDatacube(viewer)
    viewer.window.add_dock_widget(widget)
    type_into(qtbot, widget.file, str(path))
    assert [c for c in widget.dataset.choices] == [None, '/entry/frames']

    click(widget.runner.run_button)  # no scan shape yet: a clear error
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=20_000)
    status = widget.runner.status.value
    assert 'dataset /entry/frames: 12 frames of (20, 24) pixels' in status
    assert 'frames' not in viewer.layers

    type_into(qtbot, widget.scan_rx, '3')
    type_into(qtbot, widget.scan_ry, '4')
    type_into(qtbot, widget.fields['scan_step'], '1.39')
    type_into(qtbot, widget.fields['q_pixel_mrad'], '0.45')
    type_into(qtbot, widget.fields['energy'], '300')
    cube = open_and_wait(qtbot, widget, viewer, 'frames')
    np.testing.assert_array_equal(cube.data, frames.reshape(3, 4, 20, 24))
    cal = cube.calibration
    assert (cal.scan_step, cal.q_pixel_mrad, cal.energy) == (
        1.39, 0.45, 300e3)
    layer = viewer.layers['frames']
    np.testing.assert_allclose(layer.scale, (0.45, 0.45, 1.39, 1.39))
    assert 'unknown: probe convergence semiangle (mrad)' in (
        widget.report.value)


def test_pick_another_dataset(make_napari_viewer, qtbot, tmp_path):
    rng = np.random.default_rng(9)
    big = rng.random((4, 5, 32, 32), dtype=np.float32)
    small = rng.random((2, 3, 32, 32), dtype=np.float32)
    path = tmp_path / 'two.h5'
    with h5py.File(path, 'w') as h5:
        h5['big'], h5['small'] = big, small
    viewer = make_napari_viewer(show=True)
    widget = OpenDatacube(viewer)
    viewer.window.add_dock_widget(widget)
    type_into(qtbot, widget.file, str(path))
    assert widget.dataset.value is None
    assert widget.dataset.native.currentText() == AUTOMATIC
    cube = open_and_wait(qtbot, widget, viewer, 'two')
    np.testing.assert_array_equal(cube.data, big)
    assert 'other candidates: /small' in widget.report.value

    combo = widget.dataset.native
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Down)  # automatic -> /big
    qtbot.keyClick(combo, Qt.Key.Key_Down)  # -> /small
    assert widget.dataset.value == '/small'
    cube = open_and_wait(qtbot, widget, viewer, 'two')
    np.testing.assert_array_equal(cube.data, small)
    assert cube.source == f'{path}::/small'
    assert len(viewer.layers) == 1  # the layer was updated in place
