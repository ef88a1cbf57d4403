"""Throughput of one-pass reductions on a file larger than the RAM budget.

``python -m benchmarks.lazy_throughput [--size-gb 2] [--budget-mb 256]
[--scheduler ADDRESS] [--dir DIR] [--keep]``

1. Writes the seeded simulation (32×32 scan, 96² detector, float32) tiled
   over the scan until the file holds ``--size-gb`` GB, in HDF5 chunks of
   one scan row (fsync'd).
2. Reads it with ``read_datacube(memory_fraction=budget / RAM)``, so it
   stays on disk as a dask array.
3. Times, each from a cold page cache (the file's pages are dropped with
   ``posix_fadvise(DONTNEED)`` before every pass; other files are left
   alone):

   - the **disk floor**: one plain sequential read of every HDF5 chunk with
     h5py into one reused buffer (no dask, no arithmetic);
   - **virtual images** (BF disk + ADF annulus, one pass);
   - **centre of mass** (one pass).

   Throughput is file bytes / seconds (GB/s, 10⁹ B); each stage is also
   given as a ratio to the floor, with its peak RSS above the process's
   RSS before the pass (Linux ``VmHWM``, reset per pass).

``run()`` returns the report (a dict) and ``markdown()`` its table, for the
benchmark harness.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

SCAN, DETECTOR, SEED = (32, 32), (96, 96), 1
CENTER, R_BF, R_OUT = (48.0, 48.0), 23.0, 48.0  # px


def write_tiled(path, data, tiles) -> int:
    """``data`` (Rx, Ry, Qx, Qy) tiled ``tiles`` = (tx, ty) times over the
    scan, in HDF5 chunks of one scan row, flushed to disk; returns the
    data size in bytes."""
    rx, ry = data.shape[:2]
    row = np.tile(data, (1, tiles[1], 1, 1))
    shape = (rx * tiles[0], *row.shape[1:])
    with h5py.File(path, 'w') as h5:
        dset = h5.create_dataset('data', shape=shape, dtype=data.dtype,
                                 chunks=(1, *row.shape[1:]))
        for k in range(tiles[0]):
            dset[k * rx:(k + 1) * rx] = row
    with open(path, 'rb') as file:
        os.fsync(file.fileno())
    return int(np.prod(shape)) * data.dtype.itemsize


def tiles_for(size_bytes: float, data) -> tuple[int, int]:
    """(tx, ty), nearly square, so the tiled file holds ≥ ``size_bytes``."""
    n = int(np.ceil(size_bytes / data.nbytes))
    tx = int(np.ceil(np.sqrt(n)))
    return tx, int(np.ceil(n / tx))


def drop_from_cache(path) -> None:
    """Evict ``path``'s pages from the page cache (only this file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _memory_mb(field: str) -> float:
    with open('/proc/self/status') as status:
        line = next(x for x in status if x.startswith(field + ':'))
    return int(line.split()[1]) / 1024


@contextmanager
def _measured(path, nbytes: int, into: dict):
    """Time a cold pass over ``path``: seconds, GB/s, peak RSS above the
    RSS at the start (MB)."""
    drop_from_cache(path)
    with open('/proc/self/clear_refs', 'w') as refs:
        refs.write('5')  # reset VmHWM to the current RSS
    before = _memory_mb('VmRSS')
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    into.update(seconds=seconds, GB_per_s=nbytes / seconds / 1e9,
                peak_MB=_memory_mb('VmHWM') - before)


def sequential_read(path) -> None:
    """Every HDF5 chunk of ``/data`` once, in order, into one buffer."""
    with h5py.File(path, 'r') as h5:
        dset = h5['data']
        buffer = np.empty(dset.chunks, dset.dtype)
        for i in range(dset.shape[0]):
            dset.read_direct(buffer, np.s_[i:i + 1])


def run(size_gb: float = 2.0, budget_mb: float = 256, scheduler=None,
        folder=None, keep: bool = False) -> dict:
    """The report: file, budget, and per stage seconds, GB/s, ratio to the
    disk floor and peak RSS."""
    from napari_phase.compute.com import center_of_mass
    from napari_phase.compute.detectors import (
        annulus_mask,
        circle_mask,
        virtual_images,
    )
    from napari_phase.compute.scheduler import use_scheduler
    from napari_phase.compute.simulate import simulate
    from napari_phase.io.read import physical_memory, read_datacube

    small = simulate(scan_shape=SCAN, detector_shape=DETECTOR,
                     seed=SEED).datacube.data
    temporary = folder is None
    folder = Path(folder or tempfile.mkdtemp(prefix='lazy-throughput-'))
    path = folder / 'tiled.h5'
    tiles = tiles_for(size_gb * 1e9, small)
    start = time.perf_counter()
    nbytes = write_tiled(path, small, tiles)
    written = time.perf_counter() - start
    budget = budget_mb * 2**20
    stages = {name: {} for name in ('disk floor', 'virtual BF+ADF',
                                    'centre of mass')}
    try:
        with warnings.catch_warnings():  # no calibration in the file
            warnings.simplefilter('ignore', UserWarning)
            cube = read_datacube(path,
                                 memory_fraction=budget / physical_memory())
        masks = [circle_mask(DETECTOR, CENTER, R_BF),
                 annulus_mask(DETECTOR, CENTER, R_BF, R_OUT)]
        with _measured(path, nbytes, stages['disk floor']):
            sequential_read(path)
        with use_scheduler(scheduler):
            with _measured(path, nbytes, stages['virtual BF+ADF']):
                virtual_images(cube, masks)
            with _measured(path, nbytes, stages['centre of mass']):
                center_of_mass(cube.data)
    finally:
        if not keep:
            path.unlink()
            if temporary:
                folder.rmdir()
    floor = stages['disk floor']['GB_per_s']
    for stage in stages.values():
        stage['ratio_to_floor'] = stage['GB_per_s'] / floor
    return {
        'file': {'bytes': nbytes, 'shape': list(cube.data.shape),
                 'dtype': str(cube.data.dtype),
                 'hdf5_chunks': [1, *cube.data.shape[1:]],
                 'dask_chunks_rows': cube.data.chunks[0][0],
                 'write_seconds': written,
                 'kept': str(path) if keep else None},
        'budget_MB': budget_mb,
        'lazy': cube.is_lazy,
        'scheduler': scheduler or 'threads',
        'threads': os.cpu_count(),
        'stages': stages,
    }


def markdown(report: dict) -> str:
    """The report as a Markdown table."""
    f = report['file']
    lines = [
        f'Lazy throughput: {f["bytes"] / 1e9:.2f} GB file '
        f'({"×".join(map(str, f["shape"]))} {f["dtype"]}, HDF5 chunks of '
        f'one scan row), RAM budget {report["budget_MB"]:g} MB '
        f'(lazy: {report["lazy"]}), scheduler {report["scheduler"]}, '
        f'{report["threads"]} CPU threads, cold page cache per pass.',
        '',
        '| stage | seconds | GB/s | × disk floor | peak RSS (MB) |',
        '|---|---:|---:|---:|---:|',
    ]
    for name, s in report['stages'].items():
        lines.append(f'| {name} | {s["seconds"]:.2f} | {s["GB_per_s"]:.2f} '
                     f'| {s["ratio_to_floor"]:.2f} | {s["peak_MB"]:.0f} |')
    return '\n'.join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.lazy_throughput',
        description=__doc__.split('\n\n')[0])
    parser.add_argument('--size-gb', type=float, default=2.0,
                        help='file size (GB), > the budget (default 2)')
    parser.add_argument('--budget-mb', type=float, default=256,
                        help="the reader's RAM budget (MB, default 256)")
    parser.add_argument('--scheduler', default=None,
                        help="dask.distributed address, or 'local'")
    parser.add_argument('--dir', default=None,
                        help='folder for the file (default: a temp folder)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the file afterwards')
    parser.add_argument('--json', default=None, help='write the report here')
    args = parser.parse_args(argv)
    if args.size_gb * 1e9 <= args.budget_mb * 2**20:
        parser.error('--size-gb must exceed the budget')
    report = run(args.size_gb, args.budget_mb, args.scheduler, args.dir,
                 args.keep)
    report['markdown'] = markdown(report)
    print(report['markdown'])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == '__main__':
    main()
