"""Sample data: "Gold nanoparticles (simulated)", a datacube and its
vacuum probe with full calibration (scan step, detector pixel, energy,
semiangle). The probe centre and radius are left to the calibration
widget, as with a real measurement.

The simulation takes seconds, so opening the sample never waits for it:
it starts in a background thread and the layers come at once, holding
lazy (dask) arrays that wait for it (a job that reads them in a worker
thread waits; the datacube layer stays hidden meanwhile). When it is done
the datacube holds the simulated array itself (``cube.data`` becomes the
numpy array, the same values) and its layer shows it. The simulation is
kept: opening the sample again is immediate.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .compute.calibration import Calibration
from .compute.datacube import DataCube
from .compute.simulate import SimulatedData, simulate
from .io.layers import META, datacube_layers, probe_layers

#: The sample's specimen and microscope (C1 = 300 Å keeps the defocused
#: probe inside ptychography's 24.5 Å window at this detector sampling).
SAMPLE = {'detector_shape': (128, 128), 'scan_step': 2.39, 'energy': 300e3,
          'semiangle': 22.6, 'probe_radius_px': 0.22 * 128, 'C1': 300.0,
          'seed': 0}
SCAN_SHAPE, QUICK_SCAN_SHAPE = (48, 48), (24, 24)
NAME, PROBE_NAME = 'gold nanoparticles', 'vacuum probe'

_simulations: dict[tuple, Future] = {}
_lock = threading.Lock()
_executor = ThreadPoolExecutor(1, thread_name_prefix='napari-phase sample')


def simulation_future(scan_shape=SCAN_SHAPE) -> Future:
    """The sample's simulation, started in a background thread on first
    use and kept."""
    with _lock:
        if scan_shape not in _simulations:
            _simulations[scan_shape] = _executor.submit(
                simulate, scan_shape=scan_shape, **SAMPLE)
        return _simulations[scan_shape]


def simulation(scan_shape=SCAN_SHAPE) -> SimulatedData:
    """The sample's simulation (waits for it)."""
    return simulation_future(scan_shape).result()


def calibration() -> Calibration:
    """The sample's calibration, known before it is simulated."""
    return Calibration(
        scan_step=SAMPLE['scan_step'], energy=SAMPLE['energy'],
        semiangle=SAMPLE['semiangle'],
        q_pixel_mrad=SAMPLE['semiangle'] / SAMPLE['probe_radius_px'])


def gold_nanoparticles() -> list[tuple]:
    """Datacube + vacuum probe layers sharing one new Calibration (see
    the module docstring)."""
    future = simulation_future()
    cal = calibration()
    source = 'simulated gold nanoparticles (seed 0)'
    if future.done():
        sim = future.result()
        return datacube_layers(DataCube(sim.datacube.data, cal, source),
                               NAME) + probe_layers(sim.vacuum_probe, cal,
                                                    PROBE_NAME)
    data, probe = _lazy_arrays(future)
    cube = DataCube(data, cal, source)
    layers = (datacube_layers(cube, NAME, contrast_limits=(0.0, 1.0))
              + probe_layers(probe, cal, PROBE_NAME,
                             contrast_limits=(0.0, 1.0)))
    _when_simulated(future, cube, [attrs['metadata'][META]
                                   for _, attrs, _ in layers])
    return layers


def _lazy_arrays(future: Future):
    """Dask arrays of the cube and the probe that wait for ``future``."""
    import dask
    import dask.array as da

    shape = (*SCAN_SHAPE, *SAMPLE['detector_shape'])
    cube = da.from_delayed(dask.delayed(
        lambda: future.result().datacube.data, pure=True,
        name='napari-phase sample datacube')(), shape, np.float32)
    probe = da.from_delayed(dask.delayed(
        lambda: future.result().vacuum_probe, pure=True,
        name='napari-phase sample probe')(), shape[2:], np.float32)
    return cube, probe


def _when_simulated(future: Future, cube: DataCube, metadata: list[dict]):
    """Once simulated: the cube and the probe hold the arrays, and the
    layers of the current napari viewer that show them are updated."""
    import napari
    from napari.utils.notifications import show_error, show_info
    from superqt.utils import ensure_main_thread

    viewer = napari.current_viewer()
    show_info('Simulating the sample in the background (a few seconds): '
              'its layers show it when done.')

    @ensure_main_thread
    def done(_):
        if future.exception() is not None:
            show_error(f'The sample could not be simulated: '
                       f'{future.exception()}')
            return
        sim = future.result()
        cube.data = sim.datacube.data
        for meta in metadata:
            if 'probe' in meta:
                meta['probe'] = sim.vacuum_probe
        if viewer is not None:
            _show(viewer, cube, sim.vacuum_probe)

    future.add_done_callback(done)


def _show(viewer, cube: DataCube, probe) -> None:
    for layer in viewer.layers:
        meta = layer.metadata.get(META, {})
        if meta.get('datacube') is cube:
            layer.data = cube.data.transpose(2, 3, 0, 1)
            layer.visible = True
            layer.reset_contrast_limits()
        elif meta.get('calibration') is cube.calibration:  # the probe
            layer.data = probe[:, :, None, None]
            layer.reset_contrast_limits()
