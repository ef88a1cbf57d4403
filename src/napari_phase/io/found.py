"""What every format reader returns, and the error it raises.

The format modules (:mod:`.emd`, :mod:`.dectris`, :mod:`.generic`,
:mod:`.formats`) import from here and never from :mod:`.read`, which
imports them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..compute.calibration import Calibration


class ReadError(ValueError):
    """A file cannot be read as 4D-STEM data (names file, dataset, why)."""


@dataclass
class Found:
    """What a format reader found in an open file.

    ``datasets``: one array-like holding the whole cube (4D, or 5D with
    the singleton axis ``drop_axis``), or 3D frame stacks (N, Qx, Qy) to
    concatenate and reshape to ``scan_shape`` in raster order (fast axis
    Ry). ``name``: the dataset path reported in messages and in
    ``DataCube.source``. ``notes``: what the reader guessed or chose, for
    the warning the user sees.
    """

    datasets: list
    name: str
    calibration: Calibration = field(default_factory=Calibration)
    scan_shape: tuple[int, int] | None = None
    drop_axis: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Candidate:
    """A dataset that could hold the datacube, for the user to pick.

    ``name``: what to put after ``file::``; ``shape``: its shape on disk;
    ``needs_scan_shape``: True for a flat list of frames (N, Qx, Qy).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    needs_scan_shape: bool = False

    def __str__(self):
        return f'{self.name} ({len(self.shape)}D {self.shape} {self.dtype})'
