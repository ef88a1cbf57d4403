"""dask.distributed: a LocalCluster gives exactly what local threads give.

The cluster (2 in-process workers, 1 thread each) stands in for a real
one; it is reached through its address, as a remote scheduler would be.
The lazy cube is the seeded small simulation read from HDF5 and split in
4 blocks of scan rows, so that both workers get work.
"""

import sys
import time

import numpy as np
import pytest
from distributed import Client, LocalCluster, get_task_stream

from napari_phase import load_results, read_datacube, write_emd
from napari_phase.cli import main
from napari_phase.compute import scheduler
from napari_phase.compute.com import center_of_mass
from napari_phase.compute.datacube import DataCube
from napari_phase.compute.detectors import (
    annulus_mask,
    circle_mask,
    virtual_images,
)
from napari_phase.compute.dpc import dpc
from napari_phase.compute.parallax import parallax
from napari_phase.compute.reduce import detector_sums
from napari_phase.compute.scheduler import (
    SchedulerError,
    active_client,
    use_scheduler,
)

UNREACHABLE = 'tcp://127.0.0.1:9'  # the discard port: nothing listens


@pytest.fixture(scope='module')
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture(scope='module')
def data_file(tmp_path_factory, small_sim):
    path = tmp_path_factory.mktemp('distributed') / 'scan.h5'
    write_emd(path, small_sim.datacube)
    return path


@pytest.fixture(scope='module')
def lazy_cube(data_file):
    cube = read_datacube(data_file, lazy=True)
    return DataCube(cube.data.rechunk((8, -1, -1, -1)), cube.calibration,
                    cube.source)


def results(cube) -> dict:
    """Every lazy-capable computation, as numpy arrays."""
    shape = cube.detector_shape
    masks = [circle_mask(shape, (48, 48), 23),
             annulus_mask(shape, (48, 48), 23, 48)]
    com = center_of_mass(cube.data)
    mean, peak = cube.mean_and_max_pattern()
    phase = dpc(cube)
    return dict(
        images=virtual_images(cube, masks),
        com=com.com,
        intensity=com.intensity,
        mean=mean,
        max=peak,
        dpc=phase.phase,
        dpc_rotation=np.array(phase.rotation_deg),
        parallax=parallax(cube, min_alignment_bin=8).phase,
    )


def test_local_cluster_gives_the_threaded_results(
    cluster, lazy_cube, small_sim
):
    with use_scheduler(None):
        threads = results(lazy_cube)
    with use_scheduler(cluster.scheduler_address) as client, \
            get_task_stream(client) as tasks:
        assert active_client() is client
        on_cluster = results(lazy_cube)
    assert len(tasks.data) > 0  # the workers did the work
    for name, expected in threads.items():
        np.testing.assert_array_equal(on_cluster[name], expected,
                                      err_msg=name)
    in_memory = results(small_sim.datacube)
    for name in ('images', 'intensity', 'mean', 'max'):
        np.testing.assert_allclose(on_cluster[name], in_memory[name],
                                   rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(on_cluster['com'], in_memory['com'],
                               atol=1e-4)


def test_progress_reaches_one_on_the_cluster(cluster, lazy_cube):
    weights = np.ones((1, *lazy_cube.detector_shape), np.float32)
    fractions = []
    with use_scheduler(cluster.scheduler_address):
        sums = detector_sums(lazy_cube.data, weights, fractions.append)
    assert fractions == [0.25, 0.5, 0.75, 1.0]  # one per block of rows
    np.testing.assert_allclose(
        sums[0], lazy_cube.data.sum(axis=(2, 3)).compute(), rtol=1e-5)


def test_no_address_means_local_threads_even_beside_a_client(cluster):
    with Client(cluster) as client:
        assert active_client() is client
        with use_scheduler(None) as inside:
            assert inside is None and active_client() is None
        assert active_client() is client


def test_local_starts_a_cluster_and_closes_it(lazy_cube):
    weights = np.ones((1, *lazy_cube.detector_shape), np.float32)
    with use_scheduler('local', n_workers=1, threads_per_worker=1,
                       processes=False) as client:
        assert active_client() is client
        sums = detector_sums(lazy_cube.data, weights)
    assert client.status == 'closed'
    np.testing.assert_allclose(
        sums[0], lazy_cube.data.sum(axis=(2, 3)).compute(), rtol=1e-5)


def test_unreachable_scheduler_is_named_quickly():
    start = time.perf_counter()
    with pytest.raises(SchedulerError, match='cannot reach the dask '
                       f'scheduler at {UNREACHABLE!r} within 0.5 s'):
        with use_scheduler(UNREACHABLE, timeout=0.5):
            pass
    assert time.perf_counter() - start < 10


def test_missing_distributed_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'distributed', None)
    with pytest.raises(SchedulerError, match=r'napari-phase\[distributed\]'):
        with use_scheduler('local'):
            pass


def test_cluster_options_only_for_a_local_cluster():
    with pytest.raises(TypeError, match='n_workers'):
        with use_scheduler(UNREACHABLE, n_workers=2):
            pass


def test_cli_runs_on_the_scheduler(cluster, data_file, tmp_path):
    plain, clustered = tmp_path / 'plain.h5', tmp_path / 'cluster.h5'
    assert main(['run', str(data_file), '--methods', 'dpc',
                 '-o', str(plain)]) == 0
    with Client(cluster) as client, get_task_stream(client) as tasks:
        assert main(['run', str(data_file), '--methods', 'dpc', '-o',
                     str(clustered), '--scheduler',
                     cluster.scheduler_address]) == 0
    assert len(tasks.data) > 0
    expected = {a['name']: d for d, a, _ in load_results(plain)}
    for data, attrs, _ in load_results(clustered):
        np.testing.assert_allclose(data, expected[attrs['name']],
                                   rtol=1e-4, atol=1e-5,
                                   err_msg=attrs['name'])


def test_cli_unreachable_scheduler_is_one_line(
    data_file, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(scheduler, 'CONNECT_TIMEOUT', 0.5)
    out = tmp_path / 'out.h5'
    assert main(['run', str(data_file), '--methods', 'dpc', '-o', str(out),
                 '--scheduler', UNREACHABLE]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and 'cannot reach the dask scheduler' in error[0]
    assert not out.exists()
