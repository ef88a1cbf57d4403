"""Sample data: "Gold nanoparticles (simulated)", a datacube and its
vacuum probe with full calibration (scan step, detector pixel, energy,
semiangle). The probe centre and radius are left to the calibration
widget, as with a real measurement."""

from __future__ import annotations

import functools

from .compute.datacube import DataCube
from .compute.simulate import simulate
from .io.layers import datacube_layers, probe_layers


@functools.cache
def _simulation():
    """48×48 scan × 128² detector (about 2 s, once per process)."""
    return simulate(scan_shape=(48, 48), detector_shape=(128, 128), seed=0)


def gold_nanoparticles() -> list[tuple]:
    """Datacube + vacuum probe layers sharing one new Calibration."""
    sim = _simulation()
    calibration = sim.datacube.calibration.copy()
    cube = DataCube(sim.datacube.data, calibration,
                    source='simulated gold nanoparticles (seed 0)')
    return datacube_layers(cube, 'gold nanoparticles') + probe_layers(
        sim.vacuum_probe, calibration, 'vacuum probe'
    )
