"""The "Compute on" setting: widget jobs run on a dask.distributed cluster.

A LocalCluster (in-process workers) stands in for a real cluster, reached
through its address. Truth: the DPC phase of the same lazy cube computed on
this machine; the cluster's task stream shows that it did the work (and
that it did none while the setting was empty).
"""

import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream
from gui import click, type_into

from napari_phase import DataCube
from napari_phase.compute import scheduler
from napari_phase.widgets._common import compute_settings
from napari_phase.widgets.cluster_widget import ClusterWidget
from napari_phase.widgets.dpc_widget import PHASE, DPCWidget

UNREACHABLE = 'tcp://127.0.0.1:9'  # the discard port: nothing listens


@pytest.fixture(scope='module')
def cluster():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture
def setting(monkeypatch):
    """The shared setting, back to 'this machine' after the test."""
    monkeypatch.setattr(compute_settings, 'scheduler', None)
    return compute_settings


@pytest.fixture
def lazy_cube(small_sim):
    data = da.from_array(small_sim.datacube.data, chunks=(8, 32, 96, 96))
    return DataCube(data, small_sim.datacube.calibration.copy(), 'lazy')


def run_dpc(widget, qtbot):
    widget.result = None
    click(widget.runner.run_button)
    qtbot.waitUntil(lambda: widget.runner.worker is None, timeout=60_000)
    if widget.result is not None:  # its layers are shown a turn later
        qtbot.waitUntil(lambda: shown(widget.viewer, widget.result.phase))
    return widget.result


def shown(viewer, phase) -> bool:
    """Whether ``phase`` is the top layer's image."""
    top = viewer.layers[-1]
    return top.name == PHASE and np.array_equal(top.data, phase)


def test_dpc_runs_on_the_cluster_given_and_gives_the_same_phase(
        make_napari_viewer, qtbot, cluster, setting, lazy_cube, add_cube):
    viewer = make_napari_viewer()
    add_cube(viewer, lazy_cube)
    settings = ClusterWidget(viewer)
    dpc = DPCWidget(viewer)
    viewer.window.add_dock_widget(settings)
    viewer.window.add_dock_widget(dpc)
    with Client(cluster, set_as_default=False) as watcher:
        with get_task_stream(watcher) as here:
            local = run_dpc(dpc, qtbot)
        assert local is not None and len(here.data) == 0
        type_into(settings.address, cluster.scheduler_address)
        assert setting.scheduler == cluster.scheduler_address
        assert 'Widgets compute lazy data on' in settings.status.value
        with get_task_stream(watcher) as there:
            remote = run_dpc(dpc, qtbot)
        assert remote is not None and len(there.data) > 0
    np.testing.assert_array_equal(remote.phase, local.phase)
    assert viewer.layers[PHASE].data.shape == (32, 32)
    type_into(settings.address, '  ')
    assert setting.scheduler is None


def test_an_unreachable_scheduler_is_a_message(
        make_napari_viewer, qtbot, setting, lazy_cube, add_cube,
        monkeypatch):
    monkeypatch.setattr(scheduler, 'CONNECT_TIMEOUT', 0.5)
    viewer = make_napari_viewer()
    add_cube(viewer, lazy_cube)
    settings = ClusterWidget(viewer)
    viewer.window.add_dock_widget(settings)
    type_into(settings.address, UNREACHABLE)
    dpc = DPCWidget(viewer)
    viewer.window.add_dock_widget(dpc)
    assert run_dpc(dpc, qtbot) is None
    status = dpc.runner.status.value
    assert status.startswith('Error: cannot reach the dask scheduler at '
                             f"{UNREACHABLE!r}"), status
    assert dpc.runner.run_button.enabled  # ready for another run
