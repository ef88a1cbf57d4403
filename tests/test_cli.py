"""The command line: demo files, recipe replay, bad input."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from napari_phase import load_results, simulate, write_emd, write_emd_probe
from napari_phase.cli import main
from napari_phase.io.results import saved_recipe
from napari_phase.recipe import new_recipe, read_recipe, write_recipe
from napari_phase.widgets.compare_widget import CompareWidget


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A small scan and its vacuum probe as EMD files."""
    folder = tmp_path_factory.mktemp('data')
    sim = simulate(scan_shape=(24, 24), detector_shape=(128, 128),
                   n_particles=3, seed=5)
    data, probe = folder / 'scan.h5', folder / 'probe.h5'
    write_emd(data, sim.datacube)
    write_emd_probe(probe, sim.vacuum_probe, sim.datacube.calibration)
    return str(data), str(probe)


def session_recipe():
    return new_recipe({
        'calibrate': {'thresh_upper': 0.7},
        'virtual': {},
        'dpc': {'mask': 'threshold', 'mask_threshold': 0.8},
        'parallax': {'min_alignment_bin': 8},
        'ptychography': {'num_iter': 3, 'fix_probe': True},
    }, seed=7)


def test_demo_headless_writes_its_files(tmp_path, capsys):
    out = tmp_path / 'demo'
    assert main(['demo', '--headless', '--quick', '--out', str(out)]) == 0
    printed = capsys.readouterr()
    paths = [out / name for name in ('results.h5', 'comparison.png',
                                     'recipe.yaml')]
    for path in paths:
        assert str(path.resolve()) in printed.out
        assert path.stat().st_size > 0
    names = [attrs['name'] for _, attrs, _ in load_results(paths[0])]
    assert {'DPC phase', 'parallax phase', 'ptychography phase'} <= set(names)
    assert read_recipe(paths[2]) == saved_recipe(paths[0])
    assert paths[1].read_bytes()[:4] == b'\x89PNG'
    assert 'ptychography' in printed.err and '100%' in printed.err
    # a second run never overwrites without --force
    assert main(['demo', '--headless', '--quick', '--out', str(out)]) == 2
    assert 'exists' in capsys.readouterr().err


def run_widget(qtbot, widget, start):
    """Start a widget's job and wait for its thread worker to finish."""
    start()
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=120000)
    status = widget.runner.status.value
    assert 'Error' not in status, status


def test_exported_recipe_replays_the_widget_session_exactly(
    files, tmp_path, make_napari_viewer, qtbot
):
    """Calibrate, DPC, parallax and ptychography in their widgets →
    Export recipe → `napari-phase run --recipe` gives the same arrays."""
    from napari_phase.widgets.calibration_widget import CalibrationWidget
    from napari_phase.widgets.dpc_widget import THRESHOLD, DPCWidget
    from napari_phase.widgets.parallax_widget import ParallaxWidget
    from napari_phase.widgets.ptycho_widget import PtychoWidget

    data, probe = files
    viewer = make_napari_viewer()
    viewer.open(data, plugin='napari-phase')
    viewer.open(probe, plugin='napari-phase')
    calibrate = CalibrationWidget(viewer)
    run_widget(qtbot, calibrate, calibrate.fit)
    calibrate.apply()
    dpc = DPCWidget(viewer)
    dpc.mask.value, dpc.threshold.value = THRESHOLD, 0.8
    run_widget(qtbot, dpc, dpc.run)
    parallax = ParallaxWidget(viewer)
    run_widget(qtbot, parallax, parallax.run)
    ptycho = PtychoWidget(viewer)
    ptycho.num_iter.value = 3
    run_widget(qtbot, ptycho, ptycho.run)
    names = ('DPC phase', 'parallax BF', 'parallax upsampled',
             'parallax phase', 'ptychography phase')
    session = {name: np.asarray(viewer.layers[name].data) for name in names}

    widget = CompareWidget(viewer)
    widget.recipe_path.value = tmp_path / 'session.yaml'
    recipe_path = widget.export_recipe()
    out = tmp_path / 'replay.h5'
    assert main(['run', data, '--probe', probe, '--recipe',
                 str(recipe_path), '-o', str(out)]) == 0
    replay = {attrs['name']: data for data, attrs, _ in load_results(out)}
    assert (tmp_path / 'replay.png').exists()
    for name in names:
        np.testing.assert_array_equal(replay[name], session[name],
                                      err_msg=name)


def test_bad_input_gives_one_line_and_no_file(files, tmp_path, capsys):
    data, probe = files
    out = tmp_path / 'out.h5'
    out.write_bytes(b'keep')
    assert main(['run', data, '-o', str(out), '--methods', 'dpc']) == 2
    assert out.read_bytes() == b'keep'
    assert "exists: not overwritten (use --force)" in capsys.readouterr().err

    bad = tmp_path / 'bad.yaml'
    write_recipe(bad, new_recipe({'dpc': {}}))
    bad.write_text(bad.read_text().replace('dpc: {}',
                                           'dpc: {rotation_deg: 3 nm}'))
    code = main(['run', data, '--recipe', str(bad), '-o',
                 str(tmp_path / 'new.h5')])
    error = capsys.readouterr().err
    assert code == 2 and 'dpc.rotation_deg' in error and 'length' in error
    assert main(['run', data, '-o', str(tmp_path / 'no' / 'x.h5')]) == 2
    assert 'does not exist' in capsys.readouterr().err
    assert main(['run', data, '--methods', 'dpc,phase', '-o',
                 str(tmp_path / 'new.h5')]) == 2
    assert 'unknown method' in capsys.readouterr().err
    bare = tmp_path / 'bare.h5'  # a 4D dataset without any calibration
    with h5py.File(bare, 'w') as file:
        file['data'] = np.ones((4, 4, 8, 8), np.float32)
    assert main(['run', str(bare), '--methods', 'dpc', '-o',
                 str(tmp_path / 'new.h5')]) == 2
    error = capsys.readouterr().err
    assert 'semiangle' in error and 'under "calibration:"' in error
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'bad.yaml', 'bare.h5', 'out.h5']


def test_entry_point_error_is_one_line_without_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, '-m', 'napari_phase.cli', 'run',
         str(tmp_path / 'missing.h5'), '-o', str(tmp_path / 'x.h5')],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('napari-phase: error:')
    assert 'missing.h5' in lines[0] and 'Traceback' not in done.stderr


def test_demo_opens_napari_when_there_is_a_display(
    tmp_path, monkeypatch, qtbot
):
    import napari

    shown = {}

    def run():  # instead of napari's event loop: look, then close
        viewer = napari.current_viewer()
        shown['layers'] = [layer.name for layer in viewer.layers]
        shown['docks'] = list(viewer.window.dock_widgets)
        qtbot.wait(300)  # let the widgets finish their first updates
        viewer.close()

    monkeypatch.setattr(napari, 'run', run)
    assert os.environ.get('DISPLAY')  # pytest-xvfb's display
    out = tmp_path / 'demo'
    assert main(['demo', '--quick', '--out', str(out)]) == 0
    assert not out.exists()  # a window, no files
    assert {'DPC phase', 'parallax phase', 'ptychography phase',
            'virtual BF'} <= set(shown['layers'])
    assert any('Compare results' in name for name in shown['docks'])
