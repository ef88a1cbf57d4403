"""The command line: demo files, recipe replay, bad input."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from gui import canvas_point, choose, click, drag, type_into

from napari_phase import load_results, simulate, write_emd, write_emd_probe
from napari_phase.cli import main
from napari_phase.io.results import saved_recipe
from napari_phase.recipe import new_recipe, read_recipe, write_recipe


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


def run_widget(qtbot, widget):
    """Press a step's run button and wait for its job to finish."""
    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=120000)
    status = widget.runner.status.value
    assert 'Error' not in status, status


def test_exported_recipe_replays_the_widget_session_exactly(
    files, tmp_path, make_napari_viewer, qtbot
):
    """Calibrate, DPC (mask: a detector drawn as a disk), parallax and
    ptychography pressed in the napari-phase dock → Export recipe →
    `napari-phase run --recipe` gives the same arrays."""
    data, probe = files
    viewer = make_napari_viewer(show=True)
    viewer.open(data, plugin='napari-phase')
    viewer.open(probe, plugin='napari-phase')
    _, workflow = viewer.window.add_plugin_dock_widget('napari-phase',
                                                       'napari-phase')
    calibrate = workflow.open_step('Calibration')
    run_widget(qtbot, calibrate)
    click(calibrate.apply_button)
    detectors = workflow.open_step('Virtual detectors')
    click(detectors.bf_button)
    qtbot.waitUntil(lambda: 'virtual BF' in viewer.layers, timeout=30000)
    cal = viewer.layers[0].metadata['napari_phase']['datacube'].calibration
    view = detectors.view  # a second detector, drawn with the mouse
    corners = [canvas_point(view.qt_viewer.canvas, view.model.scene.camera,
                            (np.asarray(cal.probe_center) + shift)
                            * cal.q_pixel_mrad) for shift in (-10, 10)]
    (ellipse,) = [b for b in view.tools.buttons() if b.text() == 'ellipse']
    click(ellipse)
    drag(view.qt_viewer.canvas, *corners, qtbot=qtbot)
    qtbot.waitUntil(lambda: 'virtual detector 1' in viewer.layers,
                    timeout=30000)
    dpc = workflow.open_step('DPC')
    choose(dpc.mask, 'detector: detector 1')
    run_widget(qtbot, dpc)
    parallax = workflow.open_step('Parallax')
    run_widget(qtbot, parallax)
    ptycho = workflow.open_step('Ptychography')
    type_into(ptycho.num_iter, '3')
    run_widget(qtbot, ptycho)
    names = ('virtual BF', 'virtual detector 1', 'DPC phase', 'parallax BF',
             'parallax upsampled', 'parallax phase', 'ptychography phase')
    qtbot.waitUntil(lambda: all(name in viewer.layers for name in names),
                    timeout=10000)
    phase = viewer.layers['ptychography phase']  # the result, not a live one
    qtbot.waitUntil(lambda: 'calibration' in phase.metadata['napari_phase'][
        'parameters'], timeout=10000)
    session = {name: np.asarray(viewer.layers[name].data) for name in names}

    compare = workflow.open_step('Compare')
    recipe_path = tmp_path / 'session.yaml'
    type_into(compare.recipe_path, str(recipe_path))
    click(compare.export_button)
    assert compare.status.value == f'Recipe written to {recipe_path}'
    out = tmp_path / 'replay.h5'
    assert main(['run', data, '--probe', probe, '--recipe',
                 str(recipe_path), '-o', str(out)]) == 0
    replay = {attrs['name']: data for data, attrs, _ in load_results(out)}
    assert (tmp_path / 'replay.png').exists()
    for name in names:
        np.testing.assert_array_equal(replay[name], session[name],
                                      err_msg=name)


def test_bad_input_gives_one_line_and_no_file(files, tmp_path, capsys):
    data, _probe = files
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
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('napari-phase: error:')
    assert 'missing.h5' in lines[0] and 'Traceback' not in done.stderr


def test_demo_opens_napari_when_there_is_a_display(
    tmp_path, monkeypatch, qtbot
):
    """The demo window opens on the three phases side by side, with the
    diffraction view beside them."""
    import napari

    shown = {}

    def run():  # instead of napari's event loop: look, then close
        from napari_phase.widgets.diffraction_view import diffraction_view

        viewer = napari.current_viewer()
        qtbot.wait(300)  # let the widgets finish their first updates
        shown['layers'] = [layer.name for layer in viewer.layers]
        shown['visible'] = {layer.name for layer in viewer.layers
                            if layer.visible}
        shown['grid'] = viewer.canvas.grid.enabled
        shown['docks'] = list(viewer.window.dock_widgets)
        view = diffraction_view(viewer)
        shown['diffraction'] = (view.isVisible(),
                                'mean pattern' in view.model.layers)
        viewer.close()

    monkeypatch.setattr(napari, 'run', run)
    assert os.environ.get('DISPLAY')  # pytest-xvfb's display
    out = tmp_path / 'demo'
    assert main(['demo', '--quick', '--out', str(out)]) == 0
    assert not out.exists()  # a window, no files
    assert {'DPC phase', 'parallax phase', 'ptychography phase',
            'virtual BF'} <= set(shown['layers'])
    assert shown['visible'] == {'DPC phase', 'parallax phase',
                                'ptychography phase'}
    assert shown['grid']
    assert shown['diffraction'] == (True, True)
    assert any('napari-phase' in name for name in shown['docks'])
