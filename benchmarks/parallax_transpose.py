"""What parallax's transpose decision costs, on seed-sized independent data.

``python -m benchmarks.parallax_transpose [--repeats N] [--out DIR]``

Parallax's shifts fit both transposes (|C1| and |A1| swapped). When the
other reading is plausible (its |A1| at most ``ASTIGMATISM_RANGE`` times
its |C1|), direct ptychography's score at both readings decides
(``compute/transpose.py``): one ``prepare_direct`` and two scores. The
seed-sized abTEM specimens (benchmarks/independent.py: 48×48 scan × 192²,
simulated once and cached) are calibrated as the seed does (the probe
fit on the vacuum probe, threshold 0.7), and parallax runs with the
seed's parameters

- with the transpose given (no decision);
- with the transpose left to parallax (its default);

on gold_carbon_astig_T (|A1| = 2|C1|: the scores decide) and on
holey_carbon (pure defocus: the other reading is C1 ≈ 0, beyond the
range, so no score is computed), beside ``prepare_direct`` alone. Median
seconds of ``--repeats`` runs in one process, CPU, all cores
(``backend.FFT_WORKERS``). Results: a table on stdout, ``results.json``
and ``results.md`` in ``benchmarks/results/parallax-transpose-<stamp>/``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import warnings
from pathlib import Path
from statistics import median

from benchmarks import independent
from benchmarks.measure import Recorder, publish

HERE = Path(__file__).resolve().parent
SPECIMENS = ('gold_carbon_astig_T', 'holey_carbon')


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', type=Path, default=None)
    args = parser.parse_args(argv)
    from napari_phase.compute.backend import FFT_WORKERS

    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or HERE / 'results' / (
        f'parallax-transpose-{stamp:%Y%m%d-%H%M%S}')
    report = {'date': stamp.isoformat(timespec='seconds'),
              'machine': {'cpus': os.cpu_count(), 'fft_workers': FFT_WORKERS,
                          'platform': platform.platform()},
              'repeats': args.repeats,
              'specimens': {name: run(name, args.repeats)
                            for name in SPECIMENS}}
    report['markdown'] = markdown(report)
    publish(out, report)
    return report


def run(name: str, repeats: int) -> dict:
    """Median seconds of each way of running parallax on ``name``."""
    from napari_phase import DataCube, parallax, prepare_direct, run_pipeline
    from napari_phase.recipe import new_recipe, seed_recipe

    cube, probe, truth = independent.load(independent.seed_sized(name))
    cube = DataCube(cube.data, cube.calibration.copy(), cube.source)
    run_pipeline(cube, new_recipe({'calibrate': {'thresh_upper': 0.7}}),
                 probe)  # the probe fit, as the seed does
    settings = {key: tuple(value) if isinstance(value, list) else value
                for key, value in seed_recipe()['steps']['parallax'].items()}
    rec = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        given = rec.run('parallax, transpose given', lambda: parallax(
            cube, **settings | {'transpose': truth.transpose}), repeats)
        found = rec.run('parallax, transpose decided', lambda: parallax(
            cube, **settings), repeats)
        rec.run('prepare_direct alone', lambda: prepare_direct(cube),
                repeats)
    decided = [note for note in found.warnings if 'Transpose' in note]
    return {
        'seconds': {stage: median(entry['seconds'])
                    for stage, entry in rec.stages.items()},
        'transpose': {'true': truth.transpose, 'given': given.transpose,
                      'decided': found.transpose},
        'decision': decided[0] if decided else 'no score computed',
    }


def markdown(report: dict) -> str:
    machine = report['machine']
    lines = [f"CPU, {machine['cpus']} cores, {machine['fft_workers']} FFT "
             f"workers; median of {report['repeats']} runs (s).", '',
             '| specimen | transpose given | decided | prepare_direct '
             'alone | decision |', '|---|---|---|---|---|']
    for name, row in report['specimens'].items():
        s = row['seconds']
        right = row['transpose']['decided'] == row['transpose']['true']
        lines.append(
            f"| {name} | {s['parallax, transpose given']:.2f} | "
            f"{s['parallax, transpose decided']:.2f} "
            f"({'right' if right else 'WRONG'}) | "
            f"{s['prepare_direct alone']:.2f} | "
            f"{row['decision'].replace('|', chr(92) + '|')} |")
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
