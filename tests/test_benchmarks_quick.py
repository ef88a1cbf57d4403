"""The benchmark harness, as CI runs it: ``--quick --ours-only``."""

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = [
    'read', 'mean pattern', 'probe fit', 'virtual BF+ADF', 'DPC',
    'parallax: preprocess', 'parallax: align', 'parallax: fit + upsample',
    'parallax: CTF correct', 'parallax (total)', 'ptycho: preprocess',
    'ptycho: per iteration', 'ptycho: 64 iterations',
]


def test_quick_benchmark_gives_every_stage_with_finite_numbers(tmp_path):
    done = subprocess.run(
        [sys.executable, '-m', 'benchmarks', '--quick', '--ours-only',
         '--out', str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / 'results.json').read_text())
    ours = report['tools']['ours']

    assert list(ours['stages']) == STAGES
    for name, stage in ours['stages'].items():
        assert 'error' not in stage, f'{name}: {stage}'
        assert math.isfinite(stage['seconds']) and stage['seconds'] >= 0
    assert set(ours['quality']) == {'dpc', 'parallax', 'ptycho'}
    for image, found in ours['quality'].items():
        assert -1 <= found['correlation'] <= 1, image
        assert found['sign'] in (-1, 1)
        assert all(math.isfinite(s) for s in found['shift_px'])
    for method in ('dpc', 'parallax'):
        assert math.isfinite(ours['fits'][method]['rotation_deg'])
    assert math.isfinite(ours['fits']['parallax']['C1'])
    floors = report['floors']
    assert floors['read']['GB_per_s'] > 0
    assert floors['fft']['ptycho_iteration_seconds'] > 0

    table = (tmp_path / 'results.md').read_text()
    assert table == report['markdown']
    rows = [line.split(' | ')[0].lstrip('| ') for line in table.splitlines()
            if line.startswith('| ') and not line.startswith('| stage')]
    assert [row.split(' (extrapolated')[0] for row in rows] == STAGES
    assert (tmp_path / 'runs' / 'ours-0' / 'ptycho.npy').exists()


def test_tutorial_figure_scores_each_option_and_stays_small(tmp_path):
    """Two iterations of the tutorial's figure (benchmarks/
    tutorial_figure.py) on the stored independent dataset: a finite
    correlation with the truth per option and a PNG under 300 kB."""
    from benchmarks import tutorial_figure

    out = tmp_path / 'options.png'
    scores = tutorial_figure.main(['--iterations', '2', '--out', str(out)])
    assert len(scores) == 3
    assert all(0 < r <= 1 for r in scores.values()), scores
    assert 0 < out.stat().st_size < 300_000
