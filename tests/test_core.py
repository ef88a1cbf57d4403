"""Calibration, geometry, one-pass reductions and CoM against hand values."""

import dask.array as da
import numpy as np
import pytest

from napari_phase import Calibration, CalibrationError, DataCube, DataCubeError
from napari_phase.compute.calibration import electron_wavelength
from napari_phase.compute.com import center_of_mass
from napari_phase.compute.geometry import (
    detector_to_scan,
    rotation_matrix,
    scan_to_detector,
    wrap_degrees,
)
from napari_phase.compute.reduce import detector_sums, mean_and_max_pattern


def test_wavelength_300kv():
    # Tabulated relativistic wavelength at 300 kV: 0.01969 Å.
    assert electron_wavelength(300e3) == pytest.approx(0.019687, abs=2e-6)


def test_calibration_round_trip_and_errors():
    cal = Calibration(scan_step=2.39, q_pixel_mrad=0.8, energy=300e3,
                      probe_center=(10.5, 11.0), aberrations={'C12': 5.0})
    again = Calibration.from_dict(cal.to_dict())
    assert again == cal
    assert cal.q_pixel_inv_A == pytest.approx(0.8e-3 / 0.019687, rel=1e-4)
    with pytest.raises(TypeError, match='unknown calibration field'):
        Calibration.from_dict({'scan_stepp': 1.0})
    with pytest.raises(CalibrationError, match='beam energy'):
        Calibration(scan_step=1.0).require('scan_step', 'energy')
    filled, which = Calibration(scan_step=2.0).with_defaults()
    assert filled.scan_step == 2.0 and 'energy' in which


def test_calibration_is_evented():
    cal = Calibration()
    seen = []
    cal.events.C1.connect(seen.append)
    cal.update(C1=400.0)
    assert seen == [400.0]


@pytest.mark.parametrize('transpose', [False, True])
def test_geometry_inverse_and_rotation_sense(transpose):
    v = np.random.default_rng(0).normal(size=(2, 5))
    back = scan_to_detector(detector_to_scan(v, 37.0, transpose), 37.0,
                            transpose)
    np.testing.assert_allclose(back, v, atol=1e-12)
    # R(90°) turns x into y (counter-clockwise in the x, y plane).
    np.testing.assert_allclose(rotation_matrix(90) @ [1, 0], [0, 1],
                               atol=1e-12)
    assert wrap_degrees(190.0) == pytest.approx(-170.0)
    assert wrap_degrees(-180.0) == 180.0


def _random_cube(seed=0, shape=(5, 7, 6, 8)):
    return np.random.default_rng(seed).poisson(3.0, shape).astype(np.float32)


def test_detector_sums_numpy_and_dask_equal_reference():
    data = _random_cube()
    weights = np.random.default_rng(1).random((3, 6, 8)).astype(np.float32)
    expected = np.einsum('abij,kij->kab', data.astype(np.float64), weights)
    np.testing.assert_allclose(detector_sums(data, weights), expected,
                               rtol=1e-5)
    lazy = da.from_array(data, chunks=(2, 3, 6, 8))
    np.testing.assert_allclose(detector_sums(lazy, weights), expected,
                               rtol=1e-5)
    np.testing.assert_allclose(detector_sums(data, weights[0]), expected[0],
                               rtol=1e-5)
    with pytest.raises(ValueError, match='do not match the detector'):
        detector_sums(data, weights[:, :5])


def test_mean_and_max_pattern_one_pass():
    data = _random_cube()
    for array in (data, da.from_array(data, chunks=(2, 7, 6, 8))):
        ticks = []
        mean, peak = mean_and_max_pattern(array, ticks.append)
        np.testing.assert_allclose(mean, data.mean(axis=(0, 1)), rtol=1e-6)
        np.testing.assert_array_equal(peak, data.max(axis=(0, 1)))
        assert ticks and ticks[-1] == pytest.approx(1.0)


def test_center_of_mass_hand_computed():
    data = np.zeros((2, 3, 5, 5), np.float32)
    data[..., 1, 3] = 1.0
    data[..., 3, 3] = 3.0  # CoM x = (1 + 9) / 4 = 2.5, y = 3
    data[1, 2] = 0.0  # an empty pattern: reported, NaN-free
    result = center_of_mass(data, descan='constant')
    assert result.empty == 1
    np.testing.assert_allclose(result.com[:, 0, 0], [2.5, 3.0])
    assert np.isfinite(result.com).all()
    np.testing.assert_allclose(result.shift, 0.0, atol=1e-12)
    with pytest.raises(ValueError, match='selects no pixel'):
        center_of_mass(data, mask=np.zeros((5, 5)))


@pytest.mark.parametrize(
    'array, message',
    [
        (np.zeros((2, 2, 3)), 'needs 4 axes'),
        (np.zeros((2, 2, 3, 3, 1)), 'needs 4 axes'),
        (np.zeros((2, 0, 3, 3)), 'empty'),
        (np.zeros((2, 2, 3, 3), complex), 'not a real number'),
    ],
)
def test_datacube_rejects_bad_arrays(array, message):
    with pytest.raises(DataCubeError, match=message):
        DataCube(array, source='x.h5::/data')
