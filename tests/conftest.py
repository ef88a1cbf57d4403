"""Shared fixtures: small simulated scans with known truth (seeded)."""

import pytest

from napari_phase import simulate


@pytest.fixture(scope='session')
def small_sim():
    """32×32 scan, 96² detector, C1 = 400 Å, rotation −15°, noisy."""
    return simulate(scan_shape=(32, 32), detector_shape=(96, 96), seed=1)
