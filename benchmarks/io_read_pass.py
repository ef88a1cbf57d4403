"""What checking compressed chunks costs on a read pass.

``python -m benchmarks.io_read_pass [--frames 4096] [--detector 192]
[--repeats 5]``

Writes a DECTRIS-like acquisition (master + one data file of Poisson
counts, uint16, one frame per chunk) compressed with bitshuffle-LZ4
(32008) and with LZ4 (32004), then times, from the page cache (warm),
best of ``--repeats``:

- **h5py**: ``dataset[()]`` of the frames, HDF5's filters with no check
  (what napari-phase did before, and the floor of any decoding read);
- **checks alone**: every chunk's raw bytes read and checked
  (``CheckedDataset``), nothing decoded by HDF5;
- **read_datacube**: the whole read as users run it (checks, decoding,
  reshape to the scan), eager.

One thread; the ratio read_datacube / h5py is the cost of the check.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

FILTERS = {'bitshuffle-LZ4': hdf5plugin.Bitshuffle(cname='lz4'),
           'LZ4': hdf5plugin.LZ4()}


def write(folder: Path, frames: int, detector: int, compression) -> Path:
    sys.path.insert(0, str(Path(__file__).parents[1] / 'tests'))
    from layouts import write_arina

    rng = np.random.default_rng(0)
    data = rng.poisson(2.0, size=(frames, detector, detector)).astype(
        np.uint16)
    return write_arina(folder, data, compression=compression, side={
        'NumPixelsX': 64, 'NumPixelsY': frames // 64, 'Pixel Size': 0.1})


def best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(master: Path, repeats: int) -> dict:
    from napari_phase import read_datacube
    from napari_phase.io.checked import CheckedDataset

    with h5py.File(master, 'r') as h5:
        dset = h5['entry/data/data_000001']
        nbytes = dset.size * dset.dtype.itemsize
        dset[()]  # warm the page cache

        def checks():
            checked = CheckedDataset(dset, 'bench')
            for offset in checked._chunk_offsets(()):
                checked._check_chunk(offset)

        plain = best(lambda: dset[()], repeats)
        check = best(checks, repeats)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        full = best(lambda: read_datacube(master, lazy=False), repeats)
    return {'GB': nbytes / 1e9, 'h5py': plain, 'checks': check,
            'read_datacube': full}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=4096,
                        help='a multiple of 64 (lines of 64 positions)')
    parser.add_argument('--detector', type=int, default=192)
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args(argv)
    print('| filter | data (GB) | h5py (s) | checks alone (s) | '
          'read_datacube (s) | read_datacube / h5py |')
    print('|---|---|---|---|---|---|')
    for name, compression in FILTERS.items():
        with tempfile.TemporaryDirectory() as folder:
            master = write(Path(folder), args.frames, args.detector,
                           compression)
            r = measure(master, args.repeats)
        print(f"| {name} | {r['GB']:.2f} | {r['h5py']:.3f} | "
              f"{r['checks']:.3f} | {r['read_datacube']:.3f} | "
              f"{r['read_datacube'] / r['h5py']:.2f} |")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
