"""Direct ptychography and live aberration tuning on the seed-sized set.

``python -m benchmarks.direct [--quick] [--repeats N] [--updates N]
[--device cpu|gpu|both] [--out DIR]``

On the benchmark dataset (``dataset.py``: 48×48 scan × 192² detector, C1 =
+400 Å, θ = −15°, seed 0; ``--quick``: 16×16 × 64²), in one process, with
the simulator's geometry in the calibration (rotation, transpose, C1,
probe centre and radius: the times do not include a parallax fit):

- **floors** (``floors.py``): one read pass over the cube, and the FFTs
  the preparation cannot avoid: one complex FFT of the padded scan per
  bright-field pixel (ours are real FFTs, about half of that);
- **prepare**: ``prepare_direct`` with the vacuum probe (mean pattern,
  bright field, the spectra of every bright-field pixel), once per
  repeat;
- **update**: ``DirectPhase.phase`` for a new C1 (SSB and OBF), a new
  astigmatism, a new rotation (which also recomputes the side-band
  weights): the median of ``--updates`` calls with changing values;
- **full SSB**: ``direct_ptychography`` (prepare + one phase);
- the **parallax quick phase** (prepare, update) and a C1 **refinement**;
- **quality**: each image's registered correlation with the truth
  (``compute/score.py``, as in the main table), DPC's for reference, and
  SSB/OBF's scale: the slope against the truth seen through the method's
  transfer (``DirectResult.apply_transfer``: band-limited to the scan,
  then filtered), away from the scan's edges (1 = radians).

CPU threads: ``backend.FFT_WORKERS`` (all cores). ``--device gpu`` runs
the same on cupy where a GPU is lent (``both``: CPU then GPU; a missing
GPU is reported, not faked). Results: a table on stdout, ``results.json``
and ``results.md`` in ``benchmarks/results/direct-<timestamp>/``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
from pathlib import Path
from statistics import median

import numpy as np

from benchmarks import dataset, floors
from benchmarks.measure import Recorder, publish

HERE = Path(__file__).resolve().parent


def main(argv=None) -> dict:
    args = _arguments(argv)
    from napari_phase.compute.backend import FFT_WORKERS, gpu_available

    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = Path(args.out or HERE / 'results'
               / f'direct-{stamp:%Y%m%d-%H%M%S}')
    data = dataset.prepare(HERE / '.build',
                           dataset.QUICK if args.quick else dataset.SEED)
    cube = _calibrated_cube(data)
    probe = np.load(data['files']['probe_npy'])
    truth = np.load(data['files']['truth'])
    devices = ['cpu', 'gpu'] if args.device == 'both' else [args.device]
    report = {
        'date': stamp.isoformat(timespec='seconds'),
        'machine': {'cpus': os.cpu_count(), 'fft_workers': FFT_WORKERS,
                    'platform': platform.platform(),
                    'gpu': gpu_available()},
        'dataset': data['parameters'],
        'floors': {'read': floors.read_floor(cube.data)},
        'devices': {},
    }
    for device in devices:
        if device == 'gpu' and not gpu_available():
            report['devices'][device] = {'error': 'no GPU lent'}
            continue
        report['devices'][device] = run(cube, probe, truth, data, device,
                                        args)
    n_bf = next((d['bright_field_pixels'] for d in report['devices'].values()
                 if 'bright_field_pixels' in d), None)
    if n_bf:
        fft = floors.fft_floor(_padded(cube), n_bf, batch=256)
        report['floors']['fft'] = fft | {
            'pixels': n_bf, 'seconds': fft['seconds_per_fft'] * n_bf}
    report['markdown'] = markdown(report)
    publish(out, report)
    return report


def run(cube, probe, truth, data, device, args) -> dict:
    """Every stage on ``device``; seconds, peaks and quality."""
    from napari_phase import (
        direct_ptychography,
        dpc,
        prepare_direct,
        prepare_parallax_phase,
        refine_aberrations,
    )

    rec = Recorder()
    start = {'C10': data['truth']['C1']}
    rotation = data['truth']['rotation_deg']
    prepared = rec.run('prepare', lambda: prepare_direct(
        cube, vacuum_probe=probe, device=device), args.repeats)
    c1 = start['C10'] * np.linspace(0.9, 1.1, args.updates)
    for method in ('ssb', 'obf'):
        prepared.phase(method=method)  # side bands of this geometry
        _updates(rec, f'update: new C1 ({method.upper()})',
                 [lambda v=v, m=method: prepared.phase({'C10': v}, method=m)
                  for v in c1])
    _updates(rec, 'update: new C12/φ12 (SSB)', [
        lambda a=a: prepared.phase(start | {'C12': 20.0, 'phi12': a})
        for a in np.linspace(0, 90, args.updates)])
    _updates(rec, 'update: new rotation (SSB)', [
        lambda r=r: prepared.phase(rotation_deg=r)
        for r in rotation + np.linspace(-2, 2, max(3, args.updates // 4))])
    ssb = rec.run('full SSB (direct_ptychography)', lambda: (
        direct_ptychography(cube, vacuum_probe=probe, device=device)),
        args.repeats)
    quick = rec.run('parallax quick: prepare',
                    lambda: prepare_parallax_phase(cube, device=device),
                    args.repeats)
    _updates(rec, 'parallax quick: update (new C1)',
             [lambda v=v: quick.phase({'C10': v}) for v in c1])
    refined = rec.run('refine C1 (SSB, from 0.7×C1)', lambda: (
        refine_aberrations(prepared, aberrations={'C10': 0.7 * c1[0] / 0.9})))
    images = {
        'SSB': (ssb.phase, ssb),
        'OBF': (prepared.result(method='obf').phase,
                prepared.result(method='obf')),
        'parallax quick': (quick.phase(), None),
        'DPC (reference)': (dpc(cube).phase, None),
    }
    return {
        'stages': rec.stages,
        'bright_field_pixels': len(prepared.bright_field.pixels),
        'refined_C1': refined.aberrations['C10'] if refined else None,
        'refine_evaluations': refined.evaluations if refined else None,
        'quality': {name: _quality(image, result, truth, data, cube)
                    for name, (image, result) in images.items()},
    }


def _updates(rec, name, calls) -> None:
    """Time each call once; record them all (the median is shown)."""
    seconds = []

    def timed():
        import time

        for call in calls:
            begin = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - begin)

    rec.run(name, timed)
    if 'seconds' in rec.stages[name]:
        rec.stages[name]['seconds'] = seconds


def _quality(image, result, truth, data, cube) -> dict:
    from napari_phase.compute.score import score

    step = cube.calibration.scan_step
    found = score(image, truth, image_pixel=step,
                  truth_pixel=data['truth']['truth_pixel'])
    entry = {'correlation': found.correlation, 'sign': found.sign}
    if result is not None:  # scale: slope against the truth it can see
        seen = result.apply_transfer(truth, dataset.TRUTH_UPSAMPLING)
        m = int(np.ceil(result.edge_px)) + 1
        a, b = (x[m:-m, m:-m] - x[m:-m, m:-m].mean() for x in (image, seen))
        entry['slope'] = float((a * b).sum() / (b * b).sum())
    return entry


def _calibrated_cube(data):
    from napari_phase import Calibration, DataCube

    truth = data['truth']
    cal = Calibration.from_dict(data['calibration'])
    cal.update(rotation_deg=truth['rotation_deg'],
               transpose=truth['transpose'], C1=truth['C1'],
               probe_center=tuple(truth['probe_center']),
               probe_radius=truth['probe_radius'])
    return DataCube(np.load(data['files']['cube_npy']), cal, 'benchmark')


def _padded(cube) -> tuple[int, int]:
    import inspect

    from napari_phase.compute.direct import prepare_direct_steps

    padding = inspect.signature(prepare_direct_steps).parameters[
        'object_padding_px'].default
    return tuple(n + p for n, p in zip(cube.scan_shape, padding))


def markdown(report: dict) -> str:
    floors_ = report['floors']
    fft = floors_.get('fft', {}).get('seconds')
    lines = [
        (f"Direct ptychography, {report['date']}, "
         f"{report['machine']['cpus']} CPUs "
         f"({report['machine']['fft_workers']} threads), dataset "
         f"{report['dataset']['scan_shape']} × "
         f"{report['dataset']['detector_shape']}"),
        '',
        f"Floors: read pass {floors_['read']['seconds'] * 1e3:.1f} ms; "
        + (f"FFT floor {fft * 1e3:.1f} ms ("
           f"{floors_['fft']['pixels']} complex FFTs of the padded scan)"
           if fft else 'FFT floor not measured'),
        '',
        '| device | stage | median ms | × FFT floor | peak MB | n |',
        '|---|---|---|---|---|---|',
    ]
    for device, found in report['devices'].items():
        if 'error' in found:
            lines.append(f"| {device} | — | {found['error']} | | | |")
            continue
        for name, stage in found['stages'].items():
            if 'error' in stage:
                lines.append(f'| {device} | {name} | {stage["error"]} '
                             '| | | |')
                continue
            seconds = median(stage['seconds'])
            ratio = f'{seconds / fft:.1f}' if fft else ''
            peak = stage.get('peak_mb')
            lines.append(
                f"| {device} | {name} | {seconds * 1e3:.1f} | {ratio} | "
                f"{'' if peak is None else f'{peak:.0f}'} | "
                f"{len(stage['seconds'])} |")
        quality = ', '.join(
            f"{name} r = {q['correlation']:+.3f}"
            + (f" (slope {q['slope']:.2f})" if 'slope' in q else '')
            for name, q in found['quality'].items())
        lines += ['', (f"{device}: {quality}; refined C1 "
                       f"{found['refined_C1']:.1f} Å "
                       f"({found['refine_evaluations']} evaluations)"), '']
    return '\n'.join(lines) + '\n'


def _arguments(argv):
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks.direct', description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='16×16 × 64² dataset (smoke test)')
    parser.add_argument('--repeats', type=int, default=3,
                        help='runs of prepare and of the full SSB')
    parser.add_argument('--updates', type=int, default=20,
                        help='updates timed per kind')
    parser.add_argument('--device', choices=('cpu', 'gpu', 'both'),
                        default='cpu')
    parser.add_argument('--out', default=None, help='results folder')
    return parser.parse_args(argv)


if __name__ == '__main__':
    main()
