"""Ptychography widget: reconstruct in a thread, watch it converge, stop
it, continue it.

Defocus (= −C1), rotation and transpose are read from THE datacube's
calibration (as set by parallax) and follow it when it changes. In front:
iterations, step size, batch size, probe modes (mixed state) and slices
(multislice) with their thickness; every other setting of
:func:`napari_phase.ptychography_iter` (position correction, probe and
object constraints, filters, the seed) is under **Advanced**, folded.
Each field is named as the keyword it sets (and the recipe key), and
starts at that keyword's default (except *fix probe*: on).

While it runs, the progress bar shows the iteration and error, every
:data:`REFRESH_MS` the error curve in the dock grows, and every few
seconds the live layers show the newest iteration (they are made in the
worker thread only when the view asks for them, rarely enough that
watching costs the reconstruction a few per cent at most); Cancel stops
within one mini-batch and keeps the result so far. **Continue** runs
more iterations from the last result of the same datacube (its object,
probe modes and positions; the model — geometry, probe modes, slices —
stays that result's), the error curve goes on, and the result records
both runs, so an exported recipe replays them.

Layers out, every parameter in ``layer.metadata['napari_phase']
['parameters']``. Main viewer (Å, scan frame, field of view only, pixel
(0, 0) at scan position (0, 0)): the object phase (on top, selected; the
sum of the slices), its amplitude, and, hidden, the phase of each slice
(multislice), the probe positions (Points) and their shifts from the scan
grid (Vectors), when positions were corrected. Diffraction view (mrad,
hidden until ticked there): the probe's Fourier amplitude and phase, and
the Fourier amplitude of every probe mode (one plane each, their shares
of the intensity in metadata as ``mode_powers``).
"""

from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSpinBox,
    PushButton,
    SpinBox,
)
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter
from qtpy.QtCore import QTimer

from ..compute.backend import gpu_available
from ..compute.datacube import DataCube
from ..compute.halfturn import adopted
from ..compute.ptycho import PtychoResult, ptychography_iter
from ..compute.ptycho.parameters import MODEL_DEFAULTS, model_changes
from ..compute.ptycho.result import (
    centred_fft,
    mode_powers,
    position_corrections,
)
from ._common import (
    META,
    Folded,
    LayerError,
    StepWidget,
    add_or_update,
    build_layers,
    checked_probe,
    datacube_of,
    on_click,
    pair_note,
    phase_scale,
    probe_choices,
    publish,
    real_space_layer,
    wrapped_label,
)
from .diffraction_view import diffraction_view

PHASE, AMPLITUDE = 'ptychography phase', 'ptychography amplitude'
SLICES = 'ptychography slices'
POSITIONS = 'ptychography positions'
CORRECTIONS = 'ptychography position corrections'
PROBE_AMPLITUDE = 'ptychography probe amplitude'
PROBE_PHASE = 'ptychography probe phase'
PROBE_MODES = 'ptychography probe modes'
#: Layers a result may not have (one slice, positions not corrected): an
#: older one is removed, so that no stale layer stays beside the result.
OPTIONAL = (SLICES, POSITIONS, CORRECTIONS)
#: Position corrections are drawn this many times their length.
CORRECTION_LENGTH = 10
#: While running, the error plot is redrawn this often (ms) ...
REFRESH_MS = 1000
#: ... and the live layers at most this often (ms), and so that making
#: them in the worker takes at most 1/PHASE_COST_RATIO of the time.
PHASE_MS, PHASE_COST_RATIO = 5000, 20
#: Smallest height (px) of the error plot in the dock.
PLOT_HEIGHT = 160

#: The defaults of ``ptychography_iter`` (None filled as a new run does).
DEFAULTS = {
    name: parameter.default for name, parameter in
    inspect.signature(ptychography_iter).parameters.items()
} | MODEL_DEFAULTS | {'fix_probe': True}
#: Fields whose 0 means "not set" (None).
UNSET_AT_ZERO = ('slice_thickness', 'q_lowpass', 'q_highpass')
#: The fields: name (= keyword) → (kind, label, tooltip, options).
GEOMETRY = {
    'defocus': (FloatSpinBox, 'defocus (Å, = −C1)', '',
                {'min': -1e5, 'max': 1e5, 'step': 10}),
    'rotation_deg': (FloatSpinBox, 'rotation (°)', '',
                     {'min': -360, 'max': 360, 'step': 0.5}),
    'transpose': (CheckBox, 'transpose', '', {}),
}
FRONT = {
    'num_iter': (SpinBox, 'iterations', '', {'min': 1, 'max': 100_000}),
    'step_size': (FloatSpinBox, 'step size', 'gradient step α',
                  {'min': 0.001, 'max': 10, 'step': 0.05}),
    'max_batch_size': (SpinBox, 'batch size',
                       'patterns per mini-batch (at most)',
                       {'min': 1, 'max': 10_000_000}),
    'num_probes': (SpinBox, 'probe modes',
                   ('mixed state: incoherent probe modes, for a partially '
                    'coherent beam'), {'min': 1, 'max': 32}),
    'num_slices': (SpinBox, 'slices',
                   ('multislice: object slices, for a specimen thicker '
                    'than the depth of field ≈ 2λ/α²'),
                   {'min': 1, 'max': 256}),
    'slice_thickness': (FloatSpinBox, 'slice thickness (Å)',
                        ('distance between slices (Å); needed for more '
                         'than one slice'),
                        {'min': 0, 'max': 1e4, 'step': 1}),
    'fix_probe': (CheckBox, 'fix probe', 'keep the initial probe', {}),
}
ADVANCED = {
    'fix_probe_iterations': (
        SpinBox, 'fixed-probe iterations',
        ('probe kept for this many iterations, then updated (fix probe '
         'off)'), {'min': 0, 'max': 100_000}),
    'probe_momentum': (FloatSpinBox, 'probe momentum',
                       'heavy-ball momentum η of the probe update (0: none)',
                       {'min': 0, 'max': 0.99, 'step': 0.05}),
    'probe_centring': (CheckBox, 'probe centring',
                       'keep the probe intensity centred', {}),
    'probe_aperture': (ComboBox, 'probe aperture',
                       ('Fourier amplitude fixed to the initial aperture, '
                        'or zero outside it (support)'),
                       {'choices': [('none', None),
                                    ('Fourier amplitude', 'amplitude'),
                                    ('support', 'support')]}),
    'normalization_min': (FloatSpinBox, 'normalization min',
                          '1: uniform step; 0: per-pixel normalisation',
                          {'min': 0, 'max': 1, 'step': 0.05}),
    'object_type': (ComboBox, 'object',
                    ('complex transmission, or a real potential V (O = '
                     'exp(iV))'), {'choices': ['complex', 'potential']}),
    'object_positivity': (CheckBox, 'positive potential',
                          'V ≥ 0 (object "potential")', {}),
    'amplitude_max': (FloatSpinBox, 'max. amplitude',
                      'object amplitude ≤ this (1: vacuum)',
                      {'min': 0.01, 'max': 10, 'step': 0.05}),
    'gaussian_sigma': (FloatSpinBox, 'Gaussian σ (Å)',
                       'Gaussian blur of the object (Å; 0: none)',
                       {'min': 0, 'max': 100, 'step': 0.1}),
    'q_lowpass': (FloatSpinBox, 'low-pass (1/Å)',
                  'Butterworth low-pass cut-off (Å⁻¹; 0: none)',
                  {'min': 0, 'max': 100, 'step': 0.01}),
    'q_highpass': (FloatSpinBox, 'high-pass (1/Å)',
                   'Butterworth high-pass cut-off (Å⁻¹; 0: none)',
                   {'min': 0, 'max': 100, 'step': 0.01}),
    'butterworth_order': (FloatSpinBox, 'Butterworth order', '',
                          {'min': 0.5, 'max': 20, 'step': 0.5}),
    'tv_weight': (FloatSpinBox, 'TV weight (rad)',
                  'total-variation denoising of the object (rad; 0: none)',
                  {'min': 0, 'max': 10, 'step': 0.001}),
    'kz_regularization': (FloatSpinBox, 'kz regularization',
                          'smoothing between slices γ (no unit; 0: none)',
                          {'min': 0, 'max': 100, 'step': 0.01}),
    'position_correction': (CheckBox, 'position correction',
                            'refine every probe position', {}),
    'position_correction_start': (
        SpinBox, 'correct from iteration', 'first iteration corrected',
        {'min': 0, 'max': 100_000}),
    'position_step': (FloatSpinBox, 'position step',
                      'fraction of the least-squares shift applied',
                      {'min': 0.01, 'max': 10, 'step': 0.1}),
    'max_position_update': (FloatSpinBox, 'max. shift (Å)',
                            'longest position update per iteration (Å)',
                            {'min': 0.001, 'max': 100, 'step': 0.05}),
    'position_affine': (CheckBox, 'affine positions',
                        'keep the positions an affine map of the grid', {}),
    'seed': (SpinBox, 'seed', 'order of the batches',
             {'min': 0, 'max': 2**31 - 1}),
}


def make_field(name: str, kind, label: str, tooltip: str, options: dict):
    """The field of keyword ``name``, at its default (unset: 0)."""
    value = DEFAULTS[name]
    if kind is CheckBox:
        return CheckBox(name=name, text=label, value=bool(value),
                        tooltip=tooltip)
    if kind is not ComboBox and value is None:
        value = 0
    return kind(name=name, label=label, value=value, tooltip=tooltip,
                **options)


@dataclass(frozen=True)
class Iteration:
    """What the worker sends after each iteration: its number and error,
    and, when the view asked, the live layers (built in the worker), the
    probe modes in Fourier space and the seconds that took."""

    number: int
    error: float
    layers: tuple = ()
    probe_fourier: np.ndarray | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class RunInfo:
    """What the layers of a run are made from besides the result: its
    datacube, the widget's parameters (with method and source), the
    detector pixel ``q`` (mrad) and the datacube layer's detector axes
    ``detector`` ((Qx, Qy) shape, scale)."""

    cube: DataCube
    recorded: dict
    q: float
    detector: tuple


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
    """Ptychography step (see the module docstring)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.calibration_note = wrapped_label()
        self.probe_layer = ComboBox(
            label='vacuum probe',
            choices=probe_choices(
                viewer, '(none: aperture from the semiangle)'
            ),
        )
        #: Every field by the keyword it sets (also an attribute).
        self.fields = {name: make_field(name, *spec) for name, spec in
                       (GEOMETRY | FRONT | ADVANCED).items()}
        for name, field in self.fields.items():
            setattr(self, name, field)
        gpu = gpu_available()
        self.device = ComboBox(label='device',
                               choices=['CPU', 'GPU'] if gpu else ['CPU'],
                               enabled=gpu,
                               tooltip='GPU needs cupy and a CUDA device')
        self.advanced = Folded('Advanced', [self.fields[name]
                                            for name in ADVANCED])
        self.continue_button = PushButton(
            text='Continue', enabled=False,
            tooltip='more iterations from the last result of this '
                    'datacube')
        self.result: PtychoResult | None = None
        self._result_cube = None  # the DataCube of self.result
        super().__init__(
            viewer, 'Reconstruct', 'Ptychography',
            fields=[self.calibration_note, self.probe_layer,
                    *(self.fields[name] for name in GEOMETRY | FRONT),
                    self.device, self.advanced],
        )
        self.runner.buttons.insert(1, self.continue_button)
        on_click(self.continue_button, self.continue_run, self.status)
        self.plot = ErrorPlot()
        self.add_native(self.plot, PLOT_HEIGHT)
        self._errors: list[float] = []
        self._latest: Iteration | None = None  # the newest, not drawn yet
        self._pending: Iteration | None = None  # live layers not shown yet
        self._next_live = 0.0  # when the view may ask for live layers
        self._run_info: RunInfo | None = None
        self._stop = threading.Event()
        self._want_live = threading.Event()
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
        whenever the calibration changes; Continue only for the cube of
        the last result."""
        layer = self.cube_layer.value
        calibration = None if layer is None else datacube_of(layer).calibration
        if calibration is not self._calibration:
            if self._calibration is not None:
                self._calibration.events.all.disconnect(self._refresh)
            if calibration is not None:
                calibration.events.all.connect(self._refresh)
            self._calibration = calibration
        self._refresh()
        self._enable_continue()

    def _refresh(self, *_):
        cal = self._calibration
        if cal is None:
            self.calibration_note.value = 'Open a 4D-STEM datacube first.'
            return
        if cal.C1 is not None:
            self.defocus.value = -cal.C1
        if cal.rotation_deg is not None:
            self.rotation_deg.value = cal.rotation_deg
        if cal.transpose is not None:
            self.transpose.value = cal.transpose
        self.calibration_note.value = pair_note(
            cal, 'run parallax, or enter them')

    def _enable_continue(self, *_):
        layer = self.cube_layer.value
        cube = None if layer is None else datacube_of(layer)
        self.continue_button.enabled = (
            self.result is not None and self.runner.worker is None
            and cube is self._result_cube)

    # -- running -------------------------------------------------------
    def parameters(self) -> dict:
        """The keyword arguments of ``ptychography_iter`` the fields
        set."""
        params = {name: field.value for name, field in self.fields.items()}
        for name in UNSET_AT_ZERO:
            params[name] = params[name] or None
        return params | {'device': self.device.value.lower()}

    def run(self):
        """Reconstruct: a new run."""
        self._start(None)

    def continue_run(self):
        """Continue the last result: more iterations from its object,
        probe modes and positions (its model kept)."""
        previous = self.result
        layer = self.cube_layer.value
        if previous is None or datacube_of(layer) is not self._result_cube:
            raise LayerError('Nothing to continue for this datacube: '
                             'press Reconstruct first.')
        asked = self.parameters() | {
            'vacuum_probe': self.probe_layer.value is not None}
        changes = model_changes(previous.parameters, asked)
        if changes:
            listed = ', '.join(f'{key} {before!r} → {now!r}' for key, (
                before, now) in changes.items())
            raise LayerError(
                'Continue keeps the model of the run it continues; changed '
                f'since: {listed}. Set them back, or press Reconstruct to '
                'start a new run.')
        self._start(previous)

    def _start(self, previous: PtychoResult | None):
        """Start a run (from ``previous``, or new) in a thread worker."""
        layer = self.cube_layer.value
        cube = datacube_of(layer)
        probe_layer = self.probe_layer.value
        params = self.parameters()
        info = RunInfo(cube, params | {'method': 'ptychography',
                                       'source': cube.source}
                       | phase_scale(PtychoResult),
                       cube.calibration.q_pixel_mrad,
                       (tuple(layer.data.shape[:2]),
                        tuple(layer.scale[:2])))
        stop, want_live = self._stop, self._want_live

        def job():
            vacuum = checked_probe(probe_layer, layer, cube)
            steps = ptychography_iter(cube, vacuum, continue_from=previous,
                                      stop=stop.is_set, **params)
            first = 0 if previous is None else len(previous.errors)
            while True:
                try:
                    step = next(steps)
                except StopIteration as done:
                    result, changes = adopted(cube.calibration, done.value)
                    return result, changes, build_layers(
                        result_layers(result, info))
                yield (step.iteration - first) / params['num_iter']
                yield live_iteration(step, info, want_live)

        stop.clear()
        want_live.set()
        self._next_live = 0.0
        self._latest, self._pending, self._run_info = None, None, info
        self._errors = [] if previous is None else list(previous.errors)
        self.result = previous  # a new run: none until it ends
        self.plot.show_errors(self._errors)
        self.continue_button.enabled = False
        worker = self.runner.start(job, self.show_result, self._live,
                                   stop=stop.set)
        if worker is not None:
            worker.finished.connect(self._timer.stop)
            worker.finished.connect(self._enable_continue)
            self._timer.start()

    def _live(self, iteration: Iteration):
        """A new iteration (main thread): only recorded; drawn by the
        timer."""
        self._errors.append(iteration.error)
        self._latest = iteration
        if iteration.layers:
            self._pending = iteration
            self._next_live = time.perf_counter() + max(
                PHASE_MS / 1e3, PHASE_COST_RATIO * iteration.seconds)

    def _refresh_live(self):
        """Draw the newest iteration and ask the worker for new live
        layers."""
        latest = self._latest
        if latest is None:
            return
        if len(self._errors) != len(self.plot.errors):
            self.plot.show_errors(self._errors)
        self.runner.describe(
            f'iteration {latest.number}, error {latest.error:.4g}')
        pending, self._pending = self._pending, None
        if pending is not None:
            for pair in pending.layers:
                add_or_update(self.viewer, *pair)
            info = self._run_info
            self._show_probe(pending.probe_fourier, info.q,
                             info.recorded | {
                                 'iterations_done': pending.number})
        if time.perf_counter() >= self._next_live:
            self._want_live.set()

    def show_result(self, done: tuple):
        """Show the object layers (phase on top), the probe in the
        diffraction view (hidden), the errors and how it ended."""
        result, changes, built = done
        self._timer.stop()
        self._run_info.cube.calibration.update(**changes)  # half-turn
        self._latest = self._pending = None
        self.result, self._result_cube = result, self._run_info.cube
        names = {attrs['name'] for (_, attrs, _), _ in built}
        for name in OPTIONAL:
            if name not in names and name in self.viewer.layers:
                self.viewer.layers.remove(name)
        publish(self.viewer, built, top=PHASE)
        self._show_probe(centred_fft(result.probe_modes),
                         result.parameters['calibration']['q_pixel_mrad'],
                         result.parameters)
        self.plot.show_errors(result.errors)
        done_here = result.parameters['runs'][-1]['num_iter']
        stopped = done_here < result.parameters['num_iter']
        self.runner.describe(
            f'{"Stopped" if stopped else "Done"} after '
            f'{result.parameters["iterations_done"]} iteration(s)'
            + (f', error {result.errors[-1]:.4g}' if result.errors else '')
            + f'; half-turn {result.half_turn_evidence.describe()}.'
        )

    def _show_probe(self, fourier, q: float, parameters: dict):
        """The probe modes ``fourier`` (K, N, N), centred, in the
        diffraction view (hidden): the first mode's amplitude and phase,
        and every mode's amplitude."""
        view = diffraction_view(self.viewer)
        powers = mode_powers(fourier).tolist()
        for name, image, kind in (
                (PROBE_AMPLITUDE, np.abs(fourier[0]), 'counts'),
                (PROBE_PHASE, np.angle(fourier[0]), 'phase'),
                (PROBE_MODES, np.abs(fourier), 'counts')):
            scale = (1.0,) * (image.ndim - 2) + (q, q)
            extra = ({'axis_labels': ('mode', 'kx', 'ky')}
                     if image.ndim == 3 else {})
            layer = view.show_pattern(name, image, scale, kind=kind,
                                      visible=False, **extra)
            layer.metadata[META]['parameters'] = parameters
            layer.metadata[META]['mode_powers'] = powers


def live_iteration(step, info: RunInfo, want_live) -> Iteration:
    """What the worker sends for ``step``; with the live layers (made
    here, in the worker) when the view asked for them."""
    if not want_live.is_set():
        return Iteration(step.iteration, step.error)
    want_live.clear()
    start = time.perf_counter()
    params = info.recorded | {'iterations_done': step.iteration}
    layers = [real_space_layer(step.phase, PHASE, step.pixel_size, params,
                               colormap='gray')]
    layers += slices_layer(step.slice_phases, step.pixel_size, params,
                           info.detector)
    if params['position_correction']:
        layers += position_layers(
            step.positions, info.cube.calibration.scan_step, params)
    fourier = centred_fft(step.probe_modes)
    return Iteration(step.iteration, step.error, tuple(build_layers(layers)),
                     fourier, time.perf_counter() - start)


def result_layers(result: PtychoResult, info: RunInfo) -> list[tuple]:
    """The phase, the amplitude (hidden) and, hidden, the slices
    (multislice) and the positions (when corrected) of a result."""
    params = info.recorded | result.parameters
    layers = [real_space_layer(image, name, result.pixel_size, params,
                               origin=result.origin, colormap='gray',
                               visible=visible)
              for image, name, visible in ((result.phase, PHASE, True),
                                           (result.amplitude, AMPLITUDE,
                                            False))]
    layers += slices_layer(result.slice_phases, result.pixel_size, params,
                           info.detector, result.origin)
    if any(run['position_correction'] for run in params['runs']):
        layers += position_layers(
            result.positions, params['calibration']['scan_step'], params)
    return layers


def slices_layer(slices, pixel_size: float, params: dict, detector: tuple,
                 origin=(0.0, 0.0)) -> list[tuple]:
    """The phase of each slice (S, X, Y) rad as one hidden layer (none
    for a single slice). It is (S, Qx, Qy, X, Y), broadcast (no copy)
    over the ``detector`` axes of the datacube layer ((Qx, Qy) shape and
    scale, mrad): napari aligns layers on their last axes, so this gives
    the depth (``slice_thickness`` Å per slice) its own slider while every
    axis keeps one unit (docs/design.md)."""
    if len(slices) == 1:
        return []
    shape, k_scale = detector
    data = np.broadcast_to(slices[:, None, None],
                           (len(slices), *shape, *slices.shape[1:]))
    low, high = float(slices.min()), float(slices.max())
    attrs = {
        'name': SLICES, 'visible': False, 'colormap': 'gray',
        'scale': (params['slice_thickness'], *k_scale, pixel_size,
                  pixel_size),
        'translate': (0.0, 0.0, 0.0, *origin),
        'units': ('angstrom', 'mrad', 'mrad', 'angstrom', 'angstrom'),
        'axis_labels': ('z', 'kx', 'ky', 'x', 'y'),
        'contrast_limits': (low, max(high, low + 1e-6)),
        'metadata': {META: {'parameters': params}},
    }
    return [(data, attrs, 'image')]


def position_layers(positions, scan_step: float, params: dict
                    ) -> list[tuple]:
    """The probe ``positions`` (Rx, Ry, 2) Å, scan frame, as hidden
    points, and their shifts from the scan grid as hidden vectors drawn
    :data:`CORRECTION_LENGTH` times their length."""
    shifts = position_corrections(positions, scan_step).reshape(-1, 2)
    points = positions.reshape(-1, 2)
    common = {'units': ('angstrom', 'angstrom'), 'visible': False,
              'metadata': {META: {'parameters': params}}}
    return [
        (points, common | {'name': POSITIONS, 'size': scan_step / 3,
                           'face_color': 'cyan', 'border_width': 0},
         'points'),
        (np.stack([points - shifts, shifts], axis=1),
         common | {'name': CORRECTIONS, 'length': CORRECTION_LENGTH,
                   'edge_width': scan_step / 20, 'edge_color': 'orange'},
         'vectors'),
    ]
