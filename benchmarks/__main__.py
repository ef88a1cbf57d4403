"""``python -m benchmarks``: napari-phase against py4DSTEM 0.14.18.

One command: simulate the seed-sized dataset (cached), set up py4DSTEM in
its own virtual environment (first use), measure the hardware floors, run
both pipelines in fresh processes, alternating, ``--repeats`` times, score
every phase image against the simulator's truth, print one table and write
it as JSON and markdown to ``benchmarks/results/<timestamp>/``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from statistics import median

import numpy as np

from benchmarks import dataset, floors
from benchmarks.measure import GROUPS, publish

HERE = Path(__file__).resolve().parent
BUILD = HERE / '.build'
VENV = BUILD / 'py4dstem-venv'
PY4DSTEM = ['py4DSTEM==0.14.18']
CHECK = 'from py4DSTEM.process.phase import DPC, Parallax, ' \
        'SingleslicePtychography'
TOOLS = ('ours', 'py4DSTEM')
#: Table rows: (stage, method group or None for the always-run ones).
ROWS = [(name, None) for name in ('read', 'mean pattern', 'probe fit')] + [
    (name, group) for group, names in GROUPS.items() for name in names]
#: The row that shows each phase image's quality.
IMAGE_ROWS = {'DPC': 'dpc', 'parallax (total)': 'parallax',
              'ptycho: 64 iterations': 'ptycho'}
#: Longest error text shown in a table cell (the JSON has all of it).
CELL = 60


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    if '--ui' in argv:  # the window's responsiveness instead
        from benchmarks import ui_latency

        return ui_latency.main([a for a in argv if a != '--ui'])
    args = _arguments(argv)
    tools = ('ours',) if args.ours_only else TOOLS
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = Path(args.out or HERE / 'results' / stamp.strftime('%Y%m%d-%H%M%S'))
    python = None if args.ours_only else py4dstem_python(args.python)
    data = dataset.prepare(BUILD, dataset.QUICK if args.quick
                           else dataset.SEED)
    cube, floor = np.load(data['files']['cube_npy']), None
    config = {
        'files': data['files'], 'parameters': data['parameters'],
        'calibration': data['calibration'], 'truth': data['truth'],
        'stages': args.stages, 'repeats': 1 if args.quick else 3,
        'ptycho_iterations': args.ptycho_iterations,
        'ptycho_batch': 512, 'ptycho_geometry': args.ptycho_geometry,
    }
    runs = {tool: [] for tool in tools}
    for repeat in range(args.repeats):
        floor = floors.measure(cube, floor)
        order = tools if repeat % 2 == 0 else tools[::-1]
        for tool in order:
            folder = out / 'runs' / f'{tool}-{repeat}'
            runs[tool].append(run_tool(tool, config, folder, python))
    report = summarise(runs, data, floor, args, stamp)
    report['markdown'] = markdown(report)
    publish(out, report)
    return report


def _arguments(argv):
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks', description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='16×16 scan × 64² detector, one repeat')
    parser.add_argument('--ours-only', action='store_true',
                        help='skip py4DSTEM (offline-safe)')
    parser.add_argument('--repeats', type=int, default=None,
                        help='runs of each pipeline, alternating (default '
                             '3, or 1 with --quick)')
    parser.add_argument('--stages', nargs='+', choices=list(GROUPS),
                        default=list(GROUPS),
                        help='methods to run (read, mean pattern and probe '
                             'fit always run)')
    parser.add_argument('--ptycho-iterations', type=int, default=None,
                        help='ptychography iterations per run (default 4, '
                             'or 2 with --quick); 64 are extrapolated')
    parser.add_argument('--ptycho-geometry', choices=('parallax', 'truth'),
                        default='parallax',
                        help='rotation and C1 for ptychography: fitted by '
                             'parallax (as the seed does) or the truth')
    parser.add_argument('--python', default=None,
                        help='interpreter for the py4DSTEM environment '
                             '(default: python3.11 or python3 on PATH)')
    parser.add_argument('--out', default=None, help='results folder')
    parser.add_argument('--ui', action='store_true',
                        help='instead: the UI stalls of each step and the '
                             'live virtual image latency in a real window '
                             '(benchmarks/ui_latency.py; takes --quick, '
                             '--ptycho-iterations, --out)')
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.ptycho_iterations = args.ptycho_iterations or (
        2 if args.quick else 4)
    if args.repeats < 1 or args.ptycho_iterations < 1:
        parser.error('--repeats and --ptycho-iterations must be ≥ 1')
    return args


def py4dstem_python(base: str | None) -> Path:
    """py4DSTEM 0.14.18's interpreter, its environment made on first use
    (``python -m venv`` + pip, under benchmarks/.build) and repaired if it
    cannot import py4DSTEM's phase retrieval classes."""
    python = VENV / 'bin' / 'python'
    if not python.exists():
        base = base or shutil.which('python3.11') or shutil.which('python3')
        print(f'creating the py4DSTEM environment in {VENV} (once)')
        subprocess.run([base, '-m', 'venv', str(VENV)], check=True)
    if subprocess.run([str(python), '-c', CHECK], capture_output=True,
                      check=False).returncode:
        subprocess.run([str(python), '-m', 'pip', 'install', '--quiet',
                        *PY4DSTEM], check=True)
        subprocess.run([str(python), '-c', CHECK], check=True)
    return python


def run_tool(tool: str, config: dict, folder: Path, python) -> dict:
    """One run of one pipeline in a fresh process; its result.json (or
    the error it died with, for every stage)."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / 'config.json'
    config_file.write_text(json.dumps(config | {'out': str(folder)}))
    command = ([sys.executable, '-m', 'benchmarks.ours'] if tool == 'ours'
               else [str(python), str(HERE / 'py4dstem_runner.py')])
    print(f'running {tool} → {folder}', flush=True)
    with open(folder / 'log.txt', 'w') as log:
        done = subprocess.run(
            [*command, str(config_file)], cwd=HERE.parent, stdout=log,
            stderr=subprocess.STDOUT, env=os.environ | {'MPLBACKEND': 'Agg'},
            check=False)
    result_file = folder / 'result.json'
    if done.returncode or not result_file.exists():
        return {'tool': tool, 'stages': {}, 'images': {}, 'fits': {},
                'error': 'run failed', 'notes': [
                    f'run failed (exit {done.returncode}): {folder}/log.txt']}
    return json.loads(result_file.read_text()) | {'folder': str(folder)}


def summarise(runs: dict, data: dict, floor: dict, args, stamp) -> dict:
    """Medians over runs, peaks, quality scores and fits, per tool."""
    tools = {}
    for tool, results in runs.items():
        tools[tool] = {
            'stages': _stage_summary(results),
            'quality': _quality(results, data),
            'fits': results[0]['fits'],
            'notes': sorted({n for r in results for n in r['notes']}),
            'versions': results[0].get('versions', {}),
            'source': results[0].get('source'),
        }
    return {
        'date': stamp.isoformat(timespec='seconds'),
        'machine': machine(),
        'dataset': {k: data[k] for k in ('parameters', 'truth', 'bytes')},
        'options': vars(args),
        'floors': floor,
        'tools': tools,
    }


def _stage_summary(results: list[dict]) -> dict:
    """Per stage: median over runs of each run's median seconds, the
    largest peak memory, or the error."""
    summary = {}
    for name, group in ROWS:
        entries = [r['stages'].get(name) for r in results]
        timed = [e for e in entries if e and 'seconds' in e]
        if timed:
            peaks = [e['peak_mb'] for e in timed
                     if e.get('peak_mb') is not None]
            summary[name] = {
                'seconds': median(median(e['seconds']) for e in timed),
                'runs': [median(e['seconds']) for e in timed],
                'peak_mb': max(peaks, default=None),
                'note': timed[0].get('note'),
            }
        else:
            errors = [e['error'] for e in entries if e and 'error' in e]
            summary[name] = {'error': errors[0] if errors else (
                results[0].get('error') or 'not run')}
    return summary


def _quality(results: list[dict], data: dict) -> dict:
    """Scores of the first run's phase images against the true phase."""
    from napari_phase.compute.score import score

    truth = np.load(data['files']['truth'])
    pixel = data['truth']['truth_pixel']
    quality = {}
    for name, image in results[0]['images'].items():
        array = np.load(Path(results[0]['folder']) / image['file'])
        found = score(array, truth, image['pixel'], pixel,
                      tuple(image['origin']))
        quality[name] = {'correlation': found.correlation,
                         'shift_px': found.shift_px, 'sign': found.sign}
    return quality


def machine() -> dict:
    """CPU model, core count, memory, Python and library versions."""
    import scipy

    cpu = next((line.split(':', 1)[1].strip()
                for line in Path('/proc/cpuinfo').read_text().splitlines()
                if line.startswith('model name')), platform.processor())
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    return {'cpu': cpu, 'cores': os.cpu_count(),
            'memory_GB': round(memory / 1e9, 1),
            'python': platform.python_version(), 'numpy': np.__version__,
            'scipy': scipy.__version__, 'platform': platform.platform()}


def markdown(report: dict) -> str:
    """The table, the floors and the context, as markdown."""
    tools = report['tools']
    truth = report['dataset']['truth']
    p = report['dataset']['parameters']
    lines = [
        (f"Dataset: {'×'.join(map(str, p['scan_shape']))} scan × "
        f"{'×'.join(map(str, p['detector_shape']))} detector, "
        f"{report['dataset']['bytes'] / 1e6:.0f} MB float32; truth: "
        f"rotation {truth['rotation_deg']:g}°, C1 {truth['C1']:g} Å.  "),
        (f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} "
        f"cores, {report['machine']['memory_GB']} GB; {report['date']}.  "),
        (f"Times: median of {report['options']['repeats']} run(s) per "
        'pipeline (fresh processes, alternating), cheap stages repeated in '
        'each; peak = extra resident memory during the stage. Quality: '
        "Pearson r with the true phase after registration ('inv.' = "
        'inverted contrast); fitted rotation θ and C1.'),
        '',
    ]
    header = ['stage', 'ours (s)', 'py4DSTEM (s)', 'speed-up',
              'ours peak (MB)', 'py4DSTEM peak (MB)', 'ours quality',
              'py4DSTEM quality']
    lines += ['| ' + ' | '.join(header) + ' |',
              '|' + '---|' * len(header)]
    for name, group in ROWS:
        image = IMAGE_ROWS.get(name)
        if group and group not in report['options']['stages']:
            continue
        cells = [_stage_cell(name, report['options'])]
        stages = [tools[t]['stages'][name] if t in tools else None
                  for t in TOOLS]
        cells += [_seconds(s) for s in stages]
        cells.append(_ratio(*stages))
        cells += [_peak(s) for s in stages]
        cells += [_quality_cell(tools.get(t), image) for t in TOOLS]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', *_floor_lines(report), *_note_lines(tools)]
    return '\n'.join(lines) + '\n'


def _stage_cell(name, options) -> str:
    if name == 'ptycho: 64 iterations':
        return (f"{name} (extrapolated from {options['ptycho_iterations']}; "
                f"quality after {options['ptycho_iterations']})")
    return name


def _seconds(stage) -> str:
    if stage is None:
        return '—'
    if 'error' in stage:
        text = stage['error']
        return text if len(text) <= CELL else text[:CELL - 1] + '…'
    seconds = stage['seconds']
    return f'{seconds:.0f}' if seconds >= 1000 else f'{seconds:.3g}'


def _ratio(ours, theirs) -> str:
    if not (ours and theirs and 'seconds' in ours and 'seconds' in theirs):
        return '—'
    ratio = theirs['seconds'] / ours['seconds']
    return f'{ratio:.0f}×' if ratio >= 10 else f'{ratio:.2g}×'


def _peak(stage) -> str:
    if not stage or stage.get('peak_mb') is None:
        return '—'
    return f"{stage['peak_mb']:.0f}"


def _quality_cell(tool, image) -> str:
    if tool is None or image is None:
        return ''
    parts = []
    found = tool['quality'].get(image)
    if found:
        inverted = ' inv.' if found['sign'] < 0 else ''
        parts.append(f"r {found['correlation']:+.2f}{inverted}")
    fit = tool['fits'].get(image, {})
    if 'rotation_deg' in fit:
        flip = ', T' if fit.get('transpose') else ''
        parts.append(f"θ {fit['rotation_deg']:.1f}°{flip}")
    if 'C1' in fit:
        parts.append(f"C1 {fit['C1']:.0f} Å")
    return ', '.join(parts)


def _floor_lines(report) -> list[str]:
    read, fft = report['floors']['read'], report['floors']['fft']
    return [
        'Floors on this machine (best of 5 before each round of runs):',
        (f"- one read pass over the cube (np.sum): {read['seconds'] * 1e3:.3g}"
        f" ms ({read['GB_per_s']:.1f} GB/s): the floor of read-bound stages "
        '(mean pattern, virtual images, CoM);'),
        (f"- complex64 FFT of one pattern (scipy.fft, {fft['workers']} "
        f"workers, batched): {fft['seconds_per_fft'] * 1e6:.0f} µs "
        f"({fft['GFLOP_per_s']:.1f} GFLOP/s), so one ptychography iteration "
        f"(2 FFTs per pattern) takes ≥ {fft['ptycho_iteration_seconds']:.3g}"
        ' s.'),
    ]


def _note_lines(tools) -> list[str]:
    lines = []
    for tool, summary in tools.items():
        source = summary['source']
        extra = [f'read from {source}'] * bool(source) + summary['notes']
        lines.append(f"- {tool}: " + '; '.join(extra))
    return ['', 'Notes:', *lines] if lines else []


if __name__ == '__main__':
    main()
