"""The sample data and the reader in a real napari viewer (Xvfb)."""

from concurrent.futures import Future

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_phase import _sample, read_datacube, write_emd
from napari_phase.io.layers import META, datacube_layers, probe_layers
from napari_phase.widgets import _common
from napari_phase.widgets._common import real_space_layer


def new_messages(before):
    return [str(n.message) for n in notification_manager.records[before:]]


def test_sample_in_a_viewer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    before = len(notification_manager.records)
    viewer.open_sample('napari-phase', 'gold_nanoparticles')
    cube_layer, probe_layer = viewer.layers
    cube = cube_layer.metadata[META]['datacube']
    qtbot.waitUntil(lambda: not cube.is_lazy, timeout=60_000)
    cal = cube.calibration
    truth = _sample.simulation().truth
    assert cube_layer.name == 'gold nanoparticles'
    assert cube_layer.data.shape == (128, 128, 48, 48)
    assert cal.scan_step == 2.39 and cal.energy == 300e3
    assert cal.semiangle == 22.6
    assert cal.q_pixel_mrad == pytest.approx(truth['q_pixel_mrad'])
    np.testing.assert_allclose(cube_layer.scale,
                               [cal.q_pixel_mrad] * 2 + [2.39] * 2)
    assert [str(u) for u in cube_layer.units] == [
        'milliradian', 'milliradian', 'angstrom', 'angstrom']
    assert cube_layer.axis_labels == ('kx', 'ky', 'x', 'y')
    probe = probe_layer.metadata[META]
    assert probe['calibration'] is cal
    assert np.asarray(probe['probe']).shape == (128, 128)
    assert not probe_layer.visible
    # A real-space result (Å) beside them keeps units consistent.
    viewer.add_layer(_layer(real_space_layer(
        np.ones((48, 48)), 'real space', 2.39, {})))
    shot = viewer.screenshot(canvas_only=True)
    assert shot[..., :3].std() > 0
    assert viewer.layers.extent.units is not None
    assert not [m for m in new_messages(before) if 'units' in m.lower()]


def test_the_sample_opens_before_it_is_simulated(make_napari_viewer, qtbot,
                                                 monkeypatch):
    """Opening the sample does not wait for its simulation: the layers
    come at once, lazy and hidden, then hold the simulated arrays."""
    sim = _sample.simulation()
    pending = Future()
    monkeypatch.setattr(_sample, 'simulation_future', lambda *_: pending)
    viewer = make_napari_viewer(show=True)
    viewer.open_sample('napari-phase', 'gold_nanoparticles')
    cube_layer, probe_layer = viewer.layers
    cube = cube_layer.metadata[META]['datacube']
    assert cube.is_lazy and not cube_layer.visible
    assert cube.calibration.scan_step == 2.39  # known beforehand
    assert not pending.done()  # nothing waited for it
    pending.set_result(sim)
    qtbot.waitUntil(lambda: not cube.is_lazy and cube_layer.visible,
                    timeout=10_000)
    assert cube.data is sim.datacube.data
    np.testing.assert_array_equal(cube_layer.data,
                                  sim.datacube.data.transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(probe_layer.metadata[META]['probe'],
                                  sim.vacuum_probe)
    np.testing.assert_array_equal(probe_layer.data[:, :, 0, 0],
                                  sim.vacuum_probe)


def _layer(layer_tuple):
    from napari.layers import Layer

    return Layer.create(*layer_tuple)


def test_open_emd_with_the_plugin(make_napari_viewer, tmp_path, small_sim):
    path = tmp_path / 'scan.emd'
    write_emd(path, small_sim.datacube)
    viewer = make_napari_viewer()
    layer, = viewer.open(path, plugin='napari-phase')
    cube = layer.metadata[META]['datacube']
    assert layer.name == 'scan'
    np.testing.assert_array_equal(cube.data, small_sim.datacube.data)
    np.testing.assert_array_equal(layer.data, cube.data.transpose(2, 3, 0, 1))
    assert cube.calibration == small_sim.datacube.calibration


def test_lazy_layer_starts_hidden(tmp_path, small_sim):
    path = tmp_path / 'scan.emd'
    write_emd(path, small_sim.datacube)
    cube = read_datacube(path, lazy=True)
    (data, attrs, _kind), = datacube_layers(cube, 'lazy')
    assert type(data).__module__.startswith('dask')
    assert not attrs['visible']
    frame = small_sim.datacube.data[0, 0]
    assert attrs['contrast_limits'] == (frame.min(), frame.max())
    (probe, probe_attrs, _), = probe_layers(small_sim.vacuum_probe,
                                            cube.calibration, 'p')
    assert probe.shape == (96, 96, 1, 1)
    assert probe_attrs['scale'] == attrs['scale']


def test_meta_key_matches_the_widgets():
    assert META == _common.META
