"""Files laid out as instruments and other programs write them (see
layouts.py): the right dataset, scan shape and calibration, or one named
error; a damaged compressed chunk is an error and the process survives;
input bytes never change."""

import subprocess
import sys
import textwrap
import warnings

import hdf5plugin
import numpy as np
import pytest
from layouts import (
    corrupt_block_size,
    corrupt_payload,
    corrupt_total_size,
    sha256,
    write_arina,
    write_fpd,
    write_prismatic,
)

from napari_phase import read_datacube
from napari_phase.compute.calibration import electron_wavelength
from napari_phase.io.napari_reader import get_reader
from napari_phase.io.read import ReadError, candidates

DETECTOR = (24, 20)


def frames(n, seed=5, detector=DETECTOR):
    rng = np.random.default_rng(seed)
    return rng.poisson(3, size=(n, *detector)).astype(np.uint16)


def files_of(folder):
    return {p: sha256(p) for p in folder.rglob('*') if p.is_file()}


# --- DECTRIS ARINA ----------------------------------------------------------
@pytest.mark.parametrize('camera, tension', [(0.25, 300e3), (250.0, 300.0)])
def test_arina_scan_and_step_from_the_side_file(tmp_path, camera, tension):
    """16 triggers × 1 image and a side file giving a 4×4 scan of 0.139 nm
    (the issue's file); camera length in m or mm, high tension in V or
    kV."""
    data = frames(16)
    master = write_arina(tmp_path, data, side={
        'NumPixelsX': 4, 'NumPixelsY': 4, 'Pixel Size': 0.139,
        'Camera Length': camera, 'High Tension': tension,
    })
    before = files_of(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # nothing guessed, nothing missing
        warnings.filterwarnings('ignore', '.*does not give the probe')
        cube = read_datacube(master)
    assert cube.scan_shape == (4, 4)
    np.testing.assert_array_equal(cube.data, data.reshape(4, 4, *DETECTOR))
    cal = cube.calibration
    assert cal.scan_step == pytest.approx(1.39)
    assert cal.energy == pytest.approx(300e3)
    assert cal.q_pixel_mrad == pytest.approx(1e3 * 100e-6 / 0.25)  # 0.4
    assert files_of(tmp_path) == before


def test_arina_side_file_shape_is_lines_by_positions(tmp_path):
    """NumPixelsX positions per line (fast axis Ry), NumPixelsY lines."""
    data = frames(15)
    master = write_arina(tmp_path, data, side={
        'NumPixelsX': 5, 'NumPixelsY': 3, 'Pixel Size': 0.2})
    cube = read_datacube(master)
    np.testing.assert_array_equal(cube.data, data.reshape(3, 5, *DETECTOR))
    lazy = read_datacube(master, lazy=True)
    np.testing.assert_array_equal(lazy.data.compute(), cube.data)


def test_arina_side_file_that_disagrees_is_named(tmp_path):
    master = write_arina(tmp_path, frames(16), side={
        'NumPixelsX': 5, 'NumPixelsY': 4})
    with pytest.raises(ReadError, match=r'side metadata file .*scan\.h5 '
                       r'gives a 4×5 scan .* 16 frames'):
        read_datacube(master)
    assert read_datacube(master, scan_shape=(2, 8)).scan_shape == (2, 8)


def test_arina_without_side_file_guesses_with_a_warning(tmp_path):
    data = frames(16)
    master = write_arina(tmp_path, data)
    with pytest.warns(UserWarning, match=r'scan shape 4×4 was guessed from '
                      r'ntrigger × nimages \(16 frames\); there is no side '
                      r'metadata file scan\.h5'):
        cube = read_datacube(master)
    np.testing.assert_array_equal(cube.data, data.reshape(4, 4, *DETECTOR))
    assert cube.calibration.scan_step is None
    assert cube.calibration.q_pixel_mrad == pytest.approx(0.1)  # 100 µm/1 m
    assert cube.calibration.energy == 200e3  # photon_energy
    lines = write_arina(tmp_path, frames(12), name='lines', nimages=4)
    with pytest.warns(UserWarning, match='scan shape 3×4 was guessed'):
        assert read_datacube(lines).scan_shape == (3, 4)
    odd = write_arina(tmp_path, frames(15), name='odd')
    with pytest.raises(ReadError, match=r'15 frames .* give it \(in napari: '
                       r'Open 4D-STEM data in Plugins > napari-phase'):
        read_datacube(odd)


def test_truncated_data_file_names_master_dataset_and_data_file(tmp_path):
    master = write_arina(tmp_path, frames(16), side={
        'NumPixelsX': 4, 'NumPixelsY': 4})
    data_file = tmp_path / 'scan_data_000001.h5'
    content = data_file.read_bytes()
    data_file.write_bytes(content[: len(content) // 2])
    before = files_of(tmp_path)
    with pytest.raises(ReadError) as error:
        read_datacube(master)
    message = str(error.value)
    assert message.startswith(f'{master}: dataset /entry/data/data_000001: ')
    assert f'in its data file {data_file}' in message
    assert (f'the file is truncated: {len(content) // 2} of {len(content)} '
            'bytes are there') in message
    assert '"' not in message and 'synchronously' not in message
    assert files_of(tmp_path) == before


# --- damaged compressed chunks ----------------------------------------------
READ_IN_CHILD = textwrap.dedent('''
    import sys
    from napari_phase import read_datacube
    from napari_phase.io.read import ReadError
    for path in sys.argv[1:]:
        for lazy in (False, True):
            try:
                cube = read_datacube(path, lazy=lazy)
                cube.data.sum().compute() if lazy else cube.data.sum()
                print('read without error')
            except ReadError as error:
                print(str(error).replace('\\n', ' '))
''')
DAMAGES = [(corrupt_block_size, 'bitshuffle'), (corrupt_total_size,
            'bitshuffle'), (corrupt_payload, 'bitshuffle'),
           (corrupt_block_size, 'lz4'), (corrupt_payload, 'lz4')]


def test_damaged_chunks_are_errors_not_crashes(tmp_path):
    """Block sizes or data damaged in one chunk of a bitshuffle-LZ4 or LZ4
    data file: reading (in memory and lazily) gives an error naming the
    master, the dataset and the data file. Unchecked, HDF5's bitshuffle
    filter segfaults on the first two (hdf5plugin 7.1, 96×96 frames). The
    reads run in a child process, so that a crash (a negative exit status)
    cannot take the tests down."""
    masters = []
    for i, (damage, compression) in enumerate(DAMAGES):
        folder = tmp_path / str(i)
        folder.mkdir()
        filter_ = (hdf5plugin.Bitshuffle(cname='lz4') if compression ==
                   'bitshuffle' else hdf5plugin.LZ4(nbytes=256))
        masters.append(write_arina(folder, frames(16, detector=(96, 96)),
                                   compression=filter_,
                                   side={'NumPixelsX': 4, 'NumPixelsY': 4}))
        damage(folder / 'scan_data_000001.h5', 'entry/data/data', (5, 0, 0))
    before = files_of(tmp_path)
    done = subprocess.run([sys.executable, '-c', READ_IN_CHILD, *map(
        str, masters)], capture_output=True, text=True, timeout=300,
        check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 2 * len(DAMAGES)
    for i, (damage, compression) in enumerate(DAMAGES):
        data_file = masters[i].parent / 'scan_data_000001.h5'
        for message in lines[2 * i: 2 * i + 2]:
            assert message.startswith(
                f'{masters[i]}: dataset /entry/data/data_000001 '
                f'(external link to /entry/data/data in data file '
                f'{data_file})'), message
            if damage is corrupt_payload and compression == 'bitshuffle':
                # framing intact: HDF5's bounds-checked LZ4 step rejects it
                assert 'cannot read the data' in message
            else:
                assert 'the compressed chunk at (5, 0, 0) is damaged' in (
                    message)
    assert files_of(tmp_path) == before


def test_good_chunks_are_checked_once(tmp_path, monkeypatch):
    from napari_phase.io import checked

    calls = []
    real = checked.bitshuffle_problem
    monkeypatch.setattr(checked, 'bitshuffle_problem',
                        lambda *a: calls.append(1) or real(*a))
    master = write_arina(tmp_path, frames(16), side={
        'NumPixelsX': 4, 'NumPixelsY': 4})
    cube = read_datacube(master, lazy=True)
    cube.data.sum().compute()
    cube.data[1].sum().compute()
    assert len(calls) == 16


# --- fpd / Merlin HDF5 --------------------------------------------------------
def test_fpd_diffraction_data_not_a_parameter_table(tmp_path):
    """The 5D (2, 2, 1, 256, 256) data next to 4D Threshold/DAC tables."""
    rng = np.random.default_rng(2)
    data = rng.poisson(2, size=(2, 2, 1, 256, 256)).astype(np.uint16)
    path = tmp_path / 'merlin.hdf5'
    write_fpd(path, data, scan_step_nm=0.5)
    before = sha256(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        cube = read_datacube(path)
    assert cube.source == f'{path}::/fpd_expt/fpd_data/data'
    np.testing.assert_array_equal(cube.data, data[:, :, 0])
    assert cube.calibration.scan_step == pytest.approx(5.0)
    assert not [w for w in caught if 'candidates' in str(w.message)]
    lazy = read_datacube(path, lazy=True)
    assert lazy.data.shape == (2, 2, 256, 256)
    np.testing.assert_array_equal(lazy.data.compute(), data[:, :, 0])
    assert [c.name for c in candidates(path)] == ['/fpd_expt/fpd_data/data']
    with pytest.raises(ReadError, match=r'dataset /fpd_expt/Threshold/data: '
                       r'shape \(2, 2, 1, 8\) is not a 4D-STEM datacube'):
        read_datacube(f'{path}::/fpd_expt/Threshold/data')
    assert get_reader(str(path)) is not None
    assert sha256(path) == before


def test_other_candidates_are_named(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.poisson(2, size=(2, 2, 1, 32, 32)).astype(np.uint16)
    path = tmp_path / 'two.hdf5'
    write_fpd(path, data)
    import h5py

    with h5py.File(path, 'a') as h5:
        h5['extra/frames'] = np.ones((9, 32, 32), np.float32)
        h5['extra/binned'] = np.ones((2, 2, 8, 8), np.float32)
    with pytest.warns(UserWarning, match=(
            r'reading /fpd_expt/fpd_data/data \(5D \(2, 2, 1, 32, 32\) '
            r'uint16\) as the datacube .* other candidates: /extra/frames '
            r'\(3D \(9, 32, 32\) float32\), /extra/binned')):
        read_datacube(path)
    assert [c.needs_scan_shape for c in candidates(path)] == [
        False, True, False]
    cube = read_datacube(f'{path}::/extra/frames', scan_shape=(3, 3))
    assert cube.data.shape == (3, 3, 32, 32)


# --- Prismatic EMD 0.5 --------------------------------------------------------
def test_prismatic_calibration_from_dim_vectors(tmp_path):
    rng = np.random.default_rng(6)
    data = rng.random((3, 4, 32, 32), dtype=np.float32)
    path = tmp_path / 'prismatic.h5'
    write_prismatic(path, data, step_nm=0.5, dq_per_A=0.02, energy_kv=300,
                    semiangle=20.0)
    before = sha256(path)
    cube = read_datacube(path)
    assert cube.source.endswith(
        '::/4DSTEM_simulation/data/datacubes/CBED_array_depth0000/datacube')
    np.testing.assert_array_equal(cube.data, data)
    cal = cube.calibration
    assert cal.scan_step == pytest.approx(5.0)
    assert cal.energy == pytest.approx(300e3)
    assert cal.semiangle == 20.0
    expected = 0.02 * electron_wavelength(300e3) * 1e3  # θ = λ·q
    assert cal.q_pixel_mrad == pytest.approx(expected)
    assert sha256(path) == before


def test_prismatic_without_energy_keeps_the_step(tmp_path):
    data = np.ones((3, 4, 32, 32), np.float32)
    path = tmp_path / 'prismatic.h5'
    write_prismatic(path, data, energy_kv=None)
    with pytest.warns(UserWarning, match=r'detector pixel 0\.02 å\^-1 cannot '
                      r'be converted to mrad without the beam energy'):
        cal = read_datacube(path).calibration
    assert cal.scan_step == pytest.approx(5.0)
    assert cal.q_pixel_mrad is None and cal.energy is None


def test_arina_candidate_for_the_widget(tmp_path):
    master = write_arina(tmp_path, frames(15))
    found, = candidates(master)
    assert (found.name, found.shape, found.needs_scan_shape) == (
        '/entry/data', (15, *DETECTOR), True)
    cube = read_datacube(f'{master}::/entry/data', scan_shape=(3, 5))
    assert cube.scan_shape == (3, 5)
