"""Dask cluster: where the widgets compute lazy (dask) data.

One field, "Compute on": the address of a dask.distributed scheduler
('tcp://host:8786', or 'local' for a LocalCluster started on this machine
for each run); empty means this machine's threads. Every widget job
(DPC, parallax, ptychography, virtual detectors, probe fit) started
afterwards computes its dask work there (``_common.compute_settings``,
read by ``Runner.start``); data held in memory is computed here either
way. An unreachable scheduler is reported in the running widget's status.
"""

from __future__ import annotations

import napari
from magicgui.widgets import Container, Label, LineEdit

from ._common import compute_settings

HINT = ('Lazy (dask) data is computed here. Empty: this machine (threads); '
        "'local': a cluster on this machine.")


class ClusterWidget(Container):
    """The "Compute on" setting shared by every napari-phase widget."""

    def __init__(self, viewer: napari.viewer.Viewer | None = None):
        self.address = LineEdit(label='Compute on',
                                value=compute_settings.scheduler or '')
        self.address.native.setPlaceholderText(
            'this machine, or tcp://host:8786')
        self.status = Label(value='')
        self.status.native.setWordWrap(True)
        super().__init__(widgets=[self.address, self.status])
        self.address.changed.connect(self._set)
        self._set()

    def _set(self, *_):
        address = self.address.value.strip() or None
        compute_settings.scheduler = address
        self.status.value = (
            f'Widgets compute lazy data on the dask scheduler {address}.'
            if address else HINT
        )
