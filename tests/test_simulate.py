"""The simulator is the ground truth: check it against physics."""

import numpy as np
import pytest

from napari_phase import simulate
from napari_phase.compute.com import center_of_mass
from napari_phase.compute.geometry import detector_to_scan


def test_vacuum_probe_radius_and_centre_match_calibration(small_sim):
    probe = small_sim.vacuum_probe
    cal = small_sim.datacube.calibration
    radius = np.sqrt((probe > 0.5 * probe.max()).sum() / np.pi)
    assert radius == pytest.approx(cal.semiangle / cal.q_pixel_mrad, abs=1.0)
    x, y = np.indices(probe.shape)
    centre = (probe * x).sum() / probe.sum(), (probe * y).sum() / probe.sum()
    np.testing.assert_allclose(centre, small_sim.truth['probe_center'],
                               atol=0.05)


def test_total_counts_match_dose(small_sim):
    counts = small_sim.datacube.data.sum(axis=(2, 3))
    expected = small_sim.truth['dose'] * small_sim.datacube.calibration.scan_step**2
    assert counts.mean() == pytest.approx(expected, rel=0.01)
    # Poisson noise: variance of the total equals its mean.
    assert counts.std() == pytest.approx(np.sqrt(expected), rel=0.2)
    assert np.all(small_sim.datacube.data == np.round(small_sim.datacube.data))


def test_seeded():
    a = simulate(scan_shape=(4, 4), detector_shape=(32, 32), seed=3)
    b = simulate(scan_shape=(4, 4), detector_shape=(32, 32), seed=3)
    np.testing.assert_array_equal(a.datacube.data, b.datacube.data)


@pytest.mark.parametrize('rotation, transpose',
                         [(-15.0, False), (168.0, True), (75.0, True)])
def test_rotation_and_transpose_map_the_true_phase_gradient(rotation,
                                                             transpose):
    """For a thin object the CoM equals ∇φ/2π at the probe (in focus):
    mapped to the scan frame with the true rotation and transpose it must
    match the gradient of the true phase at each scan position."""
    sim = simulate(scan_shape=(24, 24), detector_shape=(64, 64), C1=0.0,
                   dose=None, rotation_deg=rotation, transpose=transpose,
                   seed=5)
    cal = sim.datacube.calibration
    com = center_of_mass(sim.datacube.data, descan='none')
    shift = com.com - np.array(sim.truth['probe_center'])[:, None, None]
    measured = detector_to_scan(shift * cal.q_pixel_inv_A, rotation,
                                transpose)
    x, y = np.indices(sim.datacube.scan_shape) * cal.scan_step
    h = 0.05
    phase = sim.specimen.phase_at
    gradient = np.stack([
        phase(x + h, y) - phase(x - h, y), phase(x, y + h) - phase(x, y - h)
    ]) / (2 * h) / (2 * np.pi)
    for k in (0, 1):
        r = np.corrcoef(measured[k].ravel(), gradient[k].ravel())[0, 1]
        assert r > 0.9
        ratio = np.std(measured[k]) / np.std(gradient[k])
        assert ratio == pytest.approx(1.0, abs=0.25)
    wrong = detector_to_scan(shift, rotation, not transpose)
    assert np.corrcoef(wrong[0].ravel(), gradient[0].ravel())[0, 1] < 0.8
