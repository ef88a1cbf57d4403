"""EMD 1.0 (py4DSTEM / emdfile layout): round trips and unit mapping."""

import h5py
import numpy as np
import pytest

from napari_phase import (
    Calibration,
    DataCube,
    read_datacube,
    read_probe,
    write_emd,
    write_emd_probe,
)
from napari_phase.compute.calibration import electron_wavelength
from napari_phase.io.layers import META
from napari_phase.io.napari_reader import get_reader
from napari_phase.io.read import dask_chunks

FULL = Calibration(
    scan_step=2.39, q_pixel_mrad=0.41, energy=300e3, semiangle=22.6,
    probe_center=(3.25, 2.75), probe_radius=2.5, rotation_deg=-15.0,
    transpose=True, C1=400.0, aberrations={'C12': 20.0, 'phi12': 30.0},
    half_turn='forced by the user',
)


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    return rng.poisson(7, size=(5, 6, 7, 8)).astype(np.uint16)


def test_round_trip_exact_data_and_calibration(tmp_path, data):
    path = tmp_path / 'scan.emd'
    write_emd(path, DataCube(data, FULL.copy()))
    cube = read_datacube(path)
    assert not cube.is_lazy
    assert cube.data.dtype == data.dtype
    np.testing.assert_array_equal(cube.data, data)
    assert cube.calibration == FULL
    assert cube.source == f'{path}::/datacube_root/datacube/data'


def test_layout_is_emdfiles(tmp_path, data):
    """The groups, tags and dim vectors py4DSTEM's reader looks for."""
    path = tmp_path / 'scan.emd'
    write_emd(path, DataCube(data, FULL.copy()))
    with h5py.File(path, 'r') as h5:
        assert h5.attrs['emd_group_type'] == 'file'
        assert (h5.attrs['version_major'], h5.attrs['version_minor']) == (1, 0)
        root = h5['datacube_root']
        assert root.attrs['emd_group_type'] == 'root'
        group = root['datacube']
        assert dict(group.attrs) == {
            'emd_group_type': 'array', 'python_class': 'DataCube'}
        names = [group[f'dim{n}'].attrs['name'] for n in range(4)]
        assert names == ['Rx', 'Ry', 'Qx', 'Qy']
        np.testing.assert_allclose(group['dim0'][()], [0, 2.39])
        np.testing.assert_allclose(group['dim2'][()], [-3.25, -3.25 + 0.41])
        cal = root['metadatabundle/calibration']
        assert cal.attrs['python_class'] == 'Calibration'
        assert cal['R_pixel_units'].attrs['type'] == 'string'
        assert cal['R_pixel_units'][()] == b'A'
        assert cal['Q_pixel_size'][()] == 0.41
        assert cal['QR_flip'][()] and cal['QR_flip'].attrs['type'] == 'bool'
        assert cal['_target_paths/0'][()] == b'/datacube'


def _as_py4dstem_only(path, **fields):
    """Drop napari-phase's own record and set py4DSTEM calibration fields,
    as if py4DSTEM had written the file."""
    with h5py.File(path, 'r+') as h5:
        bundle = h5['datacube_root/metadatabundle']
        del bundle['napari_phase']
        for key, value in fields.items():
            del bundle['calibration'][key]
            bundle['calibration'][key] = value


def test_py4dstem_units_are_converted(tmp_path, data):
    path = tmp_path / 'nm.emd'
    write_emd(path, DataCube(data, FULL.copy()))
    _as_py4dstem_only(path, R_pixel_size=0.239, R_pixel_units=b'nm')
    with pytest.warns(UserWarning, match='beam energy'):
        cal = read_datacube(path).calibration
    assert cal.scan_step == pytest.approx(2.39)
    assert cal.q_pixel_mrad == 0.41
    assert (cal.rotation_deg, cal.transpose) == (-15.0, True)
    assert cal.probe_center == (3.25, 2.75)
    assert cal.energy is None and cal.C1 is None


def test_inverse_angstrom_needs_the_energy(tmp_path, data):
    path = tmp_path / 'q.emd'
    write_emd(path, DataCube(data, FULL.copy()))
    _as_py4dstem_only(path, Q_pixel_size=0.01, Q_pixel_units=b'A^-1')
    with pytest.warns(UserWarning) as caught:
        cal = read_datacube(path).calibration
    texts = ' '.join(str(w.message) for w in caught)
    assert 'A^-1 cannot be converted to mrad without the beam energy' in texts
    assert 'detector pixel size (mrad)' in texts
    assert 'beam energy (eV)' in texts
    assert cal.q_pixel_mrad is None


def test_inverse_angstrom_with_energy(tmp_path, data):
    """With our record present (energy known), Å⁻¹ converts: q·λ."""
    path = tmp_path / 'q.emd'
    write_emd(path, DataCube(data, FULL.copy()))
    with h5py.File(path, 'r+') as h5:
        cal = h5['datacube_root/metadatabundle/calibration']
        del cal['Q_pixel_size'], cal['Q_pixel_units']
        cal['Q_pixel_size'], cal['Q_pixel_units'] = 0.01, b'A^-1'
    cube = read_datacube(path)
    expected = 0.01 * electron_wavelength(300e3) * 1e3
    assert cube.calibration.q_pixel_mrad == pytest.approx(expected)


def test_unknown_calibration_is_none_with_warning(tmp_path, data):
    path = tmp_path / 'bare.emd'
    write_emd(path, DataCube(data))
    with pytest.warns(UserWarning, match=r'scan step \(Å\), detector pixel '
                      r'size \(mrad\), beam energy \(eV\), probe convergence'):
        cube = read_datacube(path)
    assert cube.calibration == Calibration()


def test_lazy_equals_eager_and_lazy_writes(tmp_path, data):
    path = tmp_path / 'scan.emd'
    write_emd(path, DataCube(data, FULL.copy()))
    lazy = read_datacube(path, lazy=True)
    assert lazy.is_lazy
    np.testing.assert_array_equal(lazy.data.compute(), data)
    assert read_datacube(path, memory_fraction=1e-12).is_lazy
    copy = tmp_path / 'copy.emd'
    write_emd(copy, lazy)  # block by block from the open file
    np.testing.assert_array_equal(read_datacube(copy).data, data)


def test_dataset_path_selects_the_array(tmp_path, data):
    path = tmp_path / 'scan.emd'
    write_emd(path, DataCube(data, FULL.copy()))
    for inner in ('/datacube_root/datacube', 'datacube_root/datacube/data'):
        cube = read_datacube(f'{path}::{inner}')
        np.testing.assert_array_equal(cube.data, data)
        assert cube.calibration == FULL


def test_probe_round_trip(tmp_path, data):
    path = tmp_path / 'probe.emd'
    probe = data[0, 0].astype(np.float32)
    write_emd_probe(path, probe, FULL)
    image, cal = read_probe(path)
    np.testing.assert_array_equal(image, probe)
    assert cal == FULL
    with h5py.File(path, 'r') as h5:
        group = h5['vacuum_probe_root/vacuum_probe']
        assert group.attrs['python_class'] == 'DiffractionSlice'
    (layer_data, attrs, _), = get_reader(str(path))(str(path))
    np.testing.assert_array_equal(layer_data[:, :, 0, 0], probe)
    assert attrs['metadata'][META]['calibration'] == FULL
    assert attrs['scale'] == (0.41, 0.41, 2.39, 2.39)


def test_py4dstem_probe_stack(tmp_path, data):
    """A py4DSTEM Probe: a (probe, kernel) stack labelled '_labels_'."""
    path = tmp_path / 'probe.emd'
    probe = data[1, 1].astype(np.float32)
    write_emd_probe(path, probe, Calibration(q_pixel_mrad=0.41))
    with h5py.File(path, 'r+') as h5:
        group = h5['vacuum_probe_root/vacuum_probe']
        del group['data']
        group['data'] = np.stack([np.zeros_like(probe), probe])
        group['dim2'] = np.array([b'kernel', b'probe'])
        group['dim2'].attrs['name'] = '_labels_'
        group.attrs['python_class'] = 'Probe'
    image, cal = read_probe(path)
    np.testing.assert_array_equal(image, probe)
    assert cal.q_pixel_mrad == 0.41


def test_dask_chunks_follow_hdf5_chunks():
    pattern = 128 * 128 * 4
    chunks = dask_chunks((100, 90, 128, 128), 4, (3, 5, 128, 128),
                         budget=pattern * 90 * 6)
    assert chunks == (6, 90, 128, 128)
    chunks = dask_chunks((100, 90, 128, 128), 4, (3, 5, 64, 64),
                         budget=pattern * 3 * 20)
    assert chunks == (3, 20, 128, 128)
