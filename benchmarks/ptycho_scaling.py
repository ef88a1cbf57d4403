"""How ptychography's cost grows with the number of probe positions.

``python -m benchmarks.ptycho_scaling [--scans 32 64 128 256]
[--detector 128] [--iterations 2] [--lazy-from 256] [--batch 512]
[--dir DIR] [--out DIR]``

A simulated scan (the smallest size of ``--scans``, ``--detector``²
pixels, the seed's optics, C1 = ``--c1``) is tiled over the scan to each size (s × s
positions, multiples of the smallest; the object grows with them); from ``--lazy-from`` on it is
written to an HDF5 file (chunks of one scan row, in ``--dir``) and read
lazily (storage 'lazy': batches streamed, the cube never in memory).
Each size runs in a fresh process with napari-phase's defaults (free
probe, batches of ``--batch``, CPU, scipy.fft with ``os.cpu_count()``
workers): one iteration to warm up, then ``--iterations`` timed. Printed:
seconds per iteration (wall; also per 1000 positions), CPU seconds per
iteration (all threads: steadier than wall time on a shared machine), the
peak resident memory above the process's RSS before the timed iterations
(MB), the estimate napari-phase made of its memory, and the growth
exponent b of t ∝ N^b (least squares over all sizes, and between
neighbours), for both times.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

#: The worker: reconstruct one size, print a JSON line.
WORKER = """
import json, sys, time
import dask.array as da, h5py, numpy as np
from napari_phase import Calibration, DataCube, ptychography_iter
from benchmarks.ptycho_scaling import memory_mb, reset_peak

a = json.loads(sys.argv[1])
calibration = Calibration.from_dict(a['calibration'])
if a['lazy']:
    h5 = h5py.File(a['path'], 'r')
    data = da.from_array(h5['data'], chunks=(1, *h5['data'].shape[1:]))
else:
    base = np.load(a['path'])
    data = np.tile(base, (a['tiles'], a['tiles'], 1, 1))
cube = DataCube(data, calibration)
start = time.perf_counter()
steps = ptychography_iter(cube, num_iter=a['iterations'] + 1,
                          max_batch_size=a['batch'], device='cpu', seed=0,
                          **a['geometry'])
prepared = time.perf_counter() - start
next(steps)  # warm-up
base_rss = memory_mb('VmRSS')
reset_peak()
start, cpu = time.perf_counter(), time.process_time()
for _ in range(a['iterations']):
    step = next(steps)
seconds = (time.perf_counter() - start) / a['iterations']
cpu = (time.process_time() - cpu) / a['iterations']
run = steps.gi_frame.f_locals['self']
print(json.dumps({'seconds': seconds, 'cpu_seconds': cpu,
                  'preprocess': prepared,
                  'peak_mb': memory_mb('VmHWM') - base_rss,
                  'rss_mb': base_rss,
                  'estimate_mb': run.params['memory_bytes'] / 2**20,
                  'object': list(run.object_shape), 'error': step.error}))
"""


def memory_mb(field: str) -> float:
    with open('/proc/self/status') as status:
        line = next(x for x in status if x.startswith(field + ':'))
    return int(line.split()[1]) / 1024


def reset_peak() -> None:
    Path('/proc/self/clear_refs').write_text('5')


def main(argv=None) -> dict:
    args = _arguments(argv)
    from benchmarks.dataset import SEED
    from benchmarks.lazy_throughput import write_tiled
    from benchmarks.measure import publish
    from napari_phase import simulate

    side = min(args.scans)
    c1 = args.c1 or (400.0 if args.detector >= 128 else 100.0)
    sim = simulate(**(SEED | {'scan_shape': (side, side), 'C1': c1,
                              'detector_shape': (args.detector,) * 2}))
    truth = sim.truth
    geometry = {'defocus': -truth['C1'], 'rotation_deg': truth['rotation_deg'],
                'transpose': truth['transpose'], 'aberrations': {}}
    calibration = sim.datacube.calibration.to_dict()
    folder = Path(args.dir or tempfile.mkdtemp(prefix='ptycho-scaling-'))
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / 'base.npy'
    np.save(base, sim.datacube.data)
    rows = []
    for size in args.scans:
        tiles = -(-size // side)
        lazy = size >= args.lazy_from
        path = base
        if lazy:
            path = folder / f'scan-{size}.h5'
            if not path.exists():
                write_tiled(path, sim.datacube.data, (tiles, tiles))
        row = {'scan': tiles * side, 'lazy': lazy}
        row |= _run({'path': str(path), 'tiles': tiles, 'lazy': lazy,
                         'calibration': calibration, 'geometry': geometry,
                         'iterations': args.iterations, 'batch': args.batch})
        rows.append(row)
        print(_line(row), flush=True)
    report = {'date': datetime.datetime.now(datetime.timezone.utc)
              .isoformat(timespec='seconds'), 'options': vars(args),
              'threads': os.cpu_count(), 'rows': rows,
              'exponent': exponents(rows),
              'cpu_exponent': exponents(rows, 'cpu_seconds')}
    report['markdown'] = markdown(report)
    publish(Path(args.out or HERE / 'results' / 'ptycho-scaling'), report)
    return report


def _arguments(argv):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.ptycho_scaling',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--scans', type=int, nargs='+',
                        default=[32, 64, 128, 256],
                        help='scan sizes (s × s positions)')
    parser.add_argument('--detector', type=int, default=128)
    parser.add_argument('--c1', type=float, default=None,
                        help='C1 (Å; default 400, 100 below 128² pixels, '
                             'whose window is too small for 400)')
    parser.add_argument('--iterations', type=int, default=2)
    parser.add_argument('--lazy-from', type=int, default=256,
                        help='scan size from which the data are lazy')
    parser.add_argument('--batch', type=int, default=512)
    parser.add_argument('--dir', default=None,
                        help='where the tiled files are written')
    parser.add_argument('--out', default=None, help='results folder')
    return parser.parse_args(argv)


def _run(arguments: dict) -> dict:
    done = subprocess.run([sys.executable, '-c', WORKER,
                           json.dumps(arguments)], cwd=HERE.parent,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        return {'failed': done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def exponents(rows, key='seconds') -> dict:
    """b of t ∝ N^b (t = ``key``): least squares over all sizes, and
    between neighbours."""
    good = [r for r in rows if key in r]
    if len(good) < 2:
        return {}
    n = np.log([r['scan'] ** 2 for r in good])
    t = np.log([r[key] for r in good])
    pairs = {f"{a['scan']}²→{b['scan']}²": float(
        np.log(b[key] / a[key]) / np.log(b['scan'] ** 2 / a['scan'] ** 2))
        for a, b in itertools.pairwise(good)}
    return {'all': float(np.polyfit(n, t, 1)[0])} | pairs


def _line(row) -> str:
    if 'failed' in row:
        return f"{row['scan']}²: failed: {row['failed'][-300:]}"
    return (f"{row['scan']}² ({'lazy' if row['lazy'] else 'in memory'}): "
            f"{row['seconds']:.3g} s/iteration, peak +{row['peak_mb']:.0f} MB")


def markdown(report) -> str:
    opts = report['options']
    lines = [
        (f"napari-phase ptychography (defaults: free probe, batches of "
        f"{opts['batch']}), {opts['detector']}² detector, "
        f"{report['threads']} threads (scipy.fft workers); mean of "
        f"{opts['iterations']} iterations after one warm-up; "
        f"{report['date']}."),
        '',
        ('| scan | data | s/iteration | per 1000 positions | CPU s/iteration '
        '| peak MB | estimate MB | object px |'),
        '|---|---|---|---|---|---|---|---|',
    ]
    for row in report['rows']:
        if 'failed' in row:
            lines.append(f"| {row['scan']}² | failed | | | | | | |")
            continue
        per = row['seconds'] / (row['scan'] ** 2 / 1000)
        lines.append(
            f"| {row['scan']}² | {'lazy (HDF5)' if row['lazy'] else 'memory'}"
            f" | {row['seconds']:.3g} | {per:.3g} | {row['cpu_seconds']:.3g} "
            f"| {row['peak_mb']:.0f} | {row['estimate_mb']:.0f} | "
            f"{'×'.join(map(str, row['object']))} |")
    for name, key in (('wall time', 'exponent'), ('CPU time', 'cpu_exponent')):
        if report[key]:
            lines.append(f'\nGrowth exponent b (t ∝ N^b), {name}: ' + ', '.join(
                f'{k} {v:.2f}' for k, v in report[key].items()))
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
