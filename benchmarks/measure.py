"""Wall time and peak memory of pipeline stages, and their output.

Stage names and the method groups they belong to are shared by both
pipelines and the table (:data:`GROUPS`).

Both pipelines import this module: ours in the project's environment and
py4DSTEM's in its own (numpy 1.26) one, so it imports nothing but the
standard library and numpy (never napari_phase).

Memory: the extra resident memory a stage needed, i.e. the process's peak
RSS during the stage (``VmHWM``, reset before the stage by writing 5 to
``/proc/self/clear_refs``) minus its RSS before the stage. This counts
every allocation (numpy, FFT plans, C libraries), not only Python's.
"""

from __future__ import annotations

import json
import re
import time
import traceback
from pathlib import Path
from statistics import median

import numpy as np


def _status_mb(key: str) -> float:
    text = Path('/proc/self/status').read_text()
    return int(re.search(rf'{key}:\s+(\d+) kB', text).group(1)) / 1024


def _reset_peak() -> bool:
    try:
        Path('/proc/self/clear_refs').write_text('5')
        return True
    except OSError:
        return False


#: Method groups (``--stages``) and the table rows each one fills.
GROUPS = {
    'virtual': ('virtual BF+ADF',),
    'dpc': ('DPC',),
    'parallax': ('parallax: preprocess', 'parallax: align',
                 'parallax: fit + upsample', 'parallax: CTF correct',
                 'parallax (total)'),
    'ptycho': ('ptycho: preprocess', 'ptycho: per iteration',
               'ptycho: 64 iterations'),
}

UNAVAILABLE = 'not available yet'


class Recorder:
    """Runs stages and records ``seconds`` (one per repeat) and
    ``peak_mb`` per stage name, in order."""

    def __init__(self):
        self.stages: dict[str, dict] = {}

    def run(self, name: str, function, repeats: int = 1):
        """Run ``function()`` ``repeats`` times; return its last result.

        An exception is recorded as the stage's ``error`` (and ``None``
        returned) so that one failing stage does not hide the others.
        """
        before = _status_mb('VmRSS')
        exact = _reset_peak()
        seconds, result = [], None
        try:
            for _ in range(repeats):
                result = None
                start = time.perf_counter()
                result = function()
                seconds.append(time.perf_counter() - start)
        except Exception as error:  # reported in the table, not raised
            traceback.print_exc()
            self.stages[name] = {'error': f'{type(error).__name__}: {error}'}
            return None
        peak = _status_mb('VmHWM') - before if exact else None
        self.stages[name] = {'seconds': seconds, 'peak_mb': peak}
        return result

    def guarded(self, names, function, *args) -> None:
        """Call ``function(*args)``; if it raises (an import, a setup
        step), record the error for each of ``names`` not yet recorded
        ('not available yet' for an ImportError)."""
        try:
            function(*args)
        except Exception as error:  # reported in the table, not raised
            traceback.print_exc()
            text = (UNAVAILABLE if isinstance(error, ImportError)
                    else f'{type(error).__name__}: {error}')
            for name in names:
                self.stages.setdefault(name, {'error': text})

    def record(self, name: str, **entry):
        """Record a stage measured by other means (or unavailable)."""
        self.stages[name] = entry

    def total(self, name, parts, extra: float = 0.0, note=None):
        """Record ``name`` as the sum of the median times of ``parts``
        (plus ``extra`` seconds) and the largest of their peaks."""
        stages = [self.stages.get(part, {}) for part in parts]
        if any('seconds' not in stage for stage in stages):
            return
        seconds = sum(median(s['seconds']) for s in stages) + extra
        peaks = [s['peak_mb'] for s in stages if s.get('peak_mb') is not None]
        self.record(name, seconds=[seconds], peak_mb=max(peaks, default=None),
                    **({'note': note} if note else {}))

    def per_iteration(self, n: int) -> None:
        """'ptycho: per iteration' and 'ptycho: 64 iterations' from
        'ptycho: preprocess' and 'ptycho: iterations' (``n`` of them)."""
        run = self.stages['ptycho: iterations']
        each = median(run['seconds']) / n
        self.record('ptycho: per iteration', seconds=[each],
                    peak_mb=run['peak_mb'], note=f'mean of {n} iterations')
        self.total('ptycho: 64 iterations',
                   ['ptycho: preprocess', 'ptycho: iterations'],
                   extra=(64 - n) * each,
                   note=f'preprocess + 64 × per iteration (from {n})')


def per_iteration(rec: Recorder, n: int) -> None:
    """'per iteration' from the 'iterations' stage (``n`` of them)."""
    run = rec.stages.get('iterations', {})
    if 'seconds' in run:
        rec.record('per iteration', seconds=[run['seconds'][0] / n],
                   peak_mb=run['peak_mb'])


def ptycho_geometry(config: dict, parallax_fit: dict | None) -> dict:
    """Rotation (degrees), transpose and C1 (Å) handed to ptychography:
    the parallax fit (as the seed does) or, if asked or missing, the
    simulator's truth."""
    if config['ptycho_geometry'] == 'parallax' and parallax_fit:
        return {'from': 'parallax'} | parallax_fit
    truth = config['truth']
    return {'from': 'truth', 'rotation_deg': truth['rotation_deg'],
            'transpose': truth['transpose'], 'C1': truth['C1']}


def save_image(result: dict, out_dir: Path, name: str, image, pixel: float,
               origin=(0.0, 0.0)) -> None:
    """``name.npy`` (float32) in ``out_dir``, described in
    ``result['images']``: pixel size (Å) and origin (Å of pixel (0, 0),
    scan frame)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / f'{name}.npy', np.asarray(image, dtype=np.float32))
    result['images'][name] = {'file': f'{name}.npy', 'pixel': float(pixel),
                              'origin': [float(v) for v in origin]}


def write_result(out_dir: Path, result: dict) -> None:
    """``result.json`` in ``out_dir`` (the harness reads it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'result.json').write_text(json.dumps(result, indent=1))


def publish(out_dir: Path, report: dict) -> None:
    """``results.json`` and ``results.md`` (the report's 'markdown') in
    ``out_dir``, and the table on stdout."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / 'results.json').write_text(json.dumps(report, indent=1))
    (out_dir / 'results.md').write_text(report['markdown'])
    print(report['markdown'])
    print(f'written to {out_dir}')
