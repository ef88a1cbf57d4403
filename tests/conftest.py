"""Shared fixtures: small simulated scans with known truth (seeded)."""

import pytest

from napari_phase import DataCube, simulate
from napari_phase.io.layers import datacube_layers


@pytest.fixture(scope='session')
def small_sim():
    """32×32 scan, 96² detector, C1 = 400 Å, rotation −15°, noisy.

    Shared by the session: never change its datacube's calibration; use
    :func:`cube` for a cube a test (or a widget) may calibrate.
    """
    return simulate(scan_shape=(32, 32), detector_shape=(96, 96), seed=1)


@pytest.fixture
def cube(small_sim):
    """``small_sim``'s data with a calibration of its own."""
    cube = small_sim.datacube
    return DataCube(cube.data, cube.calibration.copy(), 'small_sim')


@pytest.fixture
def add_cube():
    """``add_cube(viewer, cube, name)`` adds a datacube layer as the reader
    builds it."""
    from napari.layers import Layer

    def add(viewer, cube, name='scan'):
        ((data, attrs, kind),) = datacube_layers(cube, name)
        return viewer.add_layer(Layer.create(data, attrs, kind))

    return add

