"""Saving results: round trip, atomic writes, no silent overwrite."""

import h5py
import numpy as np
import pytest
from napari.layers import Layer

from napari_phase import Calibration, DataCube
from napari_phase.io import results as results_io
from napari_phase.io.results import (
    ResultsError,
    is_results_file,
    load_results,
    results_reader,
    save_results,
    saved_recipe,
)
from napari_phase.widgets._common import real_space_layer


def sample_layers():
    rng = np.random.default_rng(0)
    calibration = Calibration(scan_step=2.39, energy=300e3, C1=401.5,
                              probe_center=(48.3, 47.8),
                              aberrations={'C12': 20.0, 'phi12': 30.0})
    cube = DataCube(np.zeros((2, 2, 4, 4), np.float32), calibration,
                    source='scan.h5::/data')
    dpc = real_space_layer(
        rng.standard_normal((32, 32)).astype(np.float32), 'DPC phase', 2.39,
        {'method': 'dpc', 'rotation_deg': -15.0, 'mask_threshold': 0.8,
         'padding': (4, 4), 'weights': np.arange(3.0), 'calibration':
         calibration},
        origin=(0.0, 0.0), colormap='gray',
    )
    ptycho = real_space_layer(
        rng.standard_normal((70, 60)), 'Ptychography phase', 0.6,
        {'method': 'ptychography', 'iterations': 16, 'step_size': 0.5,
         'fix_probe': True, 'seed': np.int64(3)},
        origin=(-12.5, -9.0),
    )
    ptycho[1]['metadata']['napari_phase']['datacube'] = cube
    return [dpc, ptycho], calibration


def test_round_trip_gives_the_same_layers(tmp_path):
    layers, calibration = sample_layers()
    recipe = {'napari_phase_recipe': 1, 'steps': {'dpc': {'padding': (4, 4)}}}
    path = save_results(tmp_path / 'out.h5', layers, recipe=recipe)
    assert is_results_file(path)
    assert saved_recipe(path) == recipe
    loaded = load_results(path)
    assert [attrs['name'] for _, attrs, _ in loaded] == [
        'DPC phase', 'Ptychography phase']
    for (data, attrs, kind), (data2, attrs2, kind2) in zip(layers, loaded):
        assert kind2 == kind == 'image'
        np.testing.assert_array_equal(data2, data)
        assert data2.dtype == data.dtype
        assert attrs2['scale'] == attrs['scale']
        assert attrs2['translate'] == attrs['translate']
        assert attrs2['units'] == ['angstrom', 'angstrom']
    params = loaded[0][1]['metadata']['napari_phase']['parameters']
    original = layers[0][1]['metadata']['napari_phase']['parameters']
    assert params.keys() == original.keys()
    assert params['padding'] == (4, 4)
    np.testing.assert_array_equal(params['weights'], original['weights'])
    assert params['calibration'] == calibration
    assert loaded[0][1]['colormap'] == 'gray'
    meta = loaded[1][1]['metadata']['napari_phase']
    assert meta['parameters'] == {'method': 'ptychography', 'iterations': 16,
                                  'step_size': 0.5, 'fix_probe': True,
                                  'seed': 3}
    assert meta['source'] == 'scan.h5::/data'
    assert meta['calibration'] == calibration
    assert results_reader(str(path)) is load_results
    assert results_reader([str(path)]) is load_results


def test_reader_declines_other_files(tmp_path):
    other = tmp_path / 'cube.h5'
    with h5py.File(other, 'w') as file:
        file['data'] = np.zeros(3)
    assert results_reader(str(other)) is None
    (tmp_path / 'text.h5').write_text('not hdf5')
    assert results_reader(str(tmp_path / 'text.h5')) is None
    with pytest.raises(ResultsError, match='not a napari-phase results'):
        load_results(other)


def test_existing_file_is_not_overwritten_without_force(tmp_path):
    layers, _ = sample_layers()
    path = tmp_path / 'out.h5'
    path.write_bytes(b'precious')
    with pytest.raises(ResultsError, match='exists.*force'):
        save_results(path, layers)
    assert path.read_bytes() == b'precious'
    save_results(path, layers, force=True)
    assert len(load_results(path)) == 2


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    layers, _ = sample_layers()
    write_layer = results_io._write_layer
    calls = []

    def fail_on_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt('interrupted midway')
        return write_layer(*args)

    monkeypatch.setattr(results_io, '_write_layer', fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        save_results(tmp_path / 'out.h5', layers)
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_file(tmp_path):
    layers, _ = sample_layers()
    path = save_results(tmp_path / 'out.h5', layers[:1])
    bad = (np.zeros((4, 4)), {'name': 'bad', 'metadata': {
        'napari_phase': {'parameters': {'x': object()}}}}, 'image')
    with pytest.raises(ResultsError, match='cannot save a parameter'):
        save_results(path, [layers[1], bad], force=True)
    assert [a['name'] for _, a, _ in load_results(path)] == ['DPC phase']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.h5']


def test_unwritable_directory_is_a_clear_error(tmp_path):
    layers, _ = sample_layers()
    with pytest.raises(ResultsError, match='does not exist'):
        save_results(tmp_path / 'missing' / 'out.h5', layers)
    (tmp_path / 'file').write_text('')
    with pytest.raises(ResultsError, match='does not exist'):
        save_results(tmp_path / 'file' / 'out.h5', layers)
    with pytest.raises(ResultsError, match='is a directory'):
        save_results(tmp_path, layers, force=True)


def test_unsupported_layer_type_is_refused(tmp_path):
    with pytest.raises(ResultsError, match="'lines'.*shapes"):
        save_results(tmp_path / 'x.h5', [([], {'name': 'lines'}, 'shapes')])
    assert list(tmp_path.iterdir()) == []


def test_napari_writer_and_reader_round_trip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layers, _ = sample_layers()
    for layer in layers:
        viewer.add_layer(Layer.create(*layer))
    path = str(tmp_path / 'session.h5')
    viewer.layers.save(path, plugin='napari-phase')
    viewer.layers.clear()
    viewer.open(path, plugin='napari-phase')
    assert [layer.name for layer in viewer.layers] == [
        'DPC phase', 'Ptychography phase']
    for (data, attrs, _), layer in zip(layers, viewer.layers):
        np.testing.assert_array_equal(layer.data, data)
        np.testing.assert_allclose(layer.scale, attrs['scale'])
        np.testing.assert_allclose(layer.translate, attrs['translate'])
    params = viewer.layers[0].metadata['napari_phase']['parameters']
    assert params['rotation_deg'] == -15.0


def test_a_datacube_layer_is_saved_as_the_cube_the_cli_reads(
        make_napari_viewer, tmp_path, small_sim, capsys):
    """Saved with napari's Save (our writer), a datacube layer is written
    as EMD 1.0: read back as the same (Rx, Ry, Qx, Qy) cube with its
    calibration, and `napari-phase run` computes on it, not on the
    display-order array."""
    from napari_phase import read_datacube, read_probe
    from napari_phase.cli import main
    from napari_phase.io.layers import datacube_layers, probe_layers

    cube = DataCube(small_sim.datacube.data,
                    small_sim.datacube.calibration.copy(), 'sim')
    viewer = make_napari_viewer()
    for layer_tuple in (datacube_layers(cube, 'scan')
                        + probe_layers(small_sim.vacuum_probe,
                                       cube.calibration, 'probe')):
        viewer.add_layer(Layer.create(*layer_tuple))
    saved = tmp_path / 'scan.h5'
    viewer.layers.selection = {viewer.layers['scan']}
    viewer.layers.save(str(saved), selected=True, plugin='napari-phase')
    back = read_datacube(saved)
    assert back.scan_shape == (32, 32) and back.detector_shape == (96, 96)
    np.testing.assert_array_equal(back.data, cube.data)
    assert back.calibration == cube.calibration
    probe_path = tmp_path / 'probe.h5'
    viewer.layers.selection = {viewer.layers['probe']}
    viewer.layers.save(str(probe_path), selected=True, plugin='napari-phase')
    probe, _calibration = read_probe(probe_path)
    np.testing.assert_array_equal(probe, small_sim.vacuum_probe)
    out = tmp_path / 'dpc.h5'
    assert main(['run', str(saved), '--methods', 'dpc', '-o',
                 str(out)]) == 0, capsys.readouterr().err
    (phase,) = [data for data, attrs, _ in load_results(out)
                if attrs['name'] == 'DPC phase']
    assert phase.shape == (32, 32)


def test_the_writer_refuses_what_it_cannot_write_back(tmp_path, small_sim):
    """A datacube saved with other layers, or a layer that is no 2D image:
    a message, and no file."""
    from napari_phase.io.layers import datacube_layers

    cube = DataCube(small_sim.datacube.data[:4, :4],
                    small_sim.datacube.calibration.copy(), 'sim')
    (cube_layer,) = datacube_layers(cube, 'scan')
    dpc, _ = sample_layers()[0]
    path = tmp_path / 'out.h5'
    with pytest.raises(ResultsError, match="'scan' is a datacube: save it "
                       'on its own'):
        results_io.write_layers(str(path), [cube_layer, dpc])
    stack = (np.zeros((3, 4, 4)), {'name': 'stack'}, 'image')
    with pytest.raises(ResultsError, match="'stack' are not 2D"):
        results_io.write_layers(str(path), [stack])
    assert list(tmp_path.iterdir()) == []
