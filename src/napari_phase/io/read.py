"""Read 4D-STEM datacubes and vacuum probes from HDF5 files, read-only.

Formats (tried in this order): py4DSTEM / emdfile EMD 1.0 (:mod:`.emd`),
DECTRIS NeXus master files with external data files (:mod:`.dectris`), any
HDF5 file with a 4D numeric dataset (:mod:`.generic`). ``file::/a/b`` picks
the dataset (or EMD array group) ``/a/b``.

Data larger than ``memory_fraction`` of the RAM stays on disk as a dask
array over the HDF5 chunks (the file stays open, read-only); smaller data
is loaded. Every failure is a :class:`ReadError` naming the file, the
dataset and what is wrong; files are only ever opened with mode ``'r'``.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle/LZ4 filters)
import numpy as np

from ..compute.backend import iterate_scan_rows
from ..compute.calibration import FIELD_HELP, Calibration
from ..compute.datacube import DataCube, check_4dstem_array

#: Calibration fields whose absence is reported when a file is read.
REPORTED_FIELDS = ('scan_step', 'q_pixel_mrad', 'energy', 'semiangle')
#: Target size (bytes) of one dask block of a lazily read datacube.
BLOCK_BYTES = 64 << 20


class ReadError(ValueError):
    """A file cannot be read as 4D-STEM data (names file, dataset, why)."""


@dataclass
class Found:
    """What a format reader found in an open file.

    ``datasets``: one 4D h5py dataset, or 3D frame stacks (N, Qx, Qy) to
    concatenate and reshape to ``scan_shape``. ``name``: the dataset path
    reported in messages and in ``DataCube.source``.
    """

    datasets: list
    name: str
    calibration: Calibration = field(default_factory=Calibration)
    scan_shape: tuple[int, int] | None = None


def split_path(path) -> tuple[Path, str | None]:
    """``'file.h5::/a/b'`` -> (Path('file.h5'), '/a/b')."""
    text = os.fspath(path)
    if '::' in text:
        text, inner = text.rsplit('::', 1)
        return Path(text), '/' + inner.lstrip('/')
    return Path(text), None


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
    without saying the scan shape (DECTRIS). ``lazy``: force a dask
    (True) or in-memory (False) array; by default data larger than
    ``memory_fraction`` of the RAM stays on disk.
    """
    file, inner = split_path(path)
    with _errors_named(file):
        h5 = open_hdf5(file)
        try:
            found = _find_datacube(h5, inner, scan_shape)
            source = f'{file}::{found.name}'
            data = _load(found, lazy, memory_fraction)
            cube = DataCube(data, found.calibration, source=source)
        except BaseException:
            h5.close()
            raise
        if not cube.is_lazy:  # a dask array reads the open file later
            h5.close()
    _report_non_finite(cube)
    _report_missing(found.calibration, source)
    return cube


def read_probe(path) -> tuple[np.ndarray, Calibration]:
    """Read a vacuum probe: one 2D diffraction image (Qx, Qy), float32,
    and the calibration stored with it (py4DSTEM / EMD files, or any file
    whose largest 2D numeric dataset is the probe)."""
    from . import emd, generic

    file, inner = split_path(path)
    with _errors_named(file), open_hdf5(file) as h5:
        if emd.is_emd(h5):
            dset, calibration = emd.find_probe(h5, inner)
        else:
            dset, calibration = generic.find_2d(h5, inner), Calibration()
        probe = _read_all(dset)
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
    from . import dectris, emd, generic
    from .results import MARKER

    try:
        with h5py.File(split_path(path)[0], 'r') as h5:
            if MARKER in h5.attrs:
                return None
            if emd.is_emd(h5):
                return emd.describe(h5)
            if dectris.is_master(h5):
                return 'datacube'
            return 'datacube' if generic.candidates(h5) else None
    except Exception:  # noqa: BLE001  (anything unreadable is not ours)
        return None


def open_hdf5(file: Path) -> h5py.File:
    """Open ``file`` read-only, or raise ValueError saying why not."""
    if not file.is_file():
        raise ValueError('no such file')
    if not h5py.is_hdf5(file):
        raise ValueError('not an HDF5 file (no HDF5 signature)')
    try:
        return h5py.File(file, 'r')
    except OSError as error:
        raise ValueError(
            f'cannot open the HDF5 file (truncated or corrupt?): {error}'
        ) from None


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
    from . import dectris, emd, generic

    if emd.is_emd(h5):
        found = emd.find_datacube(h5, inner)
    elif dectris.is_master(h5) and inner is None:
        found = dectris.find_datacube(h5, scan_shape)
    else:
        found = generic.find_4d(h5, inner)
    if scan_shape is not None and found.scan_shape is None:
        raise ValueError(
            f'dataset {found.name} already has a scan shape '
            f'{found.datasets[0].shape[:2]}: scan_shape={scan_shape} is '
            'only for files that store a flat list of frames'
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
        return tuple(first.shape)
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
        chunks = dask_chunks(shape, first.dtype.itemsize, first.chunks)
        return da.from_array(first, chunks=chunks, lock=True)
    frame_bytes = int(np.prod(shape[2:])) * first.dtype.itemsize
    rows = max(1, BLOCK_BYTES // (frame_bytes * shape[1]))
    stacks = [
        da.from_array(d, chunks=(min(d.shape[0], rows * shape[1]), -1, -1),
                      lock=True)
        for d in found.datasets
    ]
    frames = da.concatenate(stacks).rechunk({0: rows * shape[1]})
    return frames.reshape(shape)


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


def _read_all(dset: h5py.Dataset) -> np.ndarray:
    try:
        return dset[()]
    except (OSError, RuntimeError) as error:
        raise ValueError(
            f'dataset {dset.name}: cannot read the data (truncated or '
            f'corrupt file, or a missing compression filter?): {error}'
        ) from None


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
            stacklevel=3,
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
            stacklevel=3,
        )
