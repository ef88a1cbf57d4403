"""Generic HDF5 files, the lazy path and the npe2 reader check."""

import h5py
import numpy as np
import pytest

from napari_phase import read_datacube
from napari_phase.io.napari_reader import get_reader
from napari_phase.io.read import describe
from napari_phase.io.results import MARKER

SHAPE = (8, 6, 10, 12)


@pytest.fixture
def data():
    rng = np.random.default_rng(11)
    return rng.random(SHAPE, dtype=np.float32)


def test_one_4d_dataset_opens(tmp_path, data):
    path = tmp_path / 'plain.h5'
    with h5py.File(path, 'w') as h5:
        h5['scan/frames'] = data
        h5['scan/preview'] = data[:, :, 0, 0]
    cube = read_datacube(path)
    np.testing.assert_array_equal(cube.data, data)
    assert cube.source == f'{path}::/scan/frames'


def test_largest_of_several_is_chosen_and_reported(tmp_path, data):
    path = tmp_path / 'several.h5'
    with h5py.File(path, 'w') as h5:
        h5['small'] = data[:2]
        h5['big'] = data
    with pytest.warns(UserWarning, match=r'reading /big \(4D \(8, 6, 10, 12\) '
                      r'float32\) as the datacube \(the most plausible.*'
                      r'other candidates: /small \(4D \(2, 6, 10, 12\)'):
        cube = read_datacube(path)
    assert cube.source.endswith('::/big')
    np.testing.assert_array_equal(read_datacube(f'{path}::/small').data,
                                  data[:2])


def test_lazy_blocks_follow_the_hdf5_chunks(tmp_path, data):
    path = tmp_path / 'chunked.h5'
    with h5py.File(path, 'w') as h5:
        h5.create_dataset('data', data=data, chunks=(3, 2, 10, 12))
    cube = read_datacube(path, memory_fraction=1e-12)
    assert cube.is_lazy
    assert all(c % 3 == 0 for c in cube.data.chunks[0][:-1])
    assert cube.data.chunks[2:] == ((10,), (12,))
    np.testing.assert_array_equal(cube.data.compute(), data)
    eager = read_datacube(path, lazy=False)
    assert not eager.is_lazy
    np.testing.assert_array_equal(eager.data, data)


def test_reader_check(tmp_path, data):
    unrelated = tmp_path / 'image.h5'
    with h5py.File(unrelated, 'w') as h5:
        h5['image'] = data[0, 0]
        h5['volume'] = data[0]
    text = tmp_path / 'notes.h5'
    text.write_text('not HDF5')
    results = tmp_path / 'results.h5'
    with h5py.File(results, 'w') as h5:
        h5.attrs[MARKER] = 1
        h5['stack'] = data
    good = tmp_path / 'good.h5'
    with h5py.File(good, 'w') as h5:
        h5['data'] = data
    for path in (unrelated, text, tmp_path / 'absent.h5', tmp_path,
                 [str(good)]):
        checked = path if isinstance(path, list) else str(path)
        assert get_reader(checked) is None
    assert describe(results) is None  # results files have their own reader
    layers = get_reader(str(good))(str(good))
    (array, attrs, kind), = layers
    assert kind == 'image' and attrs['name'] == 'good'
    assert array.shape == (10, 12, 8, 6)
    np.testing.assert_array_equal(array[3, 4], data[:, :, 3, 4])
