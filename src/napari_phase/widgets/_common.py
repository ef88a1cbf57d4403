"""What every napari-phase widget shares: layer ↔ compute plumbing and a
generic runner (thread worker, napari progress bar, Cancel, errors shown,
never raised into napari)."""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
from magicgui.widgets import Container, Label, PushButton
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info

from ..compute.datacube import DataCube
from ..io.layers import META, real_space_layer  # noqa: F401 (for widgets)



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


def probe_of(layer):
    """The 2D vacuum probe of a layer: the one the reader keeps in its
    metadata, or a plain 2D image's data; None for other layers."""
    probe = layer.metadata.get(META, {}).get('probe')
    if probe is not None:
        return np.asarray(probe)
    if layer._type_string == 'image' and layer.ndim == 2 and not layer.rgb:
        return np.asarray(layer.data)
    return None


def datacube_choices(viewer) -> Callable:
    """ComboBox choices: the viewer's datacube layers."""
    return lambda _=None: [
        (lay.name, lay) for lay in viewer.layers if is_datacube_layer(lay)
    ]


def probe_choices(viewer, none_label: str) -> Callable:
    """ComboBox choices: ``none_label`` (None), then the viewer's
    vacuum-probe layers (see :func:`probe_of`)."""
    return lambda _=None: [(none_label, None)] + [
        (lay.name, lay) for lay in viewer.layers if probe_of(lay) is not None
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



def add_or_update(viewer, layer_tuple):
    """Add a LayerDataTuple to ``viewer``; a layer of the same name is
    updated in place (data, scale, translate, metadata)."""
    data, attrs, kind = layer_tuple
    name = attrs['name']
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer._type_string == kind:
            for key in ('scale', 'translate', 'metadata'):
                if key in attrs:
                    setattr(layer, key, attrs[key])
            layer.data = data
            return layer
        viewer.layers.remove(layer)
    return viewer._add_layer_from_data(data, attrs, kind)


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
    """Run/Cancel buttons, a status line and a napari progress bar around
    a generator job.

    ``start(job, on_result, on_yield)``: ``job`` is a generator function
    run in a thread; each yield of a float in [0, 1] advances the progress
    bar, any other yielded value goes to ``on_yield`` (main thread); its
    return value goes to ``on_result`` (main thread). Errors are shown in
    the status line and as a napari notification. With
    ``compute_settings.scheduler`` set, the job's dask computations run on
    that dask.distributed cluster (:func:`on_scheduler`).
    """

    def __init__(self, run_text: str = 'Run', description: str = ''):
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text='Cancel', enabled=False)
        self.status = Label(value='')
        # Long reports must not widen the dock.
        self.status.native.setWordWrap(True)
        super().__init__(
            widgets=[self.run_button, self.cancel_button, self.status],
            labels=False,
        )
        self.description = description or run_text
        self.worker = None
        self._bar = None
        on_click(self.cancel_button, self.cancel)

    def start(
        self,
        job: Callable[[], Generator],
        on_result: Callable,
        on_yield: Callable | None = None,
    ):
        from napari.qt.threading import create_worker

        if self.worker is not None:
            show_info(f'{self.description} is already running.')
            return None
        address = compute_settings.scheduler
        where = f' on {address}' if address else ''
        if address:
            job = on_scheduler(job, address)
        self._bar = napari_progress(total=100, desc=self.description)
        self.worker = create_worker(job, _ignore_errors=True)
        self.worker.yielded.connect(
            lambda value: self._yielded(value, on_yield)
        )
        self.worker.returned.connect(on_result)
        self.worker.errored.connect(self._errored)
        self.worker.aborted.connect(lambda: self._set_status('Cancelled.'))
        self.worker.finished.connect(self._finished)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self._set_status(f'{self.description}{where}: running…')
        self.worker.start()
        return self.worker

    def cancel(self):
        if self.worker is not None:
            self._set_status('Cancelling…')
            self.worker.quit()

    def _yielded(self, value, on_yield):
        if isinstance(value, float | int) and not isinstance(value, bool):
            self._bar.n = int(round(100 * min(max(value, 0.0), 1.0)))
            self._bar.refresh()
        elif on_yield is not None:
            on_yield(value)

    def describe(self, text: str):
        """Show ``text`` on the progress bar and the status line (main
        thread), e.g. the iteration and error of a running job."""
        if self._bar is not None:
            self._bar.set_description(f'{self.description}: {text}')
        self._set_status(text)

    def _errored(self, error: Exception):
        self._set_status(f'Error: {error}')
        show_error(f'{self.description}: {error}')

    def _finished(self):
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        if self.status.value.endswith('running…'):
            self._set_status('Done.')

    def _set_status(self, text: str):
        self.status.value = text


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
