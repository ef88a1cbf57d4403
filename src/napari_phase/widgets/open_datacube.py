"""Open 4D-STEM data: the file, the dataset, the scan shape and the
calibration, chosen in napari (what ``read_datacube`` takes in Python).

For files the reader cannot settle alone: several datasets that could be
the datacube (pick another than the most plausible one), frames stored as
a flat list without a scan shape (a DECTRIS master without its side file,
a 3D stack), or a calibration the file lacks or gets wrong. Fields left
at 0 keep what the file says. The file is read in a thread; what the
reader chose or guessed, and what stays unknown, is shown below.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import napari
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    SpinBox,
)

from ..compute.calibration import FIELD_HELP
from ..io.layers import datacube_layers
from ..io.read import candidates, read_datacube
from ._common import Runner, add_or_update, guarded, on_click

AUTOMATIC = 'most plausible (automatic)'
LOAD = {'by size (large files stay on disk)': None, 'into memory': False,
        'lazily (dask, on disk)': True}
#: Calibration fields the widget sets: (field, label, unit factor).
FIELDS = (
    ('scan_step', 'scan step (Å)', 1.0),
    ('q_pixel_mrad', 'detector pixel (mrad)', 1.0),
    ('energy', 'beam energy (kV)', 1e3),
    ('semiangle', 'convergence semiangle (mrad)', 1.0),
)


class OpenDatacube(Container):
    """Dockable "Open 4D-STEM data"."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.viewer = viewer
        self.file = FileEdit(label='file', mode='r')
        self.dataset = ComboBox(label='dataset', choices=self._datasets)
        self.scan_rx = SpinBox(label='scan lines Rx (0: from file)', min=0,
                               max=1_000_000)
        self.scan_ry = SpinBox(label='positions per line Ry', min=0,
                               max=1_000_000)
        self.fields = {
            name: FloatSpinBox(label=f'{label} (0: from file)', min=0.0,
                               max=1e6, step=0.001)
            for name, label, _ in FIELDS
        }
        self.load = ComboBox(label='load', choices=list(LOAD))
        self.runner = Runner('Open', 'Open 4D-STEM data')
        self.report = Label(value='')
        self.report.native.setWordWrap(True)
        super().__init__(widgets=[
            self.file, self.dataset, self.scan_rx, self.scan_ry,
            *self.fields.values(), self.load, self.runner, self.report,
        ])
        self.cube = None
        self.file.changed.connect(
            guarded(lambda *_: self.dataset.reset_choices(), self.report))
        on_click(self.runner.run_button, self.open, self.runner.status)

    def _datasets(self, _=None):
        """ComboBox choices: automatic, then the file's candidates."""
        path = Path(self.file.value)
        found = candidates(path) if path.is_file() else []
        return [(AUTOMATIC, None)] + [(str(c), c.name) for c in found]

    def request(self) -> dict:
        """What the widget asks ``read_datacube`` for: ``path``,
        ``scan_shape``, ``lazy``, and the calibration ``overrides``."""
        path = Path(self.file.value)
        if not path.is_file():
            raise ValueError(f'{path}: no such file')
        shape = (self.scan_rx.value, self.scan_ry.value)
        if (0 in shape) != (shape == (0, 0)):
            raise ValueError('give both scan sizes (lines Rx and positions '
                             'per line Ry), or neither')
        dataset = self.dataset.value
        return {
            'path': f'{path}::{dataset}' if dataset else str(path),
            'scan_shape': None if 0 in shape else shape,
            'lazy': LOAD[self.load.value],
            'overrides': {
                name: self.fields[name].value * factor
                for name, _, factor in FIELDS if self.fields[name].value > 0
            },
        }

    def open(self):
        """Read the file in a thread worker; the layer comes on return."""
        request = self.request()

        def job():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                cube = read_datacube(request['path'],
                                     scan_shape=request['scan_shape'],
                                     lazy=request['lazy'])
            for name, value in request['overrides'].items():
                setattr(cube.calibration, name, value)
            yield 1.0
            return cube, [str(w.message) for w in caught]

        self.runner.start(job, self.show)

    def show(self, result):
        """Add (or update) the datacube layer and report what was read."""
        cube, messages = result
        self.cube = cube
        name = Path(cube.source.split('::')[0]).stem
        add_or_update(self.viewer, datacube_layers(cube, name)[0])
        notes = [m for m in messages if 'does not give the' not in m]
        unknown = cube.calibration.missing(*(f for f, _, _ in FIELDS))
        lines = [f'{cube.source}: scan {cube.scan_shape}, detector '
                 f'{cube.detector_shape}' + (' (lazy)' if cube.is_lazy
                                             else '')]
        lines += notes
        if unknown:
            lines.append('unknown: ' + ', '.join(FIELD_HELP[f]
                                                 for f in unknown))
        self.report.value = '\n'.join(lines)
