"""Read 4D-STEM datacubes and vacuum probes, read-only.

HDF5 formats (tried in this order): py4DSTEM / emdfile EMD 1.0
(:mod:`.emd`), DECTRIS NeXus master files with external data files
(:mod:`.dectris`), any HDF5 file with a dataset that looks like a
datacube, with EMD 0.x calibrations (:mod:`.generic`, :mod:`.emd0`).
``file::/a/b`` picks the dataset (or EMD array group) ``/a/b``. Detector
formats (Merlin .mib, EMPAD, Direct Electron .mrc, Gatan .dm4, FEI .ser,
NanoMegas .blo) are read through rosettasciio when the optional extra
``formats`` is installed (:mod:`.formats`).

Data larger than ``memory_fraction`` of the RAM stays on disk as a dask
array (the file stays open, read-only); smaller data is loaded.
Compressed chunks are checked before they are decoded (:mod:`.checked`).
Every failure is a :class:`ReadError` naming the file, the dataset and
what is wrong; files are only ever opened read-only.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..compute.backend import is_dask, iterate_scan_rows
from ..compute.calibration import FIELD_HELP, Calibration
from ..compute.datacube import DataCube, check_4dstem_array
from . import dectris, emd, formats, generic
from .checked import CheckedDataset
from .found import Candidate, Found, ReadError
from .hdf5 import open_hdf5, split_path, where

__all__ = ['ReadError', 'candidates', 'describe', 'read_datacube',
           'read_probe', 'split_path']

#: Calibration fields whose absence is reported when a file is read.
REPORTED_FIELDS = ('scan_step', 'q_pixel_mrad', 'energy', 'semiangle')
#: Target size (bytes) of one dask block of a lazily read datacube.
BLOCK_BYTES = 64 << 20


def read_datacube(
    path,
    *,
    scan_shape: tuple[int, int] | None = None,
    lazy: bool | None = None,
    memory_fraction: float = 0.25,
) -> DataCube:
    """Read a 4D-STEM datacube (Rx, Ry, Qx, Qy) and its calibration.

    ``path``: a file, or ``file::/dataset`` to choose a dataset.
    ``scan_shape``: (Rx, Ry) for files that store frames as a flat list
    without saying the scan shape. ``lazy``: force a dask (True) or
    in-memory (False) array; by default data larger than
    ``memory_fraction`` of the RAM stays on disk.
    """
    file, inner = split_path(path)
    if formats.handles(file):
        with _errors_named(file):
            found = formats.find_datacube(file, scan_shape)
            cube = DataCube(_load(found, lazy, memory_fraction),
                            found.calibration, source=str(file))
        return _reported(cube, found)
    with _errors_named(file):
        h5 = open_hdf5(file)
        try:
            found = _find_datacube(h5, inner, scan_shape)
            data = _load(found, lazy, memory_fraction)
            cube = DataCube(data, found.calibration,
                            source=f'{file}::{found.name}')
        except BaseException:
            h5.close()
            raise
        if not cube.is_lazy:  # a dask array reads the open file later
            h5.close()
    return _reported(cube, found)


def candidates(path) -> list[Candidate]:
    """The datasets of ``path`` that could be its datacube, the one
    :func:`read_datacube` reads first (for the user to pick another)."""
    file, _ = split_path(path)
    if formats.handles(file):
        return []
    with _errors_named(file), open_hdf5(file) as h5:
        if emd.is_emd(h5):
            return emd.candidates(h5)
        if dectris.is_master(h5):
            return [dectris.candidate(h5)]
        return generic.candidates(h5)


def read_probe(path) -> tuple[np.ndarray, Calibration]:
    """Read a vacuum probe: one 2D diffraction image (Qx, Qy), float32,
    and the calibration stored with it (py4DSTEM / EMD files, or any file
    whose largest 2D numeric dataset is the probe)."""
    file, inner = split_path(path)
    with _errors_named(file), open_hdf5(file) as h5:
        if emd.is_emd(h5):
            dset, calibration = emd.find_probe(h5, inner)
        else:
            dset, calibration = generic.find_2d(h5, inner), Calibration()
        probe = _read_all(CheckedDataset(dset, where(h5, dset.name)))
        if emd.is_emd(h5) and emd.is_stack(dset.parent):  # py4DSTEM Probe
            probe = probe[emd.probe_slice(dset.parent)]
        _check_2d_pattern(probe, dset.name)
    _report_missing(calibration, f'{file}::{dset.name}', ('q_pixel_mrad',))
    return probe.astype(np.float32), calibration


def _check_2d_pattern(image, name: str) -> None:
    """Raise ValueError unless ``image`` is one non-empty real 2D image."""
    if image.ndim != 2 or 0 in image.shape:
        raise ValueError(
            f'dataset {name}: a vacuum probe is one 2D pattern, '
            f'got shape {image.shape}'
        )
    if image.dtype.kind not in 'uif':
        raise ValueError(
            f'dataset {name}: dtype {image.dtype} is not a real number type'
        )


def describe(path) -> str | None:
    """'datacube', 'probe' or None: what napari-phase can read in ``path``.

    Cheap (reads the HDF5 structure, never the data) and never raises:
    for the npe2 reader check.
    """
    from .results import MARKER

    try:
        with h5py.File(split_path(path)[0], 'r') as h5:
            if MARKER in h5.attrs:
                return None
            if emd.is_emd(h5):
                return emd.describe(h5)
            if dectris.is_master(h5):
                return 'datacube'
            cubes = [c for c in generic.candidates(h5)
                     if not c.needs_scan_shape]  # frames need the widget
            return 'datacube' if cubes else None
    except Exception:  # noqa: BLE001  (anything unreadable is not ours)
        return None


@contextmanager
def _errors_named(file: Path):
    """Turn any failure into one ReadError that starts with the file."""
    try:
        yield
    except ReadError:
        raise
    except (ValueError, OSError, KeyError, RuntimeError) as error:
        raise ReadError(f'{file}: {error}') from error


def _find_datacube(h5: h5py.File, inner, scan_shape) -> Found:
    if emd.is_emd(h5):
        found = emd.find_datacube(h5, inner)
    elif dectris.is_master(h5) and inner in (None, dectris.DATA):
        found = dectris.find_datacube(h5, scan_shape)
    else:
        found = generic.find_4d(h5, inner, scan_shape)
    if scan_shape is not None and found.scan_shape is None:
        raise ValueError(
            f'dataset {found.name} already has a scan shape '
            f'{_cube_shape(found)[:2]}: scan_shape={scan_shape} is only for '
            'files that store a flat list of frames'
        )
    return found


def _load(found: Found, lazy: bool | None, memory_fraction: float):
    """numpy or dask (Rx, Ry, Qx, Qy) array of what was found."""
    first = found.datasets[0]
    shape = _cube_shape(found)
    check_4dstem_array(_Spec(shape, first.dtype), f'dataset {found.name}')
    nbytes = int(np.prod(shape)) * first.dtype.itemsize
    if lazy is None:
        lazy = nbytes > memory_fraction * physical_memory()
    if lazy:
        return _dask_array(found, shape)
    parts = [_read_all(d) for d in found.datasets]
    data = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return data.reshape(shape)


@dataclass
class _Spec:
    shape: tuple
    dtype: np.dtype


def _cube_shape(found: Found) -> tuple[int, ...]:
    first = found.datasets[0]
    if found.scan_shape is None:
        shape = list(first.shape)
        if found.drop_axis is not None:
            del shape[found.drop_axis]
        return tuple(shape)
    frames = sum(d.shape[0] for d in found.datasets)
    rx, ry = found.scan_shape
    if rx * ry != frames:
        raise ValueError(
            f'dataset {found.name}: {frames} frames do not fill a scan of '
            f'{rx}×{ry} = {rx * ry} positions'
        )
    return (rx, ry, *first.shape[1:])


def _dask_array(found: Found, shape):
    import dask.array as da

    first = found.datasets[0]
    if found.scan_shape is None:
        if is_dask(first):  # rosettasciio: whole patterns per block
            data = first.rechunk(dask_chunks(shape, first.dtype.itemsize,
                                             None))
        else:
            cube_chunks = dask_chunks(shape, first.dtype.itemsize,
                                      _cube_chunks(first, found.drop_axis))
            chunks = list(cube_chunks)
            if found.drop_axis is not None:
                chunks.insert(found.drop_axis, 1)
            data = da.from_array(first, chunks=tuple(chunks), lock=True)
        if found.drop_axis is not None:
            data = data.squeeze(axis=found.drop_axis)
        return data
    frame_bytes = int(np.prod(shape[2:])) * first.dtype.itemsize
    rows = max(1, BLOCK_BYTES // (frame_bytes * shape[1]))
    stacks = [
        d if is_dask(d) else da.from_array(
            d, chunks=(min(d.shape[0], rows * shape[1]), -1, -1), lock=True)
        for d in found.datasets
    ]
    frames = da.concatenate(stacks).rechunk({0: rows * shape[1], 1: -1,
                                             2: -1})
    return frames.reshape(shape)


def _cube_chunks(dset, drop_axis):
    """HDF5 chunks of a cube dataset, without the dropped singleton."""
    chunks = getattr(dset, 'chunks', None)
    if chunks is None or drop_axis is None:
        return chunks
    return tuple(c for i, c in enumerate(chunks) if i != drop_axis)


def dask_chunks(shape, itemsize: int, hdf5_chunks, budget: int = BLOCK_BYTES):
    """Dask chunks for a (Rx, Ry, Qx, Qy) dataset: whole patterns, scan
    blocks that are whole multiples of the HDF5 chunks along the scan
    axes (whole rows when they fit), about ``budget`` bytes each."""
    cx, cy = hdf5_chunks[:2] if hdf5_chunks else (1, shape[1])
    pattern = int(np.prod(shape[2:])) * itemsize
    if pattern * shape[1] * cx <= budget:
        ny = shape[1]
    else:
        ny = max(cy, budget // (pattern * cx) // cy * cy)
    nx = max(cx, budget // (pattern * ny) // cx * cx)
    return (min(nx, shape[0]), min(ny, shape[1]), shape[2], shape[3])


def physical_memory() -> int:
    """Installed RAM in bytes."""
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def _read_all(dset) -> np.ndarray:
    """All of a dataset in memory (a dask array is computed)."""
    if is_dask(dset):
        return np.asarray(dset.compute())
    try:
        return np.asarray(dset[()])
    except (OSError, RuntimeError) as error:
        raise ValueError(
            f'dataset {dset.name}: cannot read the data (truncated or '
            f'corrupt file, or a missing compression filter?): {error}'
        ) from None


def _reported(cube: DataCube, found: Found) -> DataCube:
    """``cube``, after warning what the reader guessed or chose, about
    NaN patterns and about missing calibration."""
    for note in found.notes:
        warnings.warn(f'{cube.source}: {note}', UserWarning, stacklevel=3)
    _report_non_finite(cube)
    _report_missing(found.calibration, cube.source)
    return cube


def _report_non_finite(cube: DataCube) -> None:
    """Warn with the number of patterns holding NaN or inf (in memory
    only: a lazy cube is not read just to count them)."""
    if cube.is_lazy or cube.data.dtype.kind != 'f':
        return
    bad = sum(
        int(np.count_nonzero(~np.isfinite(block).all(axis=(2, 3))))
        for _, block in iterate_scan_rows(cube.data)
    )
    if bad:
        warnings.warn(
            f'{cube.source}: {bad} of {np.prod(cube.scan_shape)} diffraction '
            'patterns contain NaN or inf values',
            UserWarning,
            stacklevel=4,
        )


def _report_missing(
    calibration: Calibration, source: str, names=REPORTED_FIELDS
) -> None:
    absent = calibration.missing(*names)
    if absent:
        what = ', '.join(FIELD_HELP[n] for n in absent)
        warnings.warn(
            f'{source}: the file does not give the {what}; left unknown '
            '(set them in the calibration widget or Calibration).',
            UserWarning,
            stacklevel=4,
        )
