"""``python -m benchmarks.quality``: how right each method is on the
independent (abTEM multislice) validation set (benchmarks/independent.py).

For every dataset, napari-phase runs

- DPC with its defaults (no mask) and with the seed's mask
  (mean pattern > 0.8·max);
- the seed pipeline, ``run_pipeline(cube, seed_recipe(N), probe)``: probe
  fit, DPC with the seed's mask, parallax with the seed's parameters and
  ptychography from the pipeline's own calibration (the parallax fit);
- ptychography from the true pair (θ, transpose, C1; the seed recipe's
  ptychography parameters),

and each result is scored against the truth with the shared code
(``napari_phase.compute.score``): rotation error modulo 360° (a wrong
half-turn shows as ±180°), transpose right or wrong, C1 relative error
(−200 % = the right size with the wrong sign), band-passed correlation r
(signed) and phase slope against the truth blurred to the method's
resolution (:func:`resolution`; DPC's reference is also blurred by the
probe intensity, its point-spread).

Default: the small datasets stored under tests/data/independent.
``--seed-sized [NAME ...]``: their seed-sized versions (48×48×192²,
simulated once with abTEM and cached under benchmarks/.build/independent;
gold_carbon, the seed's kind of specimen, unless named). ``--py4dstem``
(either set): py4DSTEM 0.14.18 on the same data beside ours (its own venv
and the runner of ``python -m benchmarks``; its DPC phase, in cycles, is
converted to radians).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import independent

HERE = Path(__file__).resolve().parent
#: Ptychography iterations (the seed's).
ITERATIONS = 64
METHODS = ('DPC (defaults)', 'DPC (seed mask)', 'parallax',
           'ptycho (pipeline)', 'ptycho (true pair)')


@dataclass
class Outcome:
    """A method's phase (radians, scan frame: pixel Å, origin Å of pixel
    (0, 0)) and the geometry it used or found (None: not its business);
    ``phase`` None when the method failed (``note`` says why)."""

    phase: np.ndarray | None
    pixel: float = 1.0
    origin: tuple[float, float] = (0.0, 0.0)
    rotation_deg: float | None = None
    transpose: bool | None = None
    C1: float | None = None
    note: str = ''


def resolution(outcome: Outcome, truth) -> float:
    """FWHM (Å) a method is compared at: twice the coarser of its pixel
    and the truth's (the finest period both sample)."""
    return 2 * max(outcome.pixel, truth.phase_pixel)


def ours(loaded, iterations: int = ITERATIONS) -> dict[str, Outcome]:
    """napari-phase's methods on one dataset (see the module doc); a
    method that raises is recorded as failed."""
    from napari_phase import DataCube, dpc, ptychography, run_pipeline
    from napari_phase.recipe import seed_recipe

    cube, probe, truth = loaded
    plain = DataCube(cube.data, cube.calibration.copy(), cube.source)
    recipe = seed_recipe(iterations)
    run = run_pipeline(plain, recipe, probe, methods=['dpc', 'parallax'])
    outcomes = {
        'DPC (defaults)': _tried(lambda: _dpc(dpc(plain))),
        'DPC (seed mask)': _dpc(run.results['dpc']),
        'parallax': _parallax(run.results['parallax']),
    }

    def pipeline_ptycho():
        again = run_pipeline(plain, recipe, probe, methods=['ptycho'])
        cal = again.calibration
        return _ptycho(again.results['ptychography'], cal.rotation_deg,
                       cal.transpose, cal.C1)

    def true_ptycho():
        found = ptychography(
            plain, probe, defocus=-truth.C1,
            rotation_deg=truth.rotation_deg, transpose=truth.transpose,
            aberrations=dict(truth.aberrations),
            **recipe['steps']['ptychography'], seed=0)
        return _ptycho(found, truth.rotation_deg, truth.transpose, truth.C1)

    outcomes['ptycho (pipeline)'] = _tried(pipeline_ptycho)
    outcomes['ptycho (true pair)'] = _tried(true_ptycho)
    return outcomes


def _tried(make) -> Outcome:
    try:
        return make()
    except Exception as error:  # noqa: BLE001  (a row of the table)
        return Outcome(None, note=f'failed: {type(error).__name__}: {error}')


def _dpc(result) -> Outcome:
    note = '; '.join(t for t in (result.half_turn, result.contrast) if t)
    return Outcome(result.phase, result.pixel_size, (0.0, 0.0),
                   result.rotation_deg, result.transpose, note=note)


def _parallax(result) -> Outcome:
    note = '; '.join([result.half_turn, *result.warnings])
    return Outcome(np.asarray(result.phase), result.pixel_size['phase'],
                   result.origin['phase'], result.rotation_deg,
                   result.transpose, result.C1 if result.rotation_deg
                   is not None else None, note)


def _ptycho(result, rotation_deg, transpose, C1) -> Outcome:
    return Outcome(result.phase, result.pixel_size, result.origin,
                   rotation_deg, transpose, C1,
                   result.half_turn_evidence.describe())


def scored(outcome: Outcome, truth, method: str) -> dict:
    """The numbers of one row of the scorecard."""
    from napari_phase.compute.score import (
        quality,
        relative_error,
        rotation_error,
    )

    if outcome.phase is None:
        return {'failed': True, 'note': outcome.note}
    psf = truth.probe_intensity if method.startswith('DPC') else None
    found = quality(outcome.phase, truth.phase, outcome.pixel,
                    truth.phase_pixel, resolution(outcome, truth),
                    image_origin=outcome.origin, psf=psf)
    row = {
        'rotation_error_deg': None if outcome.rotation_deg is None
        else rotation_error(outcome.rotation_deg, truth.rotation_deg),
        'transpose_right': None if outcome.transpose is None
        else bool(outcome.transpose) == bool(truth.transpose),
        'C1_error': None if outcome.C1 is None
        else relative_error(outcome.C1, truth.C1),
        'band_r': found.correlation,
        'slope': found.slope,
        'r': found.registered.correlation,
        'shift_A': [s * truth.phase_pixel for s in found.registered.shift_px],
        'resolution_A': found.resolution,
        'found': {'rotation_deg': outcome.rotation_deg,
                  'transpose': outcome.transpose, 'C1': outcome.C1},
        'note': outcome.note,
    }
    return row


def scorecard(names, iterations: int = ITERATIONS, seed_sized=False,
              py4dstem: bool = False, out: Path | None = None) -> dict:
    """Rows per dataset and method (and py4DSTEM's)."""
    report = {}
    for name in names:
        path = (independent.seed_sized(name) if seed_sized
                else independent.SMALL_DIR / f'{name}.h5')
        loaded = independent.load(path)
        tools = {'ours': ours(loaded, iterations)}
        if py4dstem:
            tools['py4DSTEM'] = theirs(loaded, path, iterations,
                                       (out or HERE / 'results') / name)
        report[name] = {
            'truth': _truth_summary(loaded.truth),
            'tools': {tool: {method: scored(o, loaded.truth, method)
                             for method, o in outcomes.items()}
                      for tool, outcomes in tools.items()},
        }
        print(markdown({name: report[name]}), flush=True)
    return report


def theirs(loaded, path: Path, iterations: int, folder: Path) -> dict:
    """py4DSTEM 0.14.18's seed workflow on the same data (its runner, in
    its venv): DPC (seed mask), parallax, ptychography from its parallax
    fit and from the true pair."""
    from benchmarks.__main__ import py4dstem_python, run_tool
    from napari_phase import write_emd, write_emd_probe

    cube, probe, truth = loaded
    data = folder / 'input'  # the same data as py4DSTEM reads them
    data.mkdir(parents=True, exist_ok=True)
    files = {'cube_emd': data / 'cube.emd', 'probe_emd': data / 'probe.emd',
             'cube_npy': data / 'cube.npy', 'probe_npy': data / 'probe.npy'}
    if not files['cube_npy'].exists():
        write_emd(files['cube_emd'], cube)
        write_emd_probe(files['probe_emd'], probe, cube.calibration)
        np.save(files['probe_npy'], probe)
        np.save(files['cube_npy'], np.asarray(cube.data, np.float32))
    config = {
        'files': {k: str(v) for k, v in files.items()},
        'parameters': {'scan_step': truth.scan_step, 'energy': truth.energy,
                       'semiangle': truth.semiangle},
        'calibration': {'q_pixel_mrad': truth.q_pixel_mrad},
        'truth': {'rotation_deg': truth.rotation_deg,
                  'transpose': truth.transpose, 'C1': truth.C1},
        'repeats': 1, 'ptycho_iterations': iterations, 'ptycho_batch': 512,
    }
    python = py4dstem_python(None)
    seed = run_tool('py4DSTEM', config | {
        'stages': ['dpc', 'parallax', 'ptycho'],
        'ptycho_geometry': 'parallax'}, folder / 'seed', python)
    true = run_tool('py4DSTEM', config | {
        'stages': ['ptycho'], 'ptycho_geometry': 'truth'},
        folder / 'truth', python)
    outcomes = {}
    for name, run, key, scale in (
            ('DPC (seed mask)', seed, 'dpc', 2 * math.pi),
            ('parallax', seed, 'parallax', 1.0),
            ('ptycho (pipeline)', seed, 'ptycho', 1.0),
            ('ptycho (true pair)', true, 'ptycho', 1.0)):
        image = run['images'].get(key)
        if image is None:
            continue
        fit = run['fits'].get(
            'ptycho_input' if key == 'ptycho' else key, {})
        outcomes[name] = Outcome(
            scale * np.load(Path(run['folder']) / image['file']),
            image['pixel'], tuple(image['origin']), fit.get('rotation_deg'),
            fit.get('transpose'), fit.get('C1'))
    return outcomes


def _truth_summary(truth) -> dict:
    return {key: value for key, value in truth.metadata().items()
            if key not in ('extra', 'description')} | {
        'description': truth.description,
        'phase_skewness_inner': truth.extra['phase_skewness_inner']}


def markdown(report: dict) -> str:
    """One table: a row per dataset, tool and method."""
    header = ['dataset', 'tool', 'method', 'θ error (°)', 'transpose',
              'C1 error', 'band r', 'slope', 'found']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for name, entry in report.items():
        for tool, rows in entry['tools'].items():
            for method, row in rows.items():
                if row.get('failed'):
                    lines.append(f'| {name} | {tool} | {method} | '
                                 f"{row['note'][:60]} |" + ' |' * 5)
                    continue
                lines.append('| ' + ' | '.join([
                    name, tool, method, _number(row['rotation_error_deg'],
                                                '{:+.1f}'),
                    _transpose(row['transpose_right']),
                    _number(row['C1_error'], '{:+.0%}'),
                    f"{row['band_r']:+.2f}", f"{row['slope']:+.2f}",
                    _found(row['found'])]) + ' |')
    return '\n'.join(lines) + '\n'


def _number(value, form) -> str:
    return '—' if value is None else form.format(value)


def _transpose(right) -> str:
    return '—' if right is None else ('right' if right else '**wrong**')


def _found(found) -> str:
    parts = []
    if found['rotation_deg'] is not None:
        parts.append(f"θ {found['rotation_deg']:.1f}°"
                     + (', T' if found['transpose'] else ''))
    if found['C1'] is not None:
        parts.append(f"C1 {found['C1']:.0f} Å")
    return ', '.join(parts)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.quality',
                                     description=__doc__.split('\n\n')[0])
    parser.add_argument('names', nargs='*', help='datasets (default: all)')
    parser.add_argument('--seed-sized', action='store_true',
                        help='48×48×192² versions (simulated once, cached)')
    parser.add_argument('--py4dstem', action='store_true',
                        help='run py4DSTEM 0.14.18 too')
    parser.add_argument('--iterations', type=int, default=ITERATIONS,
                        help=f'ptychography iterations ({ITERATIONS})')
    parser.add_argument('--out', type=Path, default=None,
                        help='folder for results.json / results.md')
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(independent.SPECS)
    if unknown:
        parser.error(f'unknown dataset(s) {sorted(unknown)}; choose from '
                     f'{", ".join(independent.SPECS)}')
    out = args.out or HERE / 'results' / (
        'quality-seed' if args.seed_sized else 'quality-small')
    default = ['gold_carbon'] if args.seed_sized else list(independent.SPECS)
    report = scorecard(args.names or default,
                       args.iterations, args.seed_sized, args.py4dstem, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'results.json').write_text(json.dumps(report, indent=1))
    (out / 'results.md').write_text(markdown(report))
    print(markdown(report))
    print(f'written to {out}')
    return report


if __name__ == '__main__':
    main()
