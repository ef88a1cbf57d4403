"""What every napari-phase widget shares: layer ↔ compute plumbing, the
one way to wire a button, a runner for jobs (thread worker, progress
bar, Cancel, errors and warnings shown, never raised into napari) and
:class:`StepWidget`, the frame of every workflow step."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable

import napari.layers
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    Label,
    ProgressBar,
    PushButton,
)
from napari.layers import Image, Layer
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QToolButton, QWidget

from ..compute.datacube import DataCube
from ..io.layers import META, phase_scale, real_space_layer  # noqa: F401


class LayerError(ValueError):
    """A layer is not what a widget needs (says which layer and why)."""


def datacube_of(layer) -> DataCube:
    """The :class:`DataCube` held by a datacube layer."""
    if layer is None:
        raise LayerError('No datacube layer chosen: open a 4D-STEM file or '
                         'the sample data first.')
    cube = layer.metadata.get(META, {}).get('datacube')
    if not isinstance(cube, DataCube):
        raise LayerError(
            f'Layer {layer.name!r} is not a napari-phase datacube '
            '(open the file with the napari-phase reader).'
        )
    return cube


def is_datacube_layer(layer) -> bool:
    return isinstance(layer.metadata.get(META, {}).get('datacube'), DataCube)


def has_probe(layer) -> bool:
    """A vacuum-probe layer: one the reader made (probe in metadata) or a
    plain 2D image. Reads no data."""
    if layer.metadata.get(META, {}).get('probe') is not None:
        return True
    return isinstance(layer, Image) and layer.ndim == 2 and not layer.rgb


def probe_of(layer):
    """The 2D vacuum probe of a layer (see :func:`has_probe`), as numpy;
    None for other layers. The sample's probe may still be simulated:
    call this in a job, not on the UI thread."""
    if layer is None or not has_probe(layer):
        return None
    probe = layer.metadata.get(META, {}).get('probe')
    return np.asarray(layer.data if probe is None else probe)


def checked_probe(probe_layer, cube_layer, cube):
    """The vacuum probe of ``probe_layer`` (None: no probe layer), checked
    against the detector of ``cube``; in a job (see :func:`probe_of`)."""
    probe = probe_of(probe_layer)
    if probe is not None and probe.shape != cube.detector_shape:
        raise LayerError(
            f'Vacuum probe layer {probe_layer.name!r} has shape '
            f'{probe.shape} but the detector of {cube_layer.name!r} is '
            f'{cube.detector_shape}.'
        )
    return probe


def datacube_choices(viewer) -> Callable:
    """ComboBox choices: the viewer's datacube layers."""
    return lambda _=None: [
        (lay.name, lay) for lay in viewer.layers if is_datacube_layer(lay)
    ]


def probe_choices(viewer, none_label: str) -> Callable:
    """ComboBox choices: ``none_label`` (None), then the viewer's
    vacuum-probe layers (see :func:`has_probe`)."""
    return lambda _=None: [(none_label, None)] + [
        (lay.name, lay) for lay in viewer.layers if has_probe(lay)
    ]


def follow_layers(widget: Container, viewer) -> None:
    """Refresh ``widget``'s layer choices whenever a layer is added or
    removed, until its Qt widget is destroyed."""
    events = (viewer.layers.events.inserted, viewer.layers.events.removed)
    for event in events:
        event.connect(widget.reset_choices)

    def stop(*_):
        for event in events:
            event.disconnect(widget.reset_choices)

    widget.native.destroyed.connect(stop)


def device_choice() -> ComboBox:
    """The 'device' drop-down of a step: CPU, and GPU where cupy finds
    one (disabled when there is only the CPU)."""
    from ..compute.backend import gpu_available

    gpu = gpu_available()
    return ComboBox(label='device', choices=['CPU', 'GPU'] if gpu else ['CPU'],
                    enabled=gpu, tooltip='GPU needs cupy and a CUDA device')


def wrapped_label(value: str = '') -> Label:
    """A status or report line that wraps instead of widening the dock."""
    label = Label(value=value)
    label.native.setWordWrap(True)
    return label


def fold_button(text: str, section: QWidget) -> QToolButton:
    """A tool button (an arrow and ``text``) that shows ``section`` while
    it is checked; ``section`` starts hidden (folded)."""
    button = QToolButton(text=text)
    button.setCheckable(True)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setArrowType(Qt.ArrowType.RightArrow)
    section.setVisible(False)

    def show(shown: bool):
        section.setVisible(shown)
        button.setArrowType(Qt.ArrowType.DownArrow if shown
                            else Qt.ArrowType.RightArrow)

    button.toggled.connect(show)
    return button


class Folded(Container):
    """``widgets`` (labelled fields) under a :func:`fold_button` titled
    ``text``: folded at first, the button unfolds them."""

    def __init__(self, text: str, widgets: Iterable):
        self.section = Container(widgets=widgets)
        self.section.margins = (0, 0, 0, 0)
        super().__init__(widgets=[self.section], labels=False)
        self.margins = (0, 0, 0, 0)
        self.button = fold_button(text, self.section.native)
        self.native.layout().insertWidget(0, self.button)


# --- layers ------------------------------------------------------------
def build_layers(layer_tuples: Iterable[tuple]) -> list[tuple]:
    """``(tuple, Layer)`` pairs: the napari layer of each layer-data tuple,
    built where this is called (in a job's thread: building a layer can
    take a large part of a second, e.g. vectors)."""
    return [(item, Layer.create(*item)) for item in layer_tuples]


def add_or_update(viewer, layer_tuple, layer: Layer | None = None) -> Layer:
    """Add a layer-data tuple to ``viewer`` (a napari Viewer or a
    ViewerModel), or ``layer`` built from it beforehand; a layer of the
    same name and kind is updated in place (data, scale, translate,
    metadata), keeping the user's display settings; contrast limits the
    user left at the full range follow the new data (a live phase grows
    over the iterations)."""
    data, attrs, kind = layer_tuple
    name = attrs['name']
    if name in viewer.layers:
        old = viewer.layers[name]  # isinstance: napari may hand a proxy
        if isinstance(old, getattr(napari.layers, kind.capitalize())):
            for key in ('scale', 'translate'):  # setting them redraws
                if key in attrs and not np.allclose(getattr(old, key),
                                                    attrs[key]):
                    setattr(old, key, attrs[key])
            if 'metadata' in attrs:
                old.metadata = attrs['metadata']
            follow = _contrast_untouched(old)
            old.data = data
            if follow:
                old.reset_contrast_limits()
            return old
        viewer.layers.remove(old)
    return viewer.add_layer(layer or Layer.create(data, attrs, kind))


def _contrast_untouched(layer) -> bool:
    """An image layer whose contrast limits are still its full range."""
    if not isinstance(layer, Image):
        return False
    low, high = layer.contrast_limits_range
    return np.allclose(layer.contrast_limits, (low, high),
                       atol=1e-6 * max(abs(high - low), 1e-30))


def publish(viewer, built: list[tuple], top: str | None = None,
            done: Callable | None = None) -> None:
    """Show ``built`` layers (from :func:`build_layers`) in ``viewer``,
    one per turn of the event loop so that the window never waits for
    all of them; then ``top`` (a layer name) is raised to the top and
    selected, and ``done()`` is called."""
    pending = sorted(built, key=lambda pair: pair[0][1]['name'] == top)

    def next_layer():
        if pending:
            add_or_update(viewer, *pending.pop(0))
            QTimer.singleShot(0, next_layer)
            return
        if top is not None and top in viewer.layers:
            raise_to_top(viewer, viewer.layers[top])
        if done is not None:
            done()

    next_layer()


def raise_to_top(viewer, layer) -> None:
    """Move ``layer`` to the top of ``viewer``, visible and selected."""
    layers = viewer.layers
    index = layers.index(layer)
    if index != len(layers) - 1:
        layers.move(index, len(layers))
    layer.visible = True
    layers.selection.active = layer


# --- jobs: threads, warnings, progress ------------------------------------
def start_job(job: Callable[[], Generator], *, on_yield=None,
              on_result=None, on_error=None, on_warning=None,
              on_finished=None, start: bool = True):
    """Run the generator function ``job`` in a thread worker; callbacks
    run on the main thread: ``on_yield(value)`` per yield,
    ``on_result(value)`` on return, ``on_error(exception)``,
    ``on_warning(text)`` once per distinct warning raised in the job (the
    worker catches them in its thread), ``on_finished()`` in every case.
    Returns the worker, started unless ``start`` is False (keep it first
    where the job will look for it).

    superqt's worker, not napari's: napari's would also notify errors
    and warnings itself, a warning only once per session."""
    from superqt.utils import create_worker

    worker = create_worker(job, _ignore_errors=True)
    seen = set()

    def warned(args):
        text = str(args[0])
        if text not in seen and on_warning is not None:
            seen.add(text)
            on_warning(text)

    worker.warned.connect(warned)
    for signal, callback in ((worker.yielded, on_yield),
                             (worker.returned, on_result),
                             (worker.errored, on_error),
                             (worker.finished, on_finished)):
        if callback is not None:
            signal.connect(callback)
    if start:
        worker.start()
    return worker


class ComputeSettings:
    """Where widget jobs compute lazy (dask) data: ``scheduler``, the
    address of a dask.distributed scheduler ('tcp://host:8786'; 'local'
    starts a LocalCluster for each run), or None for this machine's
    threads. One shared instance, :data:`compute_settings`, is set by the
    Dask cluster widget and read by every :class:`Runner` as a job
    starts."""

    scheduler: str | None = None


compute_settings = ComputeSettings()


def on_scheduler(job: Callable[[], Generator], address: str) -> Callable:
    """``job`` (a generator function) run inside
    ``use_scheduler(address)``: its dask computations go to that cluster
    (an unreachable one raises SchedulerError, a message)."""
    from ..compute.scheduler import use_scheduler

    def run():
        with use_scheduler(address):
            return (yield from job())

    return run


class Runner(Container):
    """Run/Cancel buttons, a progress bar and a status line around a
    generator job.

    The progress bar is the step's own, not napari's: while any napari
    progress bar runs, napari animates an "in progress" picture in its
    status bar, and where the window is drawn without a GPU (remote
    desktops, Xvfb) every frame of it redraws the window on the CPU,
    which made ptychography twice as slow as without a window
    (docs/performance.md).

    ``start(job, on_result, on_yield)``: ``job`` is a generator function
    run in a thread; each yield of a float in [0, 1] advances the progress
    bar, any other yielded value goes to ``on_yield`` (main thread); its
    return value goes to ``on_result`` (main thread). Errors are shown in
    the status line and as a napari notification, and so are the
    warnings the job raises. With ``compute_settings.scheduler`` set, the
    job's dask computations run on that dask.distributed cluster
    (:func:`on_scheduler`).
    """

    def __init__(self, run_text: str = 'Run', description: str = ''):
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text='Cancel', enabled=False)
        self.progress = ProgressBar(min=0, max=100, visible=False)
        self.status = wrapped_label()
        #: The row of buttons (a step may insert its own beside Run).
        self.buttons = Container(
            widgets=[self.run_button, self.cancel_button],
            layout='horizontal', labels=False)
        super().__init__(
            widgets=[self.buttons, self.progress, self.status],
            labels=False,
        )
        self.margins = (0, 0, 0, 0)
        self.description = description or run_text
        self.worker = None
        self.warnings: list[str] = []
        self._stop = None
        self._text = ''
        self._closed = False  # the window closed while a job ran
        self.native.destroyed.connect(lambda *_: self._close())
        on_click(self.cancel_button, self.cancel)

    def _close(self):
        self._closed = True

    def start(
        self,
        job: Callable[[], Generator],
        on_result: Callable,
        on_yield: Callable | None = None,
        stop: Callable[[], None] | None = None,
    ):
        """Start ``job`` (see the class docstring); Cancel calls ``stop()``
        when given (the job then ends itself and returns what it has),
        else it quits the worker at its next yield."""
        if self.worker is not None:
            show_info(f'{self.description} is already running.')
            return None
        address = compute_settings.scheduler
        where = f' on {address}' if address else ''
        if address:
            job = on_scheduler(job, address)
        self.warnings = []
        self._stop = stop
        self.progress.value = 0
        self.progress.visible = True
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self._set_status(f'{self.description}{where}: running…')
        self.worker = start_job(
            job, on_yield=lambda value: self._yielded(value, on_yield),
            on_result=on_result, on_error=self._errored,
            on_warning=self.warn, on_finished=self._finished, start=False)
        self.worker.aborted.connect(lambda: self._set_status('Cancelled.'))
        self.worker.start()  # the job may use self.worker (progress)
        return self.worker

    def cancel(self):
        if self.worker is None:
            return
        self.cancel_button.enabled = False
        if self._stop is not None:
            self._set_status('Stopping…')
            self._stop()
        else:
            self._set_status('Cancelling…')
            self.worker.quit()

    def _yielded(self, value, on_yield):
        if self._closed:
            return
        if isinstance(value, float | int) and not isinstance(value, bool):
            self.progress.value = round(100 * min(max(value, 0.0), 1.0))
        elif on_yield is not None:
            on_yield(value)

    def describe(self, text: str):
        """Show ``text`` in the status line (main thread), e.g. the
        iteration and error of a running job; the job's warnings stay
        under it."""
        self._set_status(text)

    def warn(self, text: str):
        """A warning of the running job: in the status line (kept under
        later messages) and as a napari notification."""
        self.warnings.append(text)
        self._set_status(self._text)
        show_warning(f'{self.description}: {text}')

    def _errored(self, error: Exception):
        self._set_status(f'Error: {error}')
        show_error(f'{self.description}: {error}')

    def _finished(self):
        self.worker = None
        if self._closed:
            return
        self.progress.visible = False
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        if self._text.endswith('running…'):
            self._set_status('Done.')

    def _set_status(self, text: str):
        self._text = text
        if not self._closed:
            self.status.value = '\n'.join([text, *self.warnings])


class StepWidget(Container):
    """The frame of a workflow step: a datacube picker, the step's own
    ``fields``, a :class:`Runner` (run button, Cancel, status line) and
    ``below`` it (reports, plots). The run button calls ``self.run()``;
    picking another datacube calls ``self.load()``; the layer choices
    follow the viewer's layers. Without ``run_text`` (a step that
    computes by itself) there is no runner, only the status line."""

    def __init__(self, viewer, run_text: str | None, description: str,
                 fields: Iterable = (), below: Iterable = ()):
        self.viewer = viewer
        self.cube_layer = ComboBox(label='datacube',
                                   choices=datacube_choices(viewer))
        if run_text is None:
            self.runner = None
            self.status = wrapped_label()
        else:
            self.runner = Runner(run_text, description)
            self.status = self.runner.status
        super().__init__(widgets=[self.cube_layer, *fields,
                                  self.runner or self.status, *below])
        if self.runner is not None:
            on_click(self.runner.run_button, self.run, self.status)
        self.cube_layer.changed.connect(guarded(self.load, self.status))
        follow_layers(self, viewer)

    def run(self):
        """The run button was pressed (steps with a runner)."""
        raise NotImplementedError

    def load(self, *_):
        """A datacube was picked (nothing to do by default)."""

    def add_native(self, widget, minimum_height: int = 0) -> None:
        """Append a Qt widget (a plot) at the bottom of the step."""
        if minimum_height:
            widget.setMinimumHeight(minimum_height)
        self.native.layout().addWidget(widget)


def on_click(button: PushButton, action: Callable,
             status: Label | None = None) -> None:
    """Run ``action()`` when ``button`` is pressed: the one way every
    napari-phase button is wired. A real press sends the button's value
    (``False``), which is dropped here; a bad-input error becomes a message
    (see :func:`guarded`)."""
    run = guarded(action, status)
    button.changed.connect(lambda *_: run())


def guarded(action: Callable, status: Label | None = None) -> Callable:
    """Wrap a button callback so that a bad-input error becomes a message
    (status line + napari notification) instead of an exception."""

    def run(*args, **kwargs):
        try:
            return action(*args, **kwargs)
        except (ValueError, KeyError, TypeError) as error:
            if status is not None:
                status.value = f'Error: {error}'
            show_error(str(error))
            return None

    return run


def pair_note(cal, how_to_set: str) -> str:
    """The calibration's (C1, rotation, transpose) and how its half-turn
    was decided, or which of them are missing and ``how_to_set`` them."""
    missing = cal.missing('C1', 'rotation_deg', 'transpose')
    if missing:
        return (f'Not in the calibration yet: {", ".join(missing)} '
                f'({how_to_set}).')
    how = f'; half-turn by {cal.half_turn}' if cal.half_turn else ''
    return (f'Calibration: C1 {cal.C1:g} Å, rotation {cal.rotation_deg:g}°, '
            f'transpose {cal.transpose}{how}.')
