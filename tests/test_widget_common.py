"""What every widget shares: the runner (progress, Cancel pressed with the
mouse, errors and warnings shown), layer updates in place, and the
diffraction view's own controls (log scale, gamma, visibility boxes,
reset view, shape tools), driven with the mouse."""

import warnings

import numpy as np
import pytest
from gui import click, drag, type_into
from napari.layers import Layer
from napari.utils.notifications import notification_manager
from qtpy.QtCore import QPoint, Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication
from superqt import QDoubleRangeSlider

from napari_phase.io.layers import real_space_layer
from napari_phase.widgets._common import Runner, add_or_update
from napari_phase.widgets.diffraction_view import diffraction_view


def new_messages(before):
    return [(str(n.severity), str(n.message))
            for n in notification_manager.records[before:]]


def test_runner_progress_result_error_and_cancel(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    runner = Runner('Run', 'Test job')
    viewer.window.add_dock_widget(runner)
    got = []

    def job():
        for i in range(5):
            yield i / 5
        yield 'partial'
        return 42

    runner.start(job, got.append, got.append)
    qtbot.waitUntil(lambda: runner.worker is None, timeout=5000)
    assert got == ['partial', 42]
    assert runner.status.value == 'Done.'

    def bad():
        yield 0.1
        raise ValueError('boom')

    runner.start(bad, got.append)
    qtbot.waitUntil(lambda: runner.worker is None, timeout=5000)
    assert runner.status.value == 'Error: boom'

    def endless():
        while True:
            yield 0.5

    runner.start(endless, got.append)
    assert runner.cancel_button.enabled and not runner.run_button.enabled
    click(runner.cancel_button)  # what a press sends
    qtbot.waitUntil(lambda: runner.worker is None, timeout=5000)
    assert runner.status.value == 'Cancelled.'
    assert runner.run_button.enabled and not runner.cancel_button.enabled
    assert got == ['partial', 42]


def test_a_warning_in_a_job_reaches_the_status_line_and_napari(
        make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    runner = Runner('Run', 'Warned job')
    viewer.window.add_dock_widget(runner)
    before = len(notification_manager.records)

    def job():
        for _ in range(3):  # the same warning, said once per run
            warnings.warn('the probe does not fit', RuntimeWarning,
                          stacklevel=1)
            yield 0.5
        return 'result'

    for run in range(2):  # a second run says it again
        runner.start(job, lambda _: None)
        qtbot.waitUntil(lambda: runner.worker is None, timeout=5000)
        assert runner.status.value == 'Done.\nthe probe does not fit'
        assert new_messages(before)[-1] == (
            'warning', 'Warned job: the probe does not fit')
    assert len(new_messages(before)) == 2  # once per run


def test_add_or_update_keeps_the_layer_and_its_display(make_napari_viewer):
    viewer = make_napari_viewer()
    first = real_space_layer(np.zeros((4, 4)), 'phase', 2.0, {'a': 1})
    layer = add_or_update(viewer, first)
    layer.colormap = 'magma'
    second = real_space_layer(np.ones((6, 6)), 'phase', 1.0, {'a': 2})
    assert add_or_update(viewer, second, Layer.create(*second)) is layer
    assert layer.data.shape == (6, 6) and tuple(layer.scale) == (1.0, 1.0)
    assert layer.metadata['napari_phase']['parameters'] == {'a': 2}
    assert layer.colormap.name == 'magma'
    vectors = real_space_layer(np.zeros((3, 2, 2)), 'phase', 1.0, {},
                               layer_type='vectors')
    assert add_or_update(viewer, vectors) is not layer  # another kind


def test_an_updated_layer_follows_its_data_until_the_user_sets_contrast(
        make_napari_viewer):
    viewer = make_napari_viewer()
    ramp = np.linspace(0, 1, 16).reshape(4, 4)
    layer = add_or_update(viewer, real_space_layer(ramp, 'phase', 1.0, {}))
    add_or_update(viewer, real_space_layer(3 * ramp, 'phase', 1.0, {}))
    assert np.allclose(layer.contrast_limits, (0, 3))  # live phase grows
    layer.contrast_limits = (0.5, 1.0)  # the user's choice
    add_or_update(viewer, real_space_layer(5 * ramp, 'phase', 1.0, {}))
    assert np.allclose(layer.contrast_limits, (0.5, 1.0))


def test_diffraction_view_controls_with_the_mouse(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    view = diffraction_view(viewer)
    assert diffraction_view(viewer) is view
    counts = np.random.default_rng(0).poisson(5.0, (32, 32)).astype(float)
    counts[16, 16] = 1e4
    layer = view.show_pattern('mean pattern', counts, (0.5, 0.5))
    probe = view.show_pattern('vacuum probe', counts, (0.5, 0.5),
                              visible=False)
    phase = view.show_pattern('probe phase', np.zeros((32, 32)), (0.5, 0.5),
                              kind='phase', visible=False)
    click(view.log_scale)
    assert view.log_scale.isChecked()
    np.testing.assert_allclose(layer.data, np.log1p(counts))
    np.testing.assert_allclose(phase.data, 0)  # a phase is not counts
    type_into(view.gamma, '0.5')
    assert layer.gamma == pytest.approx(0.5)
    assert probe.gamma == pytest.approx(0.5)
    click(view.log_scale)
    np.testing.assert_allclose(layer.data, counts)

    # the view's own layer list: boxes, top first
    names = [view.layer_list.item(i).text()
             for i in range(view.layer_list.count())]
    assert names == ['probe phase', 'vacuum probe', 'mean pattern']
    item = view.layer_list.item(1)
    assert item.checkState() == Qt.CheckState.Unchecked
    row = view.layer_list.visualItemRect(item)
    QTest.mouseClick(view.layer_list.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier,  # on the box
                     QPoint(row.left() + 10, row.center().y()))
    assert probe.visible

    # pan the view with the mouse, then Reset view fits it again
    view.model.reset_view()
    fitted = tuple(view.model.scene.camera.center)
    canvas = view.qt_viewer.canvas.native
    drag(canvas, (100, 100), (160, 130), qtbot=qtbot)
    assert tuple(view.model.scene.camera.center) != fitted
    click(view.reset_button)
    np.testing.assert_allclose(view.model.scene.camera.center, fitted)
    # no shapes layer handed over yet: the shape tools wait for one
    assert not any(button.isEnabled() for button in view.tools.buttons())


def test_contrast_dragged_with_the_mouse_survives_an_update(
        make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    ramp = np.linspace(0, 1, 16).reshape(4, 4)
    layer = add_or_update(viewer, real_space_layer(ramp, 'phase', 1.0, {}))
    slider, = (w for w in QApplication.allWidgets()
               if isinstance(w, QDoubleRangeSlider) and w.isVisible())
    y = slider.height() / 2  # the upper handle, from the end to 60 %
    drag(slider, (slider.width() - 5, y), (0.6 * slider.width(), y),
         qtbot=qtbot)
    dragged = tuple(layer.contrast_limits)
    assert dragged[0] == 0 and 0.3 < dragged[1] < 0.9
    add_or_update(viewer, real_space_layer(3 * ramp, 'phase', 1.0, {}))
    assert tuple(layer.contrast_limits) == dragged
