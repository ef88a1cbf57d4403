"""The npe2 reader: 4D-STEM datacubes and vacuum probes in HDF5 files.

``get_reader`` only looks at the HDF5 structure and answers None (never
raising) for anything without 4D-STEM data, since other plugins claim
``*.h5`` too.
"""

from __future__ import annotations

import os
from pathlib import Path

from .layers import datacube_layers, probe_layers
from .read import describe, read_datacube, read_probe
from .results import results_reader


def get_reader(path):
    """A reader function for ``path``, or None when it is not ours."""
    if not isinstance(path, str | os.PathLike):
        return None
    if (reader := results_reader(path)) is not None:  # saved results
        return reader
    return {'datacube': read_datacube_layers,
            'probe': read_probe_layers}.get(describe(path))


def read_datacube_layers(path) -> list[tuple]:
    """The datacube layer of a 4D-STEM file."""
    return datacube_layers(read_datacube(path), Path(path).stem)


def read_probe_layers(path) -> list[tuple]:
    """The vacuum-probe layer of a file holding one 2D pattern."""
    probe, calibration = read_probe(path)
    return probe_layers(probe, calibration, Path(path).stem)
