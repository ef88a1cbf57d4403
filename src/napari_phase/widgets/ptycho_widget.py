"""Ptychography widget: reconstruct in a thread, watch it converge, stop it.

Defocus (= −C1), rotation and transpose are read from THE datacube's
calibration (as set by parallax) and follow it when it changes. While it
runs, the progress bar shows the iteration and error, the error curve in
the dock grows and the object phase layer updates every few iterations;
Cancel stops within one mini-batch and keeps the result so far.

Layers out: object phase and amplitude in the main viewer (Å, scan frame,
field of view only, pixel (0, 0) at scan position (0, 0)); the probe's
Fourier amplitude and phase in the diffraction view (mrad), where it can
be compared with the vacuum probe and the aperture. Every parameter is in
``layer.metadata['napari_phase']['parameters']``.
"""

from __future__ import annotations

import threading

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    SpinBox,
)
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ..compute.backend import gpu_available
from ..compute.ptycho import PtychoResult, PtychoStep, ptychography_iter
from ._common import (
    on_click,
    META,
    add_or_update,
    datacube_choices,
    datacube_of,
    follow_layers,
    guarded,
    LayerError,
    probe_choices,
    probe_of,
    real_space_layer,
    Runner,
)
from .diffraction_view import diffraction_view

PHASE, AMPLITUDE = 'ptychography phase', 'ptychography amplitude'
PROBE_AMPLITUDE = 'ptychography probe amplitude'
PROBE_PHASE = 'ptychography probe phase'
#: The phase layer is refreshed every this many iterations while running.
LIVE_EVERY = 4


class ErrorPlot(FigureCanvasQTAgg):
    """A small log-scale plot of the error per iteration."""

    def __init__(self):
        figure = Figure(figsize=(3.2, 2.0), tight_layout=True)
        super().__init__(figure)
        self.axes = figure.add_subplot()
        self.errors: list[float] = []
        self.show_errors([])

    def show_errors(self, errors):
        self.errors = list(errors)
        self.axes.clear()
        self.axes.set_xlabel('iteration')
        self.axes.set_ylabel('error')
        if self.errors:
            self.axes.semilogy(np.arange(1, len(self.errors) + 1),
                               self.errors, '.-')
        self.draw_idle()


class PtychoWidget(Container):
    """Dockable single-slice ptychography."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.viewer = viewer
        self.cube_layer = ComboBox(
            label='datacube', choices=datacube_choices(viewer)
        )
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
        gpu = gpu_available()
        self.device = ComboBox(label='device',
                               choices=['CPU', 'GPU'] if gpu else ['CPU'],
                               enabled=gpu,
                               tooltip='GPU needs cupy and a CUDA device')
        self.runner = Runner('Reconstruct', 'Ptychography')
        self.status = Label(value='')
        super().__init__(widgets=[
            self.cube_layer, self.probe_layer, self.defocus, self.rotation,
            self.transpose, self.num_iter, self.step_size, self.batch,
            self.fix_probe, self.device, self.runner, self.status,
        ])
        self.plot = ErrorPlot()
        self.native.layout().addWidget(self.plot)
        self.result: PtychoResult | None = None
        self._last_step: PtychoStep | None = None
        self._outcome: PtychoResult | None = None
        self._latest = self._latest_phase = None
        self._errors: list[float] = []
        self._busy = self._dirty = False
        self._stop = threading.Event()
        self._calibration = None
        on_click(self.runner.run_button, self.run, self.runner.status)
        on_click(self.runner.cancel_button, self._stop.set)
        self.cube_layer.changed.connect(guarded(self.load, self.status))
        follow_layers(self, viewer)
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
            self.status.value = 'Open a 4D-STEM datacube first.'
            return
        if cal.C1 is not None:
            self.defocus.value = -cal.C1
        if cal.rotation_deg is not None:
            self.rotation.value = cal.rotation_deg
        if cal.transpose is not None:
            self.transpose.value = cal.transpose
        missing = cal.missing('C1', 'rotation_deg', 'transpose')
        self.status.value = (
            f'Not in the calibration yet: {", ".join(missing)} (run '
            'parallax, or enter them).' if missing else
            f'From the calibration: C1 {cal.C1:g} Å, rotation '
            f'{cal.rotation_deg:g}°, transpose {cal.transpose}.'
        )

    # -- running -------------------------------------------------------
    def parameters(self) -> dict:
        return dict(
            defocus=self.defocus.value, rotation_deg=self.rotation.value,
            transpose=self.transpose.value, num_iter=self.num_iter.value,
            step_size=self.step_size.value, max_batch_size=self.batch.value,
            fix_probe=self.fix_probe.value,
            device=self.device.value.lower(),
        )

    def run(self):
        """Start the reconstruction in a thread worker."""
        if self.runner.worker is not None:
            self.runner.describe('already running: Cancel it first.')
            return
        layer = self.cube_layer.value
        cube = datacube_of(layer)
        probe_layer = self.probe_layer.value
        vacuum = None if probe_layer is None else probe_of(probe_layer)
        if vacuum is not None and vacuum.shape != cube.detector_shape:
            raise LayerError(
                f'Vacuum probe layer {probe_layer.name!r} has shape '
                f'{vacuum.shape} but the detector of {layer.name!r} is '
                f'{cube.detector_shape}.'
            )
        params = self.parameters()
        self._params = params | {'method': 'ptychography',
                                 'source': cube.source}
        self._stop.clear()
        self._last_step = self._outcome = self.result = None
        self._latest = self._latest_phase = None
        self._errors = []
        self.plot.show_errors([])

        def job():
            steps = ptychography_iter(cube, vacuum, stop=self._stop.is_set,
                                      **params)
            while True:
                try:
                    step = next(steps)
                except StopIteration as done:
                    self._outcome = done.value
                    return done.value
                if step.iteration % LIVE_EVERY == 1 or LIVE_EVERY == 1:
                    step.phase  # noqa: B018  (crop in this thread)
                self._last_step = step
                yield step.iteration / params['num_iter']
                yield step

        worker = self.runner.start(job, self.show_result, self._live)
        if worker is not None:
            worker.finished.connect(self._finished)

    def _live(self, step: PtychoStep):
        """A new iteration (main thread): record it and redraw."""
        if self.result is not None:  # a late yield after the final result
            return
        self._errors.append(step.error)
        self._latest = step
        if 'phase' in step.__dict__:  # cropped in the worker: show it
            self._latest_phase = step
        self._render()

    def _render(self):
        """Draw the newest state. Adding a layer runs the Qt event loop, so
        a newer yield (or the result) can arrive while drawing: it only
        marks the view dirty and this loop draws it after, never an older
        state over a newer one."""
        self._dirty = True
        if self._busy:
            return
        self._busy = True
        try:
            while self._dirty:
                self._dirty = False
                if self.result is not None:
                    self._draw_result(self.result)
                elif self._latest is not None:
                    self._draw_step(self._latest, self._latest_phase)
        finally:
            self._busy = False

    def _draw_step(self, step: PtychoStep, phase_step: PtychoStep | None):
        self.plot.show_errors(self._errors)
        self.runner.describe(
            f'iteration {step.iteration}, error {step.error:.4g}')
        if phase_step is not None:
            add_or_update(self.viewer, real_space_layer(
                phase_step.phase, PHASE, phase_step.pixel_size,
                self._params | {'iterations_done': phase_step.iteration},
                colormap='gray',
            ))

    def _finished(self):
        """Cancelled (the worker then drops the returned value) or failed:
        keep what was reached, else the last completed iteration."""
        outcome = self._outcome
        if outcome is None and self._last_step is not None:
            outcome = self._last_step.result()
        if outcome is not None and outcome is not self.result:
            self.show_result(outcome)

    def show_result(self, result: PtychoResult):
        """Add/update the object, probe and error layers."""
        self.result = result
        self._render()

    def _draw_result(self, result: PtychoResult):
        done = result.parameters['iterations_done']
        params = self._params | result.parameters
        for name, image, colormap in ((PHASE, result.phase, 'gray'),
                                      (AMPLITUDE, result.amplitude, 'gray')):
            add_or_update(self.viewer, real_space_layer(
                image, name, result.pixel_size, params,
                origin=result.origin, colormap=colormap,
            ))
        view = diffraction_view(self.viewer)
        q = result.parameters['calibration']['q_pixel_mrad']
        fourier = result.probe_fourier
        for name, image in ((PROBE_AMPLITUDE, np.abs(fourier)),
                            (PROBE_PHASE, np.angle(fourier))):
            layer = view.show_pattern(name, image, (q, q))
            layer.metadata = {META: {'parameters': params}}
        self.plot.show_errors(result.errors)
        stopped = done < result.parameters['num_iter']
        self.runner.describe(
            f'{"Stopped" if stopped else "Done"} after {done} iteration(s)'
            + (f', error {result.errors[-1]:.4g}' if result.errors else '')
            + f'; {result.half_turn_check}.'
        )
