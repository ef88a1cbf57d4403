"""The npe2 readers: 4D-STEM datacubes and vacuum probes.

``get_reader`` (HDF5: ``*.h5``, ``*.emd``...) only looks at the HDF5
structure and answers None (never raising) for anything without 4D-STEM
data, since other plugins claim ``*.h5`` too. ``get_formats_reader``
(Merlin, EMPAD, DE, Gatan, FEI, NanoMegas files) answers None unless the
optional extra ``formats`` (rosettasciio) is installed and the file looks
like 4D-STEM data: npe2 manifests are static, so the claim is made here.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import formats
from .layers import datacube_layers, probe_layers
from .read import describe, read_datacube, read_probe
from .results import results_reader


def get_reader(path):
    """A reader function for an HDF5 ``path``, or None when not ours."""
    if not isinstance(path, str | os.PathLike):
        return None
    if (reader := results_reader(path)) is not None:  # saved results
        return reader
    return {'datacube': read_datacube_layers,
            'probe': read_probe_layers}.get(describe(path))


def get_formats_reader(path):
    """A reader function for a detector file read through rosettasciio,
    or None (no rosettasciio, or not 4D-STEM data)."""
    if not isinstance(path, str | os.PathLike):
        return None
    return read_datacube_layers if formats.can_read(path) else None


def read_datacube_layers(path) -> list[tuple]:
    """The datacube layer of a 4D-STEM file."""
    return datacube_layers(read_datacube(path), Path(path).stem)


def read_probe_layers(path) -> list[tuple]:
    """The vacuum-probe layer of a file holding one 2D pattern."""
    probe, calibration = read_probe(path)
    return probe_layers(probe, calibration, Path(path).stem)
