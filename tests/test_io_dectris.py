"""DECTRIS NeXus master + compressed data files (written with hdf5plugin)."""

import hashlib

import h5py
import hdf5plugin
import numpy as np
import pytest

from napari_phase import read_datacube
from napari_phase.io.napari_reader import get_reader
from napari_phase.io.read import ReadError

SCAN, DETECTOR = (6, 5), (16, 12)


#: One data file compressed with each filter DECTRIS uses.
COMPRESSIONS = (hdf5plugin.Bitshuffle(cname='lz4'), hdf5plugin.LZ4())


def write_dectris(folder, frames, trigger=True):
    """A master file linking one data file per block of frames, like a
    DECTRIS ARINA acquisition (energy and pixel size in the master)."""
    master = folder / 'scan_master.h5'
    blocks = np.array_split(frames, len(COMPRESSIONS))
    with h5py.File(master, 'w') as h5:
        for i, (block, compression) in enumerate(
                zip(blocks, COMPRESSIONS, strict=True)):
            name = f'scan_data_{i + 1:06d}.h5'
            with h5py.File(folder / name, 'w') as data_file:
                data_file.create_dataset(
                    'entry/data/data', data=block,
                    chunks=(1, *block.shape[1:]), **compression)
            h5[f'entry/data/data_{i + 1:06d}'] = h5py.ExternalLink(
                name, '/entry/data/data')
        detector = h5.create_group('entry/instrument/detector')
        detector['x_pixel_size'] = 75e-6
        detector['detector_distance'] = 0.15
        specific = detector.create_group('detectorSpecific')
        specific['photon_energy'] = 200e3
        specific['nimages'] = SCAN[1] if trigger else len(frames)
        specific['ntrigger'] = SCAN[0] if trigger else 1
    return master


def filters(path):
    """HDF5 filter ids of the frames in a data file."""
    with h5py.File(path, 'r') as h5:
        plist = h5['entry/data/data'].id.get_create_plist()
        return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


@pytest.fixture
def frames():
    rng = np.random.default_rng(5)
    return rng.poisson(3, size=(SCAN[0] * SCAN[1], *DETECTOR)).astype(
        np.uint16)


def test_master_and_bslz4_lz4_data_files_read_back(tmp_path, frames):
    master = write_dectris(tmp_path, frames)
    assert filters(tmp_path / 'scan_data_000001.h5') == [32008]
    assert filters(tmp_path / 'scan_data_000002.h5') == [32004]
    with pytest.warns(UserWarning, match=r'scan shape 6×5 was guessed from '
                      r'ntrigger × nimages'):
        cube = read_datacube(master)
    np.testing.assert_array_equal(cube.data, frames.reshape(*SCAN, *DETECTOR))
    assert cube.calibration.energy == 200e3
    assert cube.calibration.q_pixel_mrad == pytest.approx(0.5)
    assert cube.source == f'{master}::/entry/data'
    lazy = read_datacube(master, lazy=True, scan_shape=SCAN)
    np.testing.assert_array_equal(lazy.data.compute(), cube.data)
    assert get_reader(str(master)) is not None


def test_scan_shape_asked_for_when_the_file_has_none(tmp_path, frames):
    master = write_dectris(tmp_path, frames, trigger=False)
    with pytest.raises(ReadError,
                       match=r'scan_shape=\(Rx, Ry\)\) with Rx·Ry = 30'):
        read_datacube(master)
    cube = read_datacube(master, scan_shape=(5, 6))
    np.testing.assert_array_equal(cube.data, frames.reshape(5, 6, *DETECTOR))
    with pytest.raises(ReadError, match='30 frames do not fill a scan of 4×6'):
        read_datacube(master, scan_shape=(4, 6))


def test_missing_data_file_is_named(tmp_path, frames):
    master = write_dectris(tmp_path, frames)
    (tmp_path / 'scan_data_000002.h5').unlink()
    before = hashlib.sha256(master.read_bytes()).hexdigest()
    with pytest.raises(ReadError) as error:
        read_datacube(master)
    message = str(error.value)
    assert str(master) in message
    assert ("/entry/data/data_000002: its data file 'scan_data_000002.h5' "
            'is missing') in message
    assert hashlib.sha256(master.read_bytes()).hexdigest() == before
