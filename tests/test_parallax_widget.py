"""Parallax widget in a real viewer: layers out and the shared calibration."""

import numpy as np
import pytest
from gui import click, type_into
from napari.layers import Image, Vectors

from benchmarks import independent
from napari_phase import run_pipeline
from napari_phase.compute.geometry import wrap_degrees
from napari_phase.recipe import new_recipe
from napari_phase.widgets._common import META
from napari_phase.widgets.diffraction_view import diffraction_view
from napari_phase.widgets.parallax_widget import (
    ALIGNED,
    PHASE,
    SHIFTS,
    UPSAMPLED,
    ParallaxWidget,
)


def test_parallax_widget_layers_and_calibration(
    make_napari_viewer, qtbot, small_sim, cube, add_cube
):
    viewer = make_napari_viewer(show=True)
    step, dq = cube.calibration.scan_step, cube.calibration.q_pixel_mrad
    add_cube(viewer, cube, 'cube')
    widget = ParallaxWidget(viewer)
    viewer.window.add_dock_widget(widget)
    type_into(widget.upsample, '2')
    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=60000)
    assert widget.result is not None, widget.runner.status.value
    qtbot.waitUntil(lambda: viewer.layers[-1].name == PHASE, timeout=5000)
    assert viewer.layers.selection.active is viewer.layers[PHASE]
    assert not viewer.layers[ALIGNED].visible
    assert not viewer.layers[UPSAMPLED].visible

    for name, pixel in (
        (ALIGNED, step),
        (UPSAMPLED, step / 2),
        (PHASE, step / 2),
    ):
        layer = viewer.layers[name]
        assert isinstance(layer, Image)
        assert tuple(layer.scale) == pytest.approx((pixel, pixel))
        assert tuple(layer.translate) == (0.0, 0.0)
        params = layer.metadata[META]['parameters']
        assert params['threshold_intensity'] == 0.6
        assert ('lower bound' in params.get('phase_scale', '')) == (
            name == PHASE)
    arrows = diffraction_view(viewer).model.layers[SHIFTS]
    assert isinstance(arrows, Vectors)
    assert arrows.data.shape[1:] == (2, 2)
    centre = (
        np.array(cube.detector_shape) / 2 * dq
    )  # beam near the detector centre
    assert np.abs(arrows.data[:, 0].mean(axis=0) - centre).max() < 2 * dq

    cal = cube.calibration  # THE calibration object, updated in place
    assert (
        abs(wrap_degrees(cal.rotation_deg - small_sim.truth['rotation_deg']))
        < 1.0
    )
    assert cal.transpose is False
    assert cal.C1 == pytest.approx(400, rel=0.05)
    assert 'parallax' in cal.half_turn
    assert widget.table.shape[0] == len(widget.result.aberrations)
    assert 'rotation' in widget.summary.value


def test_parallax_widget_tells_the_transpose_under_astigmatism(
    make_napari_viewer, qtbot, add_cube
):
    """An abTEM scan whose astigmatism is twice the defocus
    (benchmarks/independent.py): Run finds the true transpose, writes it
    into the calibration and its summary says how it was decided."""
    loaded = independent.load('gold_carbon_astig_T')
    cube = loaded.cube
    run_pipeline(cube, new_recipe({'calibrate': {'thresh_upper': 0.7}}),
                 loaded.probe)
    viewer = make_napari_viewer(show=True)
    add_cube(viewer, cube, 'cube')
    widget = ParallaxWidget(viewer)
    viewer.window.add_dock_widget(widget)
    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=60000)
    assert widget.result is not None, widget.runner.status.value
    assert cube.calibration.transpose is loaded.truth.transpose is True
    assert 'Transpose True: direct ptychography scores' in (
        widget.summary.value)


def test_parallax_widget_shows_bad_input(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    widget = ParallaxWidget(viewer)
    viewer.window.add_dock_widget(widget)
    click(widget.runner.run_button)  # no datacube layer: a message
    assert 'datacube' in widget.runner.status.value


def test_parallax_widget_cancel(make_napari_viewer, qtbot, cube, add_cube):
    viewer = make_napari_viewer(show=True)
    add_cube(viewer, cube, 'cube')
    widget = ParallaxWidget(viewer)
    viewer.window.add_dock_widget(widget)
    click(widget.runner.run_button)
    click(widget.runner.cancel_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=60000)
    assert widget.result is None
    assert widget.runner.status.value == 'Cancelled.'
    assert UPSAMPLED not in viewer.layers
