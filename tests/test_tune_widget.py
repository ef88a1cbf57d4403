"""Tune aberrations in a real window (Xvfb), driven with the mouse and the
keyboard, against the simulator's truth: the dragged C1 slider redraws
the phase (the prepared phase's own, for the values recorded), updates
are coalesced, a wrong C1 lowers the correlation with the true phase and
Refine finds C1 again (Cancel: the best so far), Apply writes the shared
calibration and the fields follow it, and the half-turn negates the phase
(docs/conventions.md)."""

import time

import numpy as np
import pytest
from gui import choose, click, drag_slider, native, type_into
from qtpy.QtWidgets import QSlider

from napari_phase import DataCube, prepare_direct, simulate
from napari_phase.compute.direct import DirectPhase
from napari_phase.widgets._common import META
from napari_phase.widgets.tune_widget import TUNED, TuneWidget

C1 = 150.0  # Å: the probe fits the simulator's window (as in test_direct)
#: Scan px left out at each border (the scan's edges reach into the phase).
MARGIN = 4


@pytest.fixture(scope='module')
def sim():
    """24×24 scan, 64² detector, C1 = 150 Å, θ = −15°, noisy (seeded)."""
    return simulate(scan_shape=(24, 24), detector_shape=(64, 64), C1=C1,
                    seed=1)


@pytest.fixture
def tune(make_napari_viewer, sim, add_cube):
    """A shown viewer with the scan, its calibration holding the true
    geometry (as parallax would hand it on), and the step docked."""
    viewer = make_napari_viewer(show=True)
    cal = sim.datacube.calibration.copy()
    truth = sim.truth
    cal.update(rotation_deg=truth['rotation_deg'],
               transpose=truth['transpose'], C1=truth['C1'],
               probe_center=truth['probe_center'],
               probe_radius=truth['probe_radius'])
    cube = DataCube(sim.datacube.data, cal, 'simulated')
    add_cube(viewer, cube, 'scan')
    widget = TuneWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget, cube


def recorded(viewer) -> dict:
    return viewer.layers[TUNED].metadata[META]['parameters']


def prepare(qtbot, viewer, widget):
    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=60_000)
    qtbot.waitUntil(lambda: TUNED in viewer.layers, timeout=10_000)
    assert 'Error' not in widget.status.value, widget.status.value


def shown(qtbot, viewer, key, value):
    """Wait until the layer shows the phase made with ``key`` (an
    aberration, or a recorded parameter such as 'rotation_deg') =
    ``value``."""
    def made() -> bool:
        parameters = recorded(viewer)
        return parameters['aberrations'].get(key, parameters.get(key)) \
            == value

    qtbot.waitUntil(made, timeout=10_000)


def correlation(image, truth):
    inner = (slice(MARGIN, -MARGIN),) * 2
    return float(np.corrcoef(np.asarray(image)[inner].ravel(),
                             truth[inner].ravel())[0, 1])


def test_dragging_the_c1_slider_redraws_the_phase(tune, qtbot):
    viewer, widget, cube = tune
    c1 = widget.sliders['C10']
    assert c1.value == C1  # from the calibration
    prepare(qtbot, viewer, widget)
    layer = viewer.layers[TUNED]
    assert viewer.layers.selection.active is layer
    before = np.array(layer.data)
    step = cube.calibration.scan_step
    assert tuple(layer.scale) == (step, step)
    assert tuple(layer.translate) == (0.0, 0.0)

    drag_slider(native(c1.slider).findChild(QSlider), 0.9)
    assert c1.value > C1 + 100  # the window is C1 ± 200 Å
    shown(qtbot, viewer, 'C10', c1.value)
    assert not np.allclose(layer.data, before)
    params = recorded(viewer)
    assert params['C1'] == c1.value
    assert params['rotation_deg'] == cube.calibration.rotation_deg
    assert params['quick_phase'] == 'SSB'
    assert ' ms' in widget.status.value
    expected = prepare_direct(cube).phase(params['aberrations'],
                                          params['rotation_deg'],
                                          params['transpose'])
    np.testing.assert_allclose(layer.data, expected,
                               atol=1e-5 * abs(expected).max())


def test_updates_are_coalesced_and_the_newest_value_wins(
        tune, qtbot, monkeypatch):
    """While an update computes (made to take 0.5 s here), two more drags
    leave one update waiting, which computes only the newest value."""
    viewer, widget, _ = tune
    calls = []
    phase = DirectPhase.phase

    def slow(self, aberrations, *args, **kwargs):
        calls.append(aberrations['C10'])
        time.sleep(0.5)
        return phase(self, aberrations, *args, **kwargs)

    monkeypatch.setattr(DirectPhase, 'phase', slow)
    prepare(qtbot, viewer, widget)
    shown(qtbot, viewer, 'C10', C1)
    c1 = widget.sliders['C10']
    slider = native(c1.slider).findChild(QSlider)
    drag_slider(slider, 0.2)
    first = c1.value
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=10_000)
    drag_slider(slider, 0.5)
    drag_slider(slider, 0.8)  # both while the first drag's update runs
    shown(qtbot, viewer, 'C10', c1.value)
    assert calls == [C1, first, c1.value]


def test_a_wrong_c1_lowers_the_correlation_and_refine_finds_c1(
        tune, qtbot, sim):
    viewer, widget, _ = tune
    truth = sim.true_phase()
    c1 = widget.sliders['C10']
    prepare(qtbot, viewer, widget)
    right = correlation(viewer.layers[TUNED].data, truth)
    assert right > 0.9

    type_into(c1.field, '0')
    shown(qtbot, viewer, 'C10', 0.0)
    wrong = correlation(viewer.layers[TUNED].data, truth)
    assert wrong < right - 0.3

    click(widget.refine_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=60_000)
    assert 'Refined' in widget.status.value, widget.status.value
    assert c1.value == pytest.approx(C1, rel=0.05)
    shown(qtbot, viewer, 'C10', c1.value)
    assert correlation(viewer.layers[TUNED].data, truth) > right - 0.02


def test_apply_writes_the_calibration_which_the_fields_follow(tune):
    _, widget, cube = tune
    click(widget.refine_button)  # nothing prepared yet: a message
    assert 'Press Prepare first' in widget.status.value
    type_into(widget.sliders['C10'].field, '160')
    type_into(widget.sliders['C12'].field, '25')
    type_into(widget.sliders['phi12'].field, '30')
    type_into(widget.rotation.field, '-14')
    click(widget.transpose)
    click(widget.apply_button)
    cal = cube.calibration
    assert (cal.C1, cal.rotation_deg, cal.transpose) == (160.0, -14.0, True)
    assert cal.aberrations == {'C12': 25.0, 'phi12': 30.0}
    assert cal.half_turn_source == 'user'

    # another step writes the calibration: the fields follow it
    cal.update(C1=420.0, rotation_deg=-15.0, transpose=False,
               aberrations={'C23': 80.0, 'phi23': 70.0})
    values = {key: slider.value for key, slider in widget.sliders.items()}
    assert values == {'C10': 420.0, 'C12': 0.0, 'phi12': 0.0, 'C21': 0.0,
                      'phi21': 0.0, 'C23': 80.0, 'phi23': -50.0}  # 70−120
    assert widget.rotation.value == -15.0
    assert widget.transpose.value is False


@pytest.mark.parametrize('phase', ['SSB', 'parallax (CTF-corrected)'])
def test_half_turn_negates_the_phase(tune, qtbot, phase):
    viewer, widget, _ = tune
    choose(widget.phase_choice, phase)
    prepare(qtbot, viewer, widget)
    assert recorded(viewer)['quick_phase'] == phase
    scale = recorded(viewer)['phase_scale']
    assert ('weak-phase' if phase == 'SSB' else 'lower bound') in scale
    type_into(widget.sliders['C12'].field, '20')
    type_into(widget.sliders['phi12'].field, '30')
    shown(qtbot, viewer, 'phi12', 30.0)
    before = np.array(viewer.layers[TUNED].data)

    click(widget.half_turn_button)
    values = {key: slider.value for key, slider in widget.sliders.items()}
    assert values == {'C10': -C1, 'C12': 20.0, 'phi12': -60.0,  # 30 + 90
                      'C21': 0.0, 'phi21': 180.0,  # azimuths: + 180°/n
                      'C23': 0.0, 'phi23': 60.0}
    assert widget.rotation.value == 165.0  # −15° + 180°
    shown(qtbot, viewer, 'rotation_deg', 165.0)
    np.testing.assert_allclose(viewer.layers[TUNED].data, -before,
                               atol=1e-4 * abs(before).max())


def test_cancel_stops_refine_with_the_best_so_far(tune, qtbot, monkeypatch):
    """Every score made slow (50 ms): Cancel, pressed once the refinement
    has reported progress, ends it early; the sliders show the best
    aberrations it had evaluated."""
    viewer, widget, _ = tune
    score, scored = DirectPhase.score, []

    def slow(self, aberrations, *args, **kwargs):
        time.sleep(0.05)
        value = score(self, aberrations, *args, **kwargs)
        scored.append((value, aberrations['C10']))
        return value

    monkeypatch.setattr(DirectPhase, 'score', slow)
    prepare(qtbot, viewer, widget)
    type_into(widget.sliders['C10'].field, '0')
    choose(widget.refine_fit, 'C1, C12, C21, C23')
    click(widget.refine_button)
    qtbot.waitUntil(lambda: widget.runner.progress.value > 10,
                    timeout=30_000)
    click(widget.runner.cancel_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=30_000)
    assert 'stopped: the best so far' in widget.status.value
    assert len(scored) < 21  # stopped on the C1 grid
    best = max(scored)[1]
    assert widget.sliders['C10'].value == pytest.approx(best, abs=0.005)


def test_without_a_datacube_the_buttons_say_so(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    widget = TuneWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert 'Open a 4D-STEM datacube' in widget.calibration_note.value
    for button in (widget.runner.run_button, widget.apply_button):
        click(button)
        assert 'datacube' in widget.status.value
