"""Bad input: one ReadError naming file, dataset and problem; the file's
bytes never change (files are opened read-only)."""

import hashlib

import h5py
import numpy as np
import pytest

from napari_phase import read_datacube, read_probe
from napari_phase.io.read import ReadError


def _hdf5(**datasets):
    def write(path):
        with h5py.File(path, 'w') as h5:
            for name, value in datasets.items():
                h5[name] = value
    return write


def _text(path):
    path.write_text('Rx Ry Qx Qy\n1 2 3 4\n')


def _truncated(path):
    _hdf5(data=np.ones((8, 8, 32, 32), np.float32))(path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def _strings(path):
    with h5py.File(path, 'w') as h5:
        h5.create_dataset('labels', shape=(2, 2, 2, 2),
                          dtype=h5py.string_dtype())


def _broken_link(path):
    with h5py.File(path, 'w') as h5:
        h5['data'] = h5py.ExternalLink('gone.h5', '/frames')


CASES = {
    'not hdf5': (_text, None, 'not an HDF5 file'),
    'truncated': (_truncated, None, 'truncated or corrupt'),
    'no 4D': (_hdf5(image=np.ones((4, 4))), None,
              ('no dataset looks like a 4D-STEM datacube (4D, 5D with a '
               'singleton axis, or 3D frames, with detector axes of 4 pixels '
               'or more); found: /image (2D (4, 4) float64)')),
    'table': (_hdf5(threshold=np.ones((2, 2, 1, 8))), None,
              'no dataset looks like a 4D-STEM datacube'),
    '3D': (_hdf5(frames=np.ones((6, 4, 4))), None,
           ('dataset /frames: 6 frames of (4, 4) pixels, and the file does '
            'not say the scan shape: give it (in napari: Open 4D-STEM data '
            'in Plugins > napari-phase; in Python: read_datacube(path, '
            'scan_shape=(Rx, Ry)) with Rx·Ry = 6)')),
    '5D': (_hdf5(stack=np.ones((2, 2, 2, 2, 2))), None, '/stack (5D'),
    '3D chosen': (_hdf5(frames=np.ones((6, 4, 4))), '/frames',
                  'dataset /frames: 6 frames of (4, 4) pixels'),
    '2D chosen': (_hdf5(image=np.ones((6, 4))), '/image',
                  'dataset /image: shape (6, 4) is not a 4D-STEM datacube'),
    'complex': (_hdf5(psi=np.ones((2, 2, 3, 3), np.complex64)), None,
                'dataset /psi: 4D but has dtype complex64, not a real number'),
    'string': (_strings, None, 'dataset /labels: 4D but has dtype object'),
    'empty axis': (_hdf5(data=np.ones((3, 0, 4, 4))), None,
                   'dataset /data: 4D but has an empty axis'),
    'broken link': (_broken_link, None,
                    ("/data is an external link to /frames in 'gone.h5', "
                     'which does not exist')),
    'no such dataset': (_hdf5(data=np.ones((2, 2, 2, 2))), '/nope',
                        'dataset /nope: there is no such path in the file'),
}


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize('case', CASES)
def test_bad_input_gives_one_named_error(tmp_path, case):
    write, inner, expected = CASES[case]
    path = tmp_path / 'input.h5'
    write(path)
    before = sha256(path)
    target = f'{path}::{inner}' if inner else path
    with pytest.raises(ReadError) as error:
        read_datacube(target)
    message = str(error.value)
    assert message.startswith(f'{path}: ')
    assert expected in message
    assert isinstance(error.value, ValueError)
    assert sha256(path) == before


def test_probe_errors_are_named(tmp_path):
    path = tmp_path / 'probe.h5'
    _hdf5(stack=np.ones((3, 4, 4)))(path)
    with pytest.raises(ReadError, match=r'no 2D numeric dataset \(2D probe '
                       r'image\) in the file; found: /stack'):
        read_probe(path)
    with pytest.raises(ReadError, match=r'probe.h5: dataset /stack: a vacuum '
                       r'probe is one 2D pattern, got shape \(3, 4, 4\)'):
        read_probe(f'{path}::/stack')


def test_non_finite_patterns_are_allowed_and_counted(tmp_path):
    data = np.ones((4, 5, 6, 6), np.float32)
    data[1, 2, 3, 3] = np.nan
    data[3, 0] = np.inf
    path = tmp_path / 'nan.h5'
    _hdf5(data=data)(path)
    with pytest.warns(UserWarning, match='2 of 20 diffraction patterns '
                      'contain NaN or inf'):
        cube = read_datacube(path)
    np.testing.assert_array_equal(cube.data, data)


def test_missing_calibration_is_reported(tmp_path):
    path = tmp_path / 'bare.h5'
    _hdf5(data=np.ones((2, 3, 4, 4), np.uint8))(path)
    with pytest.warns(UserWarning, match=r'does not give the scan step \(Å\), '
                      r'detector pixel size \(mrad\), beam energy \(eV\)'):
        cube = read_datacube(path)
    assert cube.calibration.missing('scan_step', 'q_pixel_mrad',
                                    'energy') == ['scan_step', 'q_pixel_mrad',
                                                  'energy']
