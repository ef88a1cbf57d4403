"""Mixed-state, multislice and mixed-state multislice ptychography with
position correction: napari-phase against py4DSTEM 0.14.18.

``python -m benchmarks.ptycho_models [--quick] [--ours-only]
[--iterations 2] [--batch 256] [--models ...] [--python PY] [--out DIR]``

On the seed-sized set (``dataset.SEED``, 48×48 scan × 192² detector;
``--quick``: 16×16 × 64²), geometry from the simulator's truth (θ, C1),
the vacuum probe, step 0.5, batches of ``--batch``, free probe, seed 0,
on the CPU, each model runs in a fresh process per tool:

- py4DSTEM's ``MixedstatePtychography`` (3 modes),
  ``MultislicePtychography`` (6 slices of 5 Å) and
  ``MixedstateMultislicePtychography`` (both, positions refined:
  ``fix_positions=False``), in its own venv
  (``benchmarks/py4dstem_ptycho_models.py``), its defaults otherwise;
- napari-phase with the same parameters twice: its defaults (probe
  momentum 0.8, position step 1) and py4DSTEM-like ones (plain gradient
  descent on the probe, position step 0.9, py4DSTEM's
  ``positions_step_size``).

Per run: the preprocessing and ``--iterations`` iterations are timed
(seconds per iteration = their mean; 64 iterations are not run), the
peak memory of the iterations is recorded, and the phase (the sum of the
slices') is scored against the truth after those iterations with the
same code as the main table (``compute.score``). Threads: napari-phase's
FFTs use scipy.fft with ``os.cpu_count()`` workers; py4DSTEM 0.14.18 on
the CPU uses numpy.fft (single-threaded); both use the machine's BLAS
threads for the rest.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks import dataset
from benchmarks.measure import (
    Recorder,
    per_iteration,
    publish,
    save_image,
    write_result,
)

HERE = Path(__file__).resolve().parent
#: Model name → napari-phase parameters (py4DSTEM gets the same).
MODELS = {
    'mixed-state (3 modes)': {'num_probes': 3},
    'multislice (6 slices)': {'num_slices': 6, 'slice_thickness': 5.0},
    'mixed-state multislice + positions': {
        'num_probes': 3, 'num_slices': 6, 'slice_thickness': 5.0,
        'position_correction': True},
}
#: Our settings, by row name.
SETTINGS = {
    'ours (defaults)': {},
    'ours (py4DSTEM-like)': {'probe_momentum': 0.0, 'position_step': 0.9},
}


def main(argv=None) -> dict:
    args = _arguments(argv)
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = Path(args.out or HERE / 'results' /
               f"ptycho-models-{stamp.strftime('%Y%m%d-%H%M%S')}")
    parameters = dataset.QUICK if args.quick else dataset.SEED
    if args.scan:
        parameters = parameters | {'scan_shape': (args.scan, args.scan)}
    if args.detector:
        parameters = parameters | {'detector_shape': (args.detector,) * 2,
                                   'C1': 400.0 if args.detector >= 128
                                   else 100.0}
    data = dataset.prepare(HERE / '.build', parameters)
    python = None
    if not args.ours_only:
        from benchmarks.__main__ import py4dstem_python

        python = py4dstem_python(args.python)
    rows = []
    for model in args.models:
        base = {'files': data['files'], 'parameters': data['parameters'],
                'calibration': data['calibration'], 'truth': data['truth'],
                'repeats': 1, 'iterations': args.iterations,
                'batch': args.batch, 'model': MODELS[model]}
        theirs = None
        if python is not None:
            theirs = _run([str(python), str(HERE / 'py4dstem_ptycho_models.py')],
                          base, out / _slug(model) / 'py4DSTEM')
        for setting, extra in SETTINGS.items():
            ours = _run([sys.executable, '-m', 'benchmarks.ptycho_models',
                         '--worker'], base | {'settings': extra},
                        out / _slug(model) / _slug(setting))
            rows.append(_row(model, setting, ours, theirs, data))
    report = {'date': stamp.isoformat(timespec='seconds'),
              'options': vars(args), 'cpu_count': os.cpu_count(),
              'dataset': data['parameters'], 'rows': rows}
    report['markdown'] = markdown(report)
    publish(out, report)
    return report


def _arguments(argv):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.ptycho_models',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='16×16 scan × 64² detector')
    parser.add_argument('--scan', type=int, default=None,
                        help='scan size (s × s) instead of the set\'s')
    parser.add_argument('--detector', type=int, default=None,
                        help='detector size instead of the set\'s (C1 '
                             '400 Å, or 100 below 128 px)')
    parser.add_argument('--ours-only', action='store_true',
                        help='skip py4DSTEM (offline-safe)')
    parser.add_argument('--iterations', type=int, default=2,
                        help='iterations timed per run (default 2)')
    parser.add_argument('--batch', type=int, default=256,
                        help='max_batch_size, both tools (default 256)')
    parser.add_argument('--models', nargs='+', choices=list(MODELS),
                        default=list(MODELS))
    parser.add_argument('--python', default=None,
                        help="interpreter to create py4DSTEM's venv with")
    parser.add_argument('--out', default=None, help='results folder')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _slug(name: str) -> str:
    return ''.join(c if c.isalnum() else '-' for c in name).strip('-')


def _run(command, config, folder) -> dict:
    """One run in a fresh process; its result.json, or the error."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / 'config.json'
    path.write_text(json.dumps(config | {'out': str(folder)}))
    print(f'running {" ".join(command[-2:])} → {folder}', flush=True)
    with open(folder / 'log.txt', 'w') as log:
        done = subprocess.run([*command, str(path)], cwd=HERE.parent,
                              stdout=log, stderr=subprocess.STDOUT, check=False,
                              env=os.environ | {'MPLBACKEND': 'Agg'})
    result = folder / 'result.json'
    if done.returncode or not result.exists():
        return {'stages': {}, 'error': f'run failed: {folder}/log.txt'}
    return json.loads(result.read_text()) | {'folder': str(folder)}


def _row(model, setting, ours, theirs, data) -> dict:
    row = {'model': model, 'settings': setting}
    for tool, result in (('ours', ours), ('py4DSTEM', theirs)):
        if result is None:
            continue
        stage = result['stages'].get('per iteration', {})
        row[tool] = {'seconds': stage.get('seconds', [None])[0],
                     'peak_mb': stage.get('peak_mb'),
                     'error': stage.get('error') or result.get('error'),
                     'correlation': _quality(result, data)}
    return row


def _quality(result, data):
    """Pearson r of the run's phase with the truth (compute.score)."""
    from napari_phase.compute.score import score

    image = result.get('images', {}).get('phase')
    if image is None:
        return None
    array = np.load(Path(result['folder']) / image['file'])
    found = score(array, np.load(data['files']['truth']), image['pixel'],
                  data['truth']['truth_pixel'], tuple(image['origin']))
    return found.correlation * found.sign


def markdown(report) -> str:
    p = report['dataset']
    lines = [
        (f"Dataset: {'×'.join(map(str, p['scan_shape']))} scan × "
        f"{'×'.join(map(str, p['detector_shape']))} detector; "
        f"{report['options']['iterations']} iterations per run, batches of "
        f"{report['options']['batch']}, free probe, truth geometry; "
        f"{report['date']}.  "),
        (f"Threads: napari-phase scipy.fft with {report['cpu_count']} workers; "
        'py4DSTEM 0.14.18 numpy.fft (one thread); BLAS threads as the '
        'machine has for both. Quality: Pearson r of the (projected) phase '
        'with the truth after those iterations.'),
        '',
        ('| model | settings | ours s/iteration | py4DSTEM s/iteration | '
        'speed-up | ours peak MB | py4DSTEM peak MB | ours r | py4DSTEM r |'),
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for row in report['rows']:
        ours, theirs = row.get('ours', {}), row.get('py4DSTEM', {})
        speed = '—'
        if ours.get('seconds') and theirs.get('seconds'):
            speed = f"{theirs['seconds'] / ours['seconds']:.1f}×"
        lines.append('| ' + ' | '.join([
            row['model'], row['settings'], _cell(ours, 'seconds', '.3g'),
            _cell(theirs, 'seconds', '.3g'), speed,
            _cell(ours, 'peak_mb', '.0f'), _cell(theirs, 'peak_mb', '.0f'),
            _cell(ours, 'correlation', '+.2f'),
            _cell(theirs, 'correlation', '+.2f')]) + ' |')
    return '\n'.join(lines) + '\n'


def _cell(entry, key, spec) -> str:
    if entry.get('error'):
        return entry['error'][:40]
    value = entry.get(key)
    return '—' if value is None else format(value, spec)


# -- the worker (our side), in its own process ------------------------------
def worker(config_path: str) -> None:
    import napari_phase

    config = json.loads(Path(config_path).read_text())
    out, truth = Path(config['out']), config['truth']
    rec = Recorder()
    result = {'tool': 'napari-phase', 'images': {}, 'notes': []}
    cube = napari_phase.read_datacube(config['files']['cube_emd'],
                                      lazy=False)
    probe, _ = napari_phase.read_probe(config['files']['probe_emd'])
    fit = napari_phase.fit_probe(probe, thresh_upper=0.7)
    cube.calibration.update(q_pixel_mrad=napari_phase.q_pixel_from_semiangle(
        cube.calibration.semiangle, fit.radius))
    n = config['iterations']
    steps = rec.run('preprocess', lambda: napari_phase.ptychography_iter(
        cube, probe, defocus=-truth['C1'], rotation_deg=truth['rotation_deg'],
        transpose=truth['transpose'], aberrations={}, num_iter=n,
        max_batch_size=config['batch'], step_size=0.5, seed=0, device='cpu',
        **config['model'], **config['settings']))
    rec.run('iterations', lambda: [next(steps) for _ in range(n)])
    per_iteration(rec, n)
    try:
        next(steps)
    except StopIteration as done:
        solved = done.value
    save_image(result, out, 'phase', solved.phase, solved.pixel_size,
               solved.origin)
    result['stages'] = rec.stages
    write_result(out, result)


if __name__ == '__main__':
    arguments = _arguments(sys.argv[1:])
    if arguments.worker:
        worker(arguments.worker)
    else:
        main(sys.argv[1:])
