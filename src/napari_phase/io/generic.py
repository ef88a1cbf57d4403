"""Generic HDF5: the dataset that looks like a 4D-STEM datacube.

A datacube is 4D (Rx, Ry, Qx, Qy), 5D with a singleton axis among the
first three (fpd/Merlin files: (Ry, Rx, 1, Qy, Qx)), or a flat list of
frames (N, Qx, Qy) that needs a scan shape. Its detector axes (the last
two) are diffraction patterns: a dataset whose shorter detector axis has
fewer than :data:`MIN_PATTERN` pixels is a parameter table (thresholds,
DACs, exposures per position), never a datacube. Among the candidates the
reader prefers detector axes of tens of pixels (:data:`PLAUSIBLE_PATTERN`),
then a 4D/5D cube over frames, then the largest; the others are named in
the warning, and ``file::/path`` (or the "Open 4D-STEM data" widget) picks
another one. EMD 0.x files (Prismatic, old py4DSTEM, fpd) give the
calibration in dim vectors beside the data (:mod:`.emd0`).
"""

from __future__ import annotations

import h5py
import numpy as np

from . import emd0
from .checked import CheckedDataset
from .found import Candidate, Found
from .hdf5 import BrokenLink, dataset_at, datasets, where

#: Shorter detector axis (pixels) below which a dataset is a table.
MIN_PATTERN = 4
#: Detector axes of tens of pixels: what diffraction patterns look like.
PLAUSIBLE_PATTERN = 16


def cube_layout(shape) -> tuple[bool, int | None] | None:
    """(is a frame list, singleton axis to drop) when ``shape`` can be a
    datacube, else None."""
    if len(shape) < 3 or min(shape[-2:]) < MIN_PATTERN:
        return None
    if len(shape) == 3:
        return True, None
    if len(shape) == 4:
        return False, None
    if len(shape) == 5 and 1 in shape[:3]:
        return False, shape[:3].index(1)
    return None


def candidates(h5: h5py.File) -> list[Candidate]:
    """Every dataset that could be the datacube, most plausible first."""
    found = [
        (path, d) for path, d in datasets(h5)
        if isinstance(d, h5py.Dataset) and _is_numeric(d)
        and cube_layout(d.shape) is not None
    ]
    found.sort(key=lambda item: _plausibility(item[1]), reverse=True)
    return [_candidate(path, d) for path, d in found]


def find_4d(h5: h5py.File, inner: str | None, scan_shape=None) -> Found:
    """The datacube: the dataset at ``inner``, or the most plausible."""
    if inner is not None:
        path, notes = inner, []
    else:
        path, notes = _choose(h5)
    dset = dataset_at(h5, path)
    layout = cube_layout(dset.shape) if _is_numeric(dset) else None
    if layout is None:
        _explain(dset, path)
    frames, drop_axis = layout
    if frames and scan_shape is None:
        raise ValueError(needs_scan_shape(path, dset.shape))
    return Found(
        [CheckedDataset(dset, where(h5, path))], path,
        emd0.calibration_of(dset, drop_axis),
        scan_shape if frames else None, drop_axis, notes,
    )


def needs_scan_shape(name: str, shape) -> str:
    """The error for frames (N, Qx, Qy) without a scan shape."""
    return (
        f'dataset {name}: {shape[0]} frames of {tuple(shape[1:])} pixels, '
        'and the file does not say the scan shape: give it (in napari: '
        'Open 4D-STEM data in Plugins > napari-phase; in Python: '
        f'read_datacube(path, scan_shape=(Rx, Ry)) with Rx·Ry = {shape[0]})'
    )


def find_2d(h5: h5py.File, inner: str | None) -> h5py.Dataset:
    """A vacuum probe dataset: ``inner``, or the largest 2D numeric one."""
    if inner is not None:
        return dataset_at(h5, inner)
    items = list(datasets(h5))
    found = [d for _, d in items if isinstance(d, h5py.Dataset)]
    good = [d for d in found if d.ndim == 2 and _is_numeric(d)]
    if not good:
        seen = ', '.join(_summary(d) for d in found[:6]) or 'no datasets'
        raise ValueError('no 2D numeric dataset (2D probe image) in the '
                         f'file; found: {seen}' + _broken(items))
    return max(good, key=lambda d: d.size * d.dtype.itemsize)


def _choose(h5: h5py.File) -> tuple[str, list[str]]:
    """The most plausible candidate's path, and the note naming the
    others (when there are others)."""
    found = candidates(h5)
    if not found:
        raise ValueError(_nothing_found(h5))
    chosen, others = found[0], found[1:]
    if not others:
        return chosen.name, []
    note = (
        f'reading {chosen} as the datacube (the most plausible: detector '
        'axes of tens of pixels, a 4D/5D cube before a list of frames, then '
        f'the largest); other candidates: {", ".join(map(str, others))}. '
        'Pick another with "Open 4D-STEM data" in napari or "file::/path".'
    )
    return chosen.name, [note]


def _plausibility(dset):
    frames, _ = cube_layout(dset.shape)
    detector = min(dset.shape[-2:])
    return (detector >= PLAUSIBLE_PATTERN, not frames,
            dset.size * dset.dtype.itemsize)


def _candidate(path: str, dset) -> Candidate:
    frames, _ = cube_layout(dset.shape)
    return Candidate(path, tuple(dset.shape), str(np.dtype(dset.dtype)),
                     frames)


def _is_numeric(dset) -> bool:
    return dset.dtype.kind in 'uif' and dset.size > 0


def _explain(dset, path: str):
    """Raise ValueError saying why the chosen dataset is no datacube."""
    shape = dset.shape
    if dset.dtype.kind not in 'uif':
        problem = f'dtype {dset.dtype} is not a real number type'
    elif dset.size == 0:
        problem = f'an axis is empty (shape {shape})'
    else:
        problem = (
            f'shape {shape} is not a 4D-STEM datacube (4D, 5D with a '
            'singleton axis, or 3D frames, with detector axes of '
            f'{MIN_PATTERN} pixels or more)'
        )
    raise ValueError(f'dataset {path}: {problem}')


def _nothing_found(h5: h5py.File) -> str:
    """Why no dataset fits: the closest datasets and broken links."""
    items = list(datasets(h5))
    found = [(p, d) for p, d in items if isinstance(d, h5py.Dataset)]
    for path, d in found:
        if len(d.shape) == 4 and not _is_numeric(d):
            problem = (f'dtype {d.dtype}, not a real number type'
                       if d.dtype.kind not in 'uif'
                       else f'an empty axis (shape {d.shape})')
            return f'dataset {path}: 4D but has {problem}'
    seen = ', '.join(_summary(d, p) for p, d in found[:6]) or 'no datasets'
    return (
        'no dataset looks like a 4D-STEM datacube (4D, 5D with a singleton '
        'axis, or 3D frames, with detector axes of '
        f'{MIN_PATTERN} pixels or more); found: {seen}' + _broken(items)
    )


def _broken(items) -> str:
    broken = [str(d) for _, d in items if isinstance(d, BrokenLink)]
    return '; broken links: ' + '; '.join(broken) if broken else ''


def _summary(d: h5py.Dataset, path: str | None = None) -> str:
    return f'{path or d.name} ({d.ndim}D {d.shape} {np.dtype(d.dtype)})'
