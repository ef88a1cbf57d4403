"""Probe calibration widget in a real viewer: Fit draws the disk and
reports it, Apply writes THE cube's calibration; bad input is a message."""

import numpy as np
import pytest
from gui import choose, click, type_into
from napari.layers import Layer

from napari_phase import Calibration, DataCube, simulate
from napari_phase.compute.probe import fit_probe
from napari_phase.io.layers import datacube_layers, probe_layers
from napari_phase.widgets.calibration_widget import (
    PROBE_FIT,
    CalibrationWidget,
)
from napari_phase.widgets.diffraction_view import diffraction_view


@pytest.fixture(scope='module')
def sim():
    return simulate(scan_shape=(8, 8), detector_shape=(192, 192), seed=1)


def fit_and_wait(widget, qtbot):
    click(widget.runner.run_button)  # what a press emits
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=10000)


def add(viewer, layer_tuples):
    (layer,) = [viewer.add_layer(Layer.create(*t)) for t in layer_tuples]
    return layer


def test_fit_and_apply(make_napari_viewer, qtbot, sim):
    """With the layers the file reader makes (probe kept in metadata)."""
    viewer = make_napari_viewer(show=True)
    cube = DataCube(sim.datacube.data, Calibration(), 'sim')
    layer = add(viewer, datacube_layers(cube, 'scan'))
    add(viewer, probe_layers(sim.vacuum_probe, cube.calibration, 'probe'))
    widget = CalibrationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert 'scan step' in widget.status.value  # uncalibrated: says what
    type_into(widget.scan_step, '2.39')
    type_into(widget.semiangle, '22.6')
    type_into(widget.energy_kv, '300')
    type_into(widget.thresh_upper, '0.7')
    choose(widget.probe_layer, 'probe')
    fit_and_wait(widget, qtbot)
    expected = fit_probe(sim.vacuum_probe, 0.01, 0.7)
    assert widget.fit_result[1] == expected
    assert f'{expected.radius:.2f} px' in widget.result.value
    view = diffraction_view(viewer)
    disk = view.model.layers[PROBE_FIT]
    assert not view.model.layers['vacuum probe'].visible  # auxiliary
    assert disk.shape_type == ['ellipse']
    np.testing.assert_allclose(disk.data[0].mean(axis=0), expected.center,
                               atol=1e-4)
    np.testing.assert_allclose(np.ptp(disk.data[0], axis=0),
                               2 * expected.radius, atol=1e-4)
    q = 22.6 / expected.radius
    assert disk.scale[0] == pytest.approx(q)

    click(widget.apply_button)
    cal = cube.calibration  # THE object, not a copy
    assert cal.probe_radius == pytest.approx(sim.truth['probe_radius'],
                                             abs=0.5)
    np.testing.assert_allclose(cal.probe_center, sim.truth['probe_center'],
                               atol=0.5)
    assert cal.q_pixel_mrad == pytest.approx(sim.truth['q_pixel_mrad'],
                                             rel=0.01)
    assert (cal.scan_step, cal.semiangle, cal.energy) == (2.39, 22.6, 3e5)
    np.testing.assert_allclose(layer.scale, (q, q, 2.39, 2.39))


def test_fit_on_mean_pattern(make_napari_viewer, qtbot, sim, add_cube):
    viewer = make_napari_viewer(show=True)
    add_cube(viewer, sim.datacube)
    widget = CalibrationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.status.value == ''  # calibrated: nothing missing
    assert widget.scan_step.value == pytest.approx(2.39)
    type_into(widget.thresh_upper, '0.7')
    fit_and_wait(widget, qtbot)
    fit = widget.fit_result[1]
    assert abs(fit.radius - sim.truth['probe_radius']) < 0.5
    assert 'mean pattern' in diffraction_view(viewer).model.layers


def test_bad_input_is_a_message(make_napari_viewer, qtbot, sim, add_cube):
    viewer = make_napari_viewer(show=True)
    widget = CalibrationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert 'Open a 4D-STEM datacube' in widget.status.value
    click(widget.apply_button)  # no cube: message, no exception
    assert 'No datacube layer' in widget.status.value
    add_cube(viewer, sim.datacube)
    viewer.add_image(np.ones((10, 10)), name='p')
    choose(widget.probe_layer, 'p')
    fit_and_wait(widget, qtbot)
    assert "'p' has shape (10, 10)" in widget.runner.status.value
    viewer.add_image(np.zeros((192, 192)), name='dark')
    choose(widget.probe_layer, 'dark')
    fit_and_wait(widget, qtbot)
    assert 'no positive intensity' in widget.runner.status.value


def test_the_user_takes_the_other_half_turn(make_napari_viewer, sim):
    """The pair is turned over in THE cube's calibration, the decision is
    the user's, and the methods' phase layers follow (negated)."""
    viewer = make_napari_viewer(show=True)
    cal = Calibration(rotation_deg=20.0, C1=300.0, half_turn='DPC: unsure',
                      half_turn_source='DPC', half_turn_confidence=1.2)
    add(viewer, datacube_layers(DataCube(sim.datacube.data, cal, 'sim'),
                                'scan'))
    phase = viewer.add_image(np.arange(16.0).reshape(4, 4),
                             name='DPC phase')
    widget = CalibrationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert 'rotation 20.0°, C1 300 Å; DPC: unsure' in widget.half_turn.value
    click(widget.flip_button)
    assert (cal.rotation_deg, cal.C1) == (-160.0, -300.0)
    assert (cal.half_turn_source, cal.half_turn_confidence) == ('user', None)
    np.testing.assert_array_equal(phase.data,
                                  -np.arange(16.0).reshape(4, 4))
    assert 'rotation -160.0°, C1 -300 Å; user' in widget.half_turn.value
    click(widget.keep_button)
    assert (cal.rotation_deg, cal.C1) == (-160.0, -300.0)
