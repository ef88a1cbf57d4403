"""Tune aberrations: turn a slider, see the phase change.

"Prepare" computes once, in a thread (progress bar, Cancel), what every
later phase shares: the bright-field spectra of the chosen datacube, for
direct ptychography (SSB, OBF: :func:`napari_phase.prepare_direct`) or
for the parallax CTF-corrected phase
(:func:`napari_phase.prepare_parallax_phase`). Then every change of a
slider or field (C1, astigmatism C12/φ12, coma C21/φ21, trefoil C23/φ23,
the scan rotation, the transpose, the half-turn button) recomputes the
phase in a worker thread and updates ONE layer, "tuned phase" (Å, scan
grid, every setting in its metadata), while the slider moves: at most
one update computes and one waits, which takes the newest values when it
starts. The status line gives the time of the last update.

The values start from THE datacube's calibration (what parallax or DPC
wrote) and follow it when it changes; "Apply" writes them back into it
(C1, aberrations, rotation, transpose and a half-turn note), where
ptychography picks them up. "Refine" maximises the prepared phase's
score over C1 (and, if chosen, astigmatism, coma and trefoil) in a
thread (:func:`napari_phase.refine_aberrations`) and moves the sliders to
what it found. Lengths in Å, angles in degrees, the phase in radians;
C1 = C10 = −defocus, and the half-turn maps (θ, C_mn) to (θ + 180°,
−C_mn), which negates the phase (docs/conventions.md).
"""

from __future__ import annotations

import threading
import time

import napari
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    FloatSpinBox,
    PushButton,
)
from qtpy.QtCore import QTimer

from ..compute.aberrations import half_turn
from ..compute.direct import (
    prepare_direct_steps,
    prepare_parallax_phase_steps,
    refine_aberrations,
)
from ..compute.geometry import wrap_degrees
from ..compute.halfturn import record, user_choice
from ._common import (
    StepWidget,
    add_or_update,
    checked_probe,
    datacube_of,
    device_choice,
    on_click,
    pair_note,
    phase_scale,
    probe_choices,
    raise_to_top,
    real_space_layer,
    start_job,
    wrapped_label,
)

TUNED = 'tuned phase'
DIRECT, PARALLAX = 'direct ptychography', 'parallax'
#: The quick phases: what "Prepare" computes, and the update's method.
PHASES = {'SSB': (DIRECT, 'ssb'), 'OBF': (DIRECT, 'obf'),
          'parallax (CTF-corrected)': (PARALLAX, None)}
#: What "Refine" fits (C1 always).
FITS = {'C1': ('C10',), 'C1, C12': ('C10', 'C12'),
        'C1, C12, C21, C23': ('C10', 'C12', 'C21', 'C23')}
#: Smallest half-width (Å) of the C1 slider around the calibration's C1;
#: "Refine" searches C1 over the slider's width around the value shown.
MIN_C1_SPAN = 200.0
#: Slider windows (Å) of the astigmatism, coma and trefoil magnitudes.
MAGNITUDES = {'C12': 200.0, 'C21': 5000.0, 'C23': 2000.0}
#: Largest |length| (Å) a field takes.
LIMIT = 1e5
#: Calibration fields a prepared phase was computed with: a change of
#: any of them asks for "Prepare" again.
PREPARED_FROM = ('scan_step', 'q_pixel_mrad', 'energy', 'semiangle',
                 'probe_center', 'probe_radius')


class SliderField(Container):
    """One value shown by a slider and a number field, kept in sync. The
    slider spans a window of values; the field takes any value within
    ``limits``, and a value outside the window moves the window to it
    (same width, never below ``limits[0]``). ``field.changed`` is the
    value's signal."""

    def __init__(self, label: str, window, limits, step: float = 1.0):
        self.slider = FloatSlider(min=window[0], max=window[1],
                                  readout=False)
        self.field = FloatSpinBox(min=limits[0], max=limits[1], step=step)
        super().__init__(widgets=[self.slider, self.field],
                         layout='horizontal', labels=False, label=label)
        self.margins = (0, 0, 0, 0)
        self._moving = False  # the field moves the slider
        self.slider.changed.connect(self._slid)
        self.field.changed.connect(self._typed)

    @property
    def value(self) -> float:
        return self.field.value

    @value.setter
    def value(self, value: float) -> None:
        self.field.value = value

    @property
    def half_width(self) -> float:
        """Half the slider's window."""
        return (self.slider.max - self.slider.min) / 2

    def show_window(self, low: float, high: float) -> None:
        """Let the slider span [low, high]; the value stays."""
        self._moving = True
        try:
            self.slider.range = (low, high)
            self.slider.value = min(max(self.value, low), high)
        finally:
            self._moving = False

    def _slid(self, value: float) -> None:
        if not self._moving:
            self.field.value = value

    def _typed(self, value: float) -> None:
        if not self.slider.min <= value <= self.slider.max:
            low = max(value - self.half_width, self.field.min)
            self.show_window(low, low + 2 * self.half_width)
        self._moving = True
        try:
            self.slider.value = value
        finally:
            self._moving = False


def aberration_sliders() -> dict[str, SliderField]:
    """C1 (C10), then each magnitude C_mn (Å) and its azimuth φ_mn (°,
    one period: (−180/n, 180/n])."""
    sliders = {'C10': SliderField('C1 (Å)', (-MIN_C1_SPAN, MIN_C1_SPAN),
                                  (-LIMIT, LIMIT))}
    for key, width in MAGNITUDES.items():
        half = 180.0 / int(key[2])
        sliders[key] = SliderField(f'{key} (Å)', (0.0, width), (0.0, LIMIT))
        sliders[f'phi{key[1:]}'] = SliderField(
            f'φ{key[1:]} (°)', (-half, half), (-half, half), step=0.5)
    return sliders


def wrapped(key: str, value: float) -> float:
    """``value`` of aberration ``key``; an azimuth φ_mn wrapped into
    (−180/n, 180/n], the same aberration."""
    if not key.startswith('phi'):
        return value
    n = int(key[-1])
    return wrap_degrees(n * value) / n


class TuneWidget(StepWidget):
    """Tune aberrations step (see the module docstring)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.phase_choice = ComboBox(label='quick phase',
                                     choices=list(PHASES))
        self.probe_layer = ComboBox(
            label='vacuum probe',
            choices=probe_choices(viewer, '(none: from the mean pattern)'),
            tooltip='SSB and OBF: the vacuum probe gives the aperture edge',
        )
        self.device = device_choice()
        self.calibration_note = wrapped_label()
        self.sliders = aberration_sliders()
        self.rotation = SliderField('rotation (°)', (-180.0, 180.0),
                                    (-180.0, 180.0), step=0.5)
        self.transpose = CheckBox(text='transpose')
        self.half_turn_button = PushButton(text='Half-turn: θ + 180°, −C')
        self.refine_fit = ComboBox(label='refine', choices=list(FITS))
        self.refine_button = PushButton(text='Refine')
        self.apply_button = PushButton(text='Apply to calibration')
        super().__init__(
            viewer, 'Prepare', 'Prepare',
            fields=[self.phase_choice, self.probe_layer, self.device],
            below=[self.calibration_note, *self.sliders.values(),
                   self.rotation, self.transpose, self.half_turn_button,
                   Container(widgets=[self.refine_fit, self.refine_button],
                             layout='horizontal'),
                   self.apply_button],
        )
        self._prepared = {}  # what "Prepare" made, by kind
        self._others = {}  # the calibration's aberrations without slider
        self._report = ''  # the last job's outcome, above the timing
        self._calibration = None
        self._worker = None  # the running update
        self._pending = False  # another update waits
        self._closed = False
        self._timer = QTimer(self.native)  # coalesces one turn's changes
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.update_phase)
        for control in (*self.sliders.values(), self.rotation):
            control.field.changed.connect(self.schedule)
        self.transpose.changed.connect(self.schedule)
        self.phase_choice.changed.connect(self._chosen)
        on_click(self.half_turn_button, self.other_half_turn, self.status)
        on_click(self.refine_button, self.refine, self.status)
        on_click(self.apply_button, self.apply, self.status)
        self.native.destroyed.connect(lambda *_: self._close())
        self.load()

    # -- the calibration ---------------------------------------------------
    def _handlers(self) -> dict:
        """Calibration field → what follows it here."""
        return {'C1': self._show_c1, 'aberrations': self._show_aberrations,
                'rotation_deg': self._show_rotation,
                'transpose': self._show_transpose, 'half_turn': self._note} | {
            name: self._outdated for name in PREPARED_FROM}

    def _follow(self, calibration) -> None:
        for name, handler in self._handlers().items():
            if self._calibration is not None:
                getattr(self._calibration.events, name).disconnect(handler)
            if calibration is not None:
                getattr(calibration.events, name).connect(handler)
        self._calibration = calibration

    def _close(self):
        """The dock closed: stop listening and updating (nothing to do
        once the garbage collector has emptied us)."""
        if '_closed' not in vars(self):
            return
        self._closed = True
        self._follow(None)

    def load(self, *_):
        """Follow the chosen cube's calibration (fields now and whenever
        it changes); what was prepared belongs to the cube before."""
        layer = self.cube_layer.value
        calibration = None if layer is None else datacube_of(layer).calibration
        self._prepared = {}
        if calibration is not self._calibration:
            self._follow(calibration)
        if calibration is None:
            self.calibration_note.value = 'Open a 4D-STEM datacube first.'
            return
        for show in (self._show_c1, self._show_aberrations,
                     self._show_rotation, self._show_transpose):
            show()

    def _show_c1(self, *_):
        c1 = self._calibration.C1
        if c1 is not None:
            slider, span = self.sliders['C10'], max(abs(c1), MIN_C1_SPAN)
            slider.show_window(c1 - span, c1 + span)
            slider.value = c1
        self._note()

    def _show_aberrations(self, *_):
        self._set_aberrations(dict(self._calibration.aberrations))

    def _show_rotation(self, *_):
        if self._calibration.rotation_deg is not None:
            self.rotation.value = wrap_degrees(self._calibration.rotation_deg)
        self._note()

    def _show_transpose(self, *_):
        self.transpose.value = bool(self._calibration.transpose)
        self._note()

    def _note(self, *_):
        self.calibration_note.value = pair_note(
            self._calibration, 'run DPC or parallax, or set them here')

    def _outdated(self, *_):
        if self._prepared:
            self._prepared = {}
            self._describe('The calibration changed: press Prepare again.')

    # -- the values shown --------------------------------------------------
    def settings(self) -> tuple[dict, float, bool]:
        """Polar aberrations shown (C10 = C1, Å; azimuths in degrees; with
        the calibration's aberrations that have no slider), the rotation
        (degrees) and the transpose."""
        aberrations = self._others | {
            key: slider.value for key, slider in self.sliders.items()}
        return aberrations, self.rotation.value, self.transpose.value

    def _set_aberrations(self, aberrations: dict) -> None:
        """Move the sliders to polar ``aberrations`` (an absent magnitude
        or azimuth: 0; an absent C10: C1 stays)."""
        for key, slider in self.sliders.items():
            if key != 'C10' or key in aberrations:
                slider.value = wrapped(key, aberrations.get(key, 0.0))
        self._others = {key: value for key, value in aberrations.items()
                        if key not in self.sliders}

    def other_half_turn(self):
        """The other half-turn: (θ + 180°, every C_mn negated)."""
        aberrations, rotation, _ = self.settings()
        self._set_aberrations(half_turn(aberrations))
        self.rotation.value = wrap_degrees(rotation + 180.0)

    def apply(self):
        """Write the values shown into the datacube's calibration (the
        magnitudes that are not 0, with their azimuths)."""
        cube = datacube_of(self.cube_layer.value)
        aberrations, rotation, transpose = self.settings()
        c1 = aberrations.pop('C10')
        for key in MAGNITUDES:
            if aberrations[key] == 0:
                del aberrations[key], aberrations[f'phi{key[1:]}']
        cube.calibration.update(
            C1=c1, rotation_deg=rotation, transpose=transpose,
            aberrations=aberrations,
            **record(user_choice()),  # the user's pair: final
        )
        self._describe(f'Applied: C1 {c1:g} Å, rotation {rotation:g}°.')

    # -- prepare and refine (the runner) -----------------------------------
    def run(self):
        """Prepare the chosen quick phase of the chosen datacube (the
        expensive part, once) in a thread worker."""
        layer = self.cube_layer.value
        cube = datacube_of(layer)
        kind, _ = PHASES[self.phase_choice.value]
        probe_layer, device = self.probe_layer.value, self.device.value

        def job():
            if kind == PARALLAX:
                return (yield from prepare_parallax_phase_steps(
                    cube, device=device.lower()))
            return (yield from prepare_direct_steps(
                cube, vacuum_probe=checked_probe(probe_layer, layer, cube),
                device=device.lower()))

        self._start('Prepare', job,
                    lambda prepared: self._prepared_done(layer, kind,
                                                         prepared))

    def _prepared_done(self, layer, kind, prepared):
        if self._closed or layer is not self.cube_layer.value:
            return  # closed, or another cube was picked meanwhile
        self._prepared[kind] = prepared
        self._report = f'{kind} prepared.'
        self.schedule()

    def refine(self):
        """Maximise the prepared phase's score over the chosen aberrations,
        C1 within the slider's width around the value shown, in a thread;
        the sliders go to what it found (Cancel: the best so far)."""
        prepared, method = self._ready()
        aberrations, rotation, transpose = self.settings()
        fit, span = FITS[self.refine_fit.value], self.sliders['C10'].half_width
        options = {} if method is None else {'method': method}
        stop, runner = threading.Event(), self.runner

        def job():
            found = refine_aberrations(
                prepared, fit, aberrations, rotation, transpose, span=span,
                progress=runner.worker.yielded.emit, stop=stop.is_set,
                **options)
            yield 1.0
            return found

        self._start('Refine', job, self._refined, stop=stop.set)

    def _refined(self, found):
        if self._closed:
            return
        self._set_aberrations(found.aberrations)
        early = ' (stopped: the best so far)' if found.stopped else ''
        self._report = (
            f'Refined{early}: C1 {found.aberrations["C10"]:.1f} Å, score '
            f'×{found.score / found.start_score:.3g}, '
            f'{found.evaluations} updates.')
        self._describe()

    def _start(self, description, job, on_result, stop=None):
        if self.runner.worker is None:  # else: "... is already running"
            self.runner.description = description
        self.runner.start(job, on_result, stop=stop)

    def _ready(self):
        """The prepared phase chosen, and the update's method."""
        choice = self.phase_choice.value
        kind, method = PHASES[choice]
        if kind not in self._prepared:
            raise ValueError(f'Press Prepare first (for the {choice} '
                             'phase).')
        return self._prepared[kind], method

    # -- live updates ------------------------------------------------------
    def _chosen(self, *_):
        kind, _ = PHASES[self.phase_choice.value]
        if kind in self._prepared:
            self.schedule()
        else:
            self._describe(f'Press Prepare for the {self.phase_choice.value} '
                           'phase.')

    def schedule(self, *_):
        """A value changed: update the phase once this turn of the event
        loop is done, or after the update that is computing (at most one
        waits, with the newest values when it starts)."""
        if self._worker is not None:
            self._pending = True
        elif PHASES[self.phase_choice.value][0] in self._prepared:
            self._timer.start()

    def update_phase(self):
        """Recompute the tuned phase from the values shown, in a thread."""
        if self._closed or PHASES[self.phase_choice.value][0] not in \
                self._prepared:
            return
        if self._worker is not None:
            self._pending = True
            return
        prepared, method = self._ready()
        aberrations, rotation, transpose = self.settings()
        options = {} if method is None else {'method': method}
        parameters = {
            'step': 'tune aberrations', 'quick_phase': self.phase_choice.value,
            'aberrations': aberrations, 'C1': aberrations['C10'],
            'rotation_deg': rotation, 'transpose': transpose,
            'source': prepared.parameters['source'], 'unit': 'rad',
            'prepared': prepared.parameters,
        } | phase_scale(prepared)

        def job():
            yield  # the worker may be quit here, before the work
            start = time.perf_counter()
            phase = prepared.phase(aberrations, rotation, transpose,
                                   **options)
            return phase, 1e3 * (time.perf_counter() - start)

        self._worker = start_job(
            job, on_result=lambda done: self._show(prepared, parameters,
                                                   *done),
            on_error=lambda error: self._describe(f'Error: {error}'),
            on_finished=self._updated)

    def _show(self, prepared, parameters, phase, ms):
        if self._closed or prepared not in self._prepared.values():
            return  # closed, or prepared again meanwhile
        new = TUNED not in self.viewer.layers
        layer = add_or_update(self.viewer, real_space_layer(
            phase, TUNED, prepared.pixel_size,
            parameters | {'update_ms': ms}, origin=prepared.origin,
            colormap='gray'))
        if new:
            raise_to_top(self.viewer, layer)
        self._describe(f'{parameters["quick_phase"]} phase: last update '
                       f'{ms:.0f} ms.')

    def _updated(self):
        self._worker = None
        if self._pending and not self._closed:
            self._pending = False
            self.update_phase()

    def _describe(self, text: str = ''):
        """The status line: the last job's outcome, then ``text``."""
        if not self._closed:
            self.runner.describe('\n'.join(
                line for line in (self._report, text) if line))
