"""Probe radius/centre fit against the simulator's truth and an analytic
disk; Q pixel size from the convergence semiangle."""

import numpy as np
import pytest

from napari_phase import simulate
from napari_phase.compute.probe import fit_probe, q_pixel_from_semiangle


@pytest.fixture(scope='module')
def seed_geometry():
    """Seed detector geometry (192², 22.6 mrad, C1 400 Å), few positions."""
    return simulate(scan_shape=(8, 8), detector_shape=(192, 192), seed=1)


def disk(shape, center, radius, supersample=8):
    """Area-weighted (anti-aliased) disk: exact sub-pixel truth."""
    k = supersample
    x = (np.arange(shape[0] * k)[:, None] + 0.5) / k - 0.5
    y = (np.arange(shape[1] * k)[None, :] + 0.5) / k - 0.5
    inside = (x - center[0]) ** 2 + (y - center[1]) ** 2 <= radius**2
    area = inside.reshape(shape[0], k, shape[1], k).mean(axis=(1, 3))
    return area.astype(np.float32) + 0.01


def test_analytic_disk():
    fit = fit_probe(disk((80, 90), (37.37, 45.81), 17.3))
    assert abs(fit.radius - 17.3) < 0.1
    np.testing.assert_allclose(fit.center, (37.37, 45.81), atol=0.05)


@pytest.mark.parametrize('source', ['vacuum', 'mean'])
def test_simulated_probe(seed_geometry, source):
    sim = seed_geometry
    pattern = (
        sim.vacuum_probe if source == 'vacuum'
        else sim.datacube.data.mean(axis=(0, 1))
    )
    fit = fit_probe(pattern, thresh_upper=0.7)
    assert abs(fit.radius - sim.truth['probe_radius']) < 0.5
    np.testing.assert_allclose(fit.center, sim.truth['probe_center'],
                               atol=0.5)
    q = q_pixel_from_semiangle(sim.datacube.calibration.semiangle,
                               fit.radius)
    assert abs(q / sim.truth['q_pixel_mrad'] - 1) < 0.01


def test_mean_pattern_of_small_sim(small_sim):
    fit = fit_probe(small_sim.datacube.data.mean(axis=(0, 1)),
                    thresh_upper=0.7)
    assert abs(fit.radius - small_sim.truth['probe_radius']) < 0.5
    np.testing.assert_allclose(fit.center, small_sim.truth['probe_center'],
                               atol=0.5)


def test_q_pixel_from_semiangle():
    assert q_pixel_from_semiangle(22.6, 42.24) == pytest.approx(22.6 / 42.24)
    with pytest.raises(ValueError, match='> 0'):
        q_pixel_from_semiangle(22.6, 0)


@pytest.mark.parametrize(
    'pattern, kwargs, message',
    [
        (np.zeros((3, 4, 5)), {}, 'must be 2D'),
        (np.zeros((8, 8)), {}, 'no positive intensity'),
        (np.full((8, 8), np.nan), {}, 'NaN'),
        (np.ones((8, 8)), {'thresh_lower': 0.9, 'thresh_upper': 0.5},
         'lower < upper'),
        (np.ones((8, 8)), {'n': 1}, 'n \\(number'),
    ],
)
def test_bad_input(pattern, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_probe(pattern, **kwargs)
