"""Ptychography widget: reconstruct in a thread, watch it converge, stop it.

Defocus (= −C1), rotation and transpose are read from THE datacube's
calibration (as set by parallax) and follow it when it changes. While it
runs, the progress bar shows the iteration and error, every
:data:`REFRESH_MS` the error curve in the dock grows, and every few seconds
the object phase layer shows the newest iteration (the phase is cropped in
the worker thread only when the view asks for it, rarely enough that
watching costs the reconstruction a few per cent at most);
Cancel stops within one mini-batch and keeps the result so far.

Layers out: object phase (on top, selected) and amplitude (hidden) in the
main viewer (Å, scan frame, field of view only, pixel (0, 0) at scan
position (0, 0)); the probe's Fourier amplitude and phase in the
diffraction view (mrad, hidden until ticked there), where it can be
compared with the vacuum probe and the aperture. Every parameter is in
``layer.metadata['napari_phase']['parameters']``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter
from qtpy.QtCore import QTimer

from ..compute.halfturn import adopted
from ..compute.ptycho import PtychoResult, ptychography_iter
from ._common import (
    META,
    StepWidget,
    add_or_update,
    build_layers,
    checked_probe,
    datacube_of,
    device_choice,
    probe_choices,
    publish,
    real_space_layer,
    wrapped_label,
)
from .diffraction_view import diffraction_view

PHASE, AMPLITUDE = 'ptychography phase', 'ptychography amplitude'
PROBE_AMPLITUDE = 'ptychography probe amplitude'
PROBE_PHASE = 'ptychography probe phase'
#: While running, the error plot is redrawn this often (ms) ...
REFRESH_MS = 1000
#: ... and the phase layer at most this often (ms), and so that cropping
#: it in the worker takes at most 1/PHASE_COST_RATIO of the time.
PHASE_MS, PHASE_COST_RATIO = 5000, 20
#: Smallest height (px) of the error plot in the dock.
PLOT_HEIGHT = 160


@dataclass(frozen=True)
class Iteration:
    """What the worker sends after each iteration: its number and error,
    and the phase layer (built in the worker when the view asked) with the
    seconds that took."""

    number: int
    error: float
    phase_layer: tuple | None = None
    seconds: float = 0.0


def _plain(value, _position=None) -> str:
    return f'{value:.2g}'


class ErrorPlot(FigureCanvasQTAgg):
    """A small log-scale plot of the error per iteration."""

    def __init__(self):
        figure = Figure(figsize=(3.2, 2.0), tight_layout=True)
        super().__init__(figure)
        self.axes = figure.add_subplot()
        self.axes.set_xlabel('iteration')
        self.axes.set_ylabel('error')
        self.axes.set_yscale('log')
        # Plain tick labels: matplotlib's math text costs a second on the
        # first draw.
        self.axes.yaxis.set_major_formatter(FuncFormatter(_plain))
        self.axes.yaxis.set_minor_formatter(NullFormatter())
        (self.line,) = self.axes.plot([], [], '.-')
        self.errors: list[float] = []

    def show_errors(self, errors):
        self.errors = list(errors)
        self.line.set_data(np.arange(1, len(self.errors) + 1), self.errors)
        if self.errors:
            self.axes.relim()
            self.axes.autoscale_view()
        self.draw_idle()


class PtychoWidget(StepWidget):
    """Single-slice ptychography step."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.calibration_note = wrapped_label()
        self.probe_layer = ComboBox(
            label='vacuum probe',
            choices=probe_choices(
                viewer, '(none: aperture from the semiangle)'
            ),
        )
        self.defocus = FloatSpinBox(label='defocus (Å, = −C1)', min=-1e5,
                                    max=1e5, step=10)
        self.rotation = FloatSpinBox(label='rotation (°)', min=-360,
                                     max=360, step=0.5)
        self.transpose = CheckBox(text='transpose')
        self.num_iter = SpinBox(label='iterations', value=64, min=1,
                                max=100_000)
        self.step_size = FloatSpinBox(label='step size', value=0.5,
                                      min=0.001, max=10, step=0.05)
        self.batch = SpinBox(label='batch size', value=512, min=1,
                             max=10_000_000)
        self.fix_probe = CheckBox(text='fix probe', value=True)
        self.device = device_choice()
        super().__init__(
            viewer, 'Reconstruct', 'Ptychography',
            fields=[self.calibration_note, self.probe_layer, self.defocus,
                    self.rotation, self.transpose, self.num_iter,
                    self.step_size, self.batch, self.fix_probe, self.device],
        )
        self.plot = ErrorPlot()
        self.add_native(self.plot, PLOT_HEIGHT)
        self.result: PtychoResult | None = None
        self._errors: list[float] = []
        self._latest: Iteration | None = None
        self._phase_layer = None  # built in the worker, not shown yet
        self._next_phase = 0.0  # when the view may ask for another
        self._stop = threading.Event()
        self._want_phase = threading.Event()
        self._timer = QTimer(self.native)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._refresh_live)
        self._calibration = None
        self.native.destroyed.connect(lambda *_: self._close())
        self.load()

    def _close(self):
        """The dock closed: stop a running reconstruction, stop listening
        (nothing to do once the garbage collector has emptied us: psygnal
        holds bound methods weakly)."""
        if '_stop' not in vars(self):
            return
        self._stop.set()
        if self._calibration is not None:
            self._calibration.events.all.disconnect(self._refresh)
            self._calibration = None

    # -- calibration ---------------------------------------------------
    def load(self, *_):
        """Follow the chosen cube's calibration: fill the fields now and
        whenever the calibration changes."""
        layer = self.cube_layer.value
        calibration = None if layer is None else datacube_of(layer).calibration
        if calibration is not self._calibration:
            if self._calibration is not None:
                self._calibration.events.all.disconnect(self._refresh)
            if calibration is not None:
                calibration.events.all.connect(self._refresh)
            self._calibration = calibration
        self._refresh()

    def _refresh(self, *_):
        cal = self._calibration
        if cal is None:
            self.calibration_note.value = 'Open a 4D-STEM datacube first.'
            return
        if cal.C1 is not None:
            self.defocus.value = -cal.C1
        if cal.rotation_deg is not None:
            self.rotation.value = cal.rotation_deg
        if cal.transpose is not None:
            self.transpose.value = cal.transpose
        missing = cal.missing('C1', 'rotation_deg', 'transpose')
        self.calibration_note.value = (
            f'Not in the calibration yet: {", ".join(missing)} (run '
            'parallax, or enter them).' if missing else
            f'From the calibration: C1 {cal.C1:g} Å, rotation '
            f'{cal.rotation_deg:g}°, transpose {cal.transpose}.'
        )

    # -- running -------------------------------------------------------
    def parameters(self) -> dict:
        return {
            'defocus': self.defocus.value, 'rotation_deg': self.rotation.value,
            'transpose': self.transpose.value, 'num_iter': self.num_iter.value,
            'step_size': self.step_size.value,
            'max_batch_size': self.batch.value,
            'fix_probe': self.fix_probe.value,
            'device': self.device.value.lower(),
        }

    def run(self):
        """Start the reconstruction in a thread worker."""
        layer = self.cube_layer.value
        cube = datacube_of(layer)
        probe_layer = self.probe_layer.value
        params = self.parameters()
        recorded = params | {'method': 'ptychography', 'source': cube.source}
        stop, want_phase = self._stop, self._want_phase

        def job():
            vacuum = checked_probe(probe_layer, layer, cube)
            steps = ptychography_iter(cube, vacuum, stop=stop.is_set,
                                      **params)
            while True:
                try:
                    step = next(steps)
                except StopIteration as done:
                    result, changes = adopted(cube.calibration, done.value)
                    return result, changes, build_layers(
                        result_layers(result, recorded))
                phase_layer, start = None, time.perf_counter()
                if want_phase.is_set():  # the view asked: crop here
                    want_phase.clear()
                    (phase_layer,) = build_layers([real_space_layer(
                        step.phase, PHASE, step.pixel_size,
                        recorded | {'iterations_done': step.iteration},
                        colormap='gray')])
                yield step.iteration / params['num_iter']
                yield Iteration(step.iteration, step.error, phase_layer,
                                time.perf_counter() - start)

        stop.clear()
        want_phase.set()
        self._next_phase = 0.0
        self.result, self._latest, self._phase_layer = None, None, None
        self._errors = []
        self.plot.show_errors([])
        worker = self.runner.start(job, lambda done: self.show_result(*done, cube),
                                   self._live, stop=stop.set)
        if worker is not None:
            worker.finished.connect(self._timer.stop)
            self._timer.start()

    def _live(self, iteration: Iteration):
        """A new iteration (main thread): only recorded; drawn by the
        timer."""
        self._errors.append(iteration.error)
        self._latest = iteration
        if iteration.phase_layer is not None:
            self._phase_layer = iteration.phase_layer
            self._next_phase = time.perf_counter() + max(
                PHASE_MS / 1e3, PHASE_COST_RATIO * iteration.seconds)

    def _refresh_live(self):
        """Draw the newest iteration and ask the worker for a new phase."""
        if self.result is not None or self._latest is None:
            return
        if len(self._errors) != len(self.plot.errors):
            self.plot.show_errors(self._errors)
        latest = self._latest
        self.runner.describe(
            f'iteration {latest.number}, error {latest.error:.4g}')
        if self._phase_layer is not None:
            add_or_update(self.viewer, *self._phase_layer)
            self._phase_layer = None
        if time.perf_counter() >= self._next_phase:
            self._want_phase.set()

    def show_result(self, result: PtychoResult, changes: dict,
                    built: list, cube):
        """Show the object layers (phase on top), the probe in the
        diffraction view (hidden), the errors and how it ended."""
        self._timer.stop()
        self.result = result
        cube.calibration.update(**changes)  # the half-turn, if it decided
        publish(self.viewer, built, top=PHASE)
        view = diffraction_view(self.viewer)
        q = result.parameters['calibration']['q_pixel_mrad']
        fourier = result.probe_fourier
        for name, image, kind in (
                (PROBE_AMPLITUDE, np.abs(fourier), 'counts'),
                (PROBE_PHASE, np.angle(fourier), 'phase')):
            layer = view.show_pattern(name, image, (q, q), kind=kind,
                                      visible=False)
            layer.metadata[META]['parameters'] = result.parameters
        self.plot.show_errors(result.errors)
        done = result.parameters['iterations_done']
        stopped = done < result.parameters['num_iter']
        self.runner.describe(
            f'{"Stopped" if stopped else "Done"} after {done} iteration(s)'
            + (f', error {result.errors[-1]:.4g}' if result.errors else '')
            + f'; half-turn {result.half_turn_evidence.describe()}.'
        )


def result_layers(result: PtychoResult, recorded: dict) -> list[tuple]:
    """The phase and (hidden) the amplitude of a reconstruction."""
    params = recorded | result.parameters
    return [real_space_layer(image, name, result.pixel_size, params,
                             origin=result.origin, colormap='gray',
                             visible=visible)
            for image, name, visible in ((result.phase, PHASE, True),
                                         (result.amplitude, AMPLITUDE, False))]
