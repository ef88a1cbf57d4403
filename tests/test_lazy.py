"""Data larger than memory: a ~1 GB file under a 256 MB reader budget.

The big file is the seeded small simulation (32×32 scan, 96² detector,
float32) tiled 5×5 over the scan: 160×160 patterns, 944 MB, written in
HDF5 chunks of one scan row. A subprocess reads it lazily
(``memory_fraction`` = 256 MB of this machine's RAM), computes the virtual
images, the centre of mass, the DPC phase and the mean/max pattern, and
reports its peak RSS, which must stay below baseline + 1.5 × the 256 MB
budget (measured: +225 MB, three 64 MB reader blocks in the sequential
virtual-image pass; the margin absorbs the scheduler's ordering; the
peak does not grow with the file, and stays under half its size). Truth: the in-memory path on the small copy (virtual
images, CoM and mean/max pattern of a tiled scan are the tiled results)
and, for DPC (its descan fit, rotation and integration see the whole
scan), the in-memory path on the same 944 MB held in RAM here.

Browsing: showing one pattern of a lazy file reads exactly that pattern's
HDF5 chunk, and adding the hidden lazy datacube layer to napari reads no
more than the one frame used for its contrast limits (every h5py read is
recorded).
"""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from benchmarks.lazy_throughput import write_tiled
from napari_phase.compute.com import center_of_mass
from napari_phase.compute.datacube import DataCube
from napari_phase.compute.detectors import (
    annulus_mask,
    circle_mask,
    virtual_images,
)
from napari_phase.compute.dpc import dpc
from napari_phase.io.read import read_datacube

BUDGET = 256 << 20  # bytes: the reader's in-memory budget in the subprocess
#: dask threads in the subprocess: the peak is a few 64 MB blocks per
#: thread (the reader's block size), whatever the file size.
THREADS = 2
TILES = (5, 5)
CENTER, R_BF, R_OUT = (48.0, 48.0), 23.0, 48.0  # px, 96² detector

#: Runs in a fresh interpreter: lazy read, reductions, DPC, peak RSS (MB).
WORKER = """
import json, sys, time
import dask, dask.array, numpy as np, scipy.fft
from napari_phase.compute.com import center_of_mass
from napari_phase.compute.detectors import annulus_mask, circle_mask
from napari_phase.compute.detectors import virtual_images
from napari_phase.compute.dpc import dpc
from napari_phase.io.read import physical_memory, read_datacube

def memory_mb(field):
    # VmHWM, not ru_maxrss: ru_maxrss keeps the parent's peak across exec.
    with open('/proc/self/status') as status:
        line = next(x for x in status if x.startswith(field + ':'))
    return int(line.split()[1]) / 1024

a = json.loads(sys.argv[1])
dask.config.set(num_workers=a['threads'])
base = memory_mb('VmHWM')
start = time.perf_counter()
fraction = a['budget'] / physical_memory()
cube = read_datacube(a['path'], memory_fraction=fraction)
cube.calibration.update(**a['calibration'])
shape = cube.detector_shape
masks = [circle_mask(shape, a['center'], a['r_bf']),
         annulus_mask(shape, a['center'], a['r_bf'], a['r_out'])]
images = virtual_images(cube, masks)
com = center_of_mass(cube.data)
phase = dpc(cube).phase
mean, peak = cube.mean_and_max_pattern()
np.savez(a['out'], lazy=cube.is_lazy, images=images, com=com.com,
         intensity=com.intensity, phase=phase, mean=mean, max=peak,
         base_mb=base, peak_mb=memory_mb('VmHWM'),
         seconds=time.perf_counter() - start)
"""


def masks_for(shape):
    return [circle_mask(shape, CENTER, R_BF),
            annulus_mask(shape, CENTER, R_BF, R_OUT)]


def calibration_values(cube) -> dict:
    cal = cube.calibration
    return {name: getattr(cal, name)
            for name in ('scan_step', 'q_pixel_mrad', 'energy', 'semiangle')}


@pytest.fixture(scope='module')
def lazy_run(tmp_path_factory, small_sim):
    """(small cube, file size, the subprocess's results); the big file is
    deleted before the tests compare anything."""
    small = small_sim.datacube
    folder = tmp_path_factory.mktemp('lazy')
    path = folder / 'big.h5'
    size = write_tiled(path, small.data, TILES)
    args = dict(path=str(path), budget=BUDGET, threads=THREADS,
                out=str(folder / 'lazy.npz'), center=CENTER, r_bf=R_BF,
                r_out=R_OUT, calibration=calibration_values(small))
    try:
        done = subprocess.run(
            [sys.executable, '-c', WORKER, json.dumps(args)],
            capture_output=True, text=True, timeout=300,
        )
    finally:
        path.unlink()
    assert done.returncode == 0, done.stderr
    return small, size, dict(np.load(args['out']))


def test_file_is_several_times_the_budget_and_read_lazily(lazy_run):
    _, size, out = lazy_run
    assert size > 3.5 * BUDGET
    assert out['lazy']


def test_peak_memory_stays_within_the_budget(lazy_run):
    _, size, out = lazy_run
    used = float(out['peak_mb'] - out['base_mb'])
    print(f'file {size / 2**20:.0f} MB, budget {BUDGET / 2**20:.0f} MB, '
          f'baseline RSS {out["base_mb"]:.0f} MB, peak RSS '
          f'{out["peak_mb"]:.0f} MB (+{used:.0f} MB), lazy run '
          f'{float(out["seconds"]):.1f} s')
    assert used < 1.5 * BUDGET / 2**20
    assert out['peak_mb'] < size / 2**20 / 2


def test_virtual_images_com_and_mean_match_the_in_memory_path(lazy_run):
    small, _, out = lazy_run
    tiles = (1, *TILES)
    images = virtual_images(small, masks_for(small.detector_shape))
    np.testing.assert_allclose(out['images'], np.tile(images, tiles),
                               rtol=1e-5)
    com = center_of_mass(small.data)
    np.testing.assert_allclose(out['intensity'],
                               np.tile(com.intensity, TILES), rtol=1e-5)
    np.testing.assert_allclose(out['com'], np.tile(com.com, tiles),
                               atol=1e-4)
    mean, peak = small.mean_and_max_pattern()
    np.testing.assert_allclose(out['mean'], mean, rtol=1e-5)
    np.testing.assert_array_equal(out['max'], peak)


def test_dpc_phase_matches_the_in_memory_path(lazy_run):
    small, _, out = lazy_run
    big = DataCube(np.tile(small.data, (*TILES, 1, 1)),
                   small.calibration.copy())
    phase = dpc(big).phase
    del big
    span = np.ptp(phase)
    np.testing.assert_allclose(out['phase'], phase, atol=1e-4 * span)


# --- browsing a lazy file -------------------------------------------------


@pytest.fixture
def frame_chunked_file(tmp_path, small_sim):
    """An 8×8-scan file chunked one pattern per HDF5 chunk (as detectors
    write them), and the numpy data in it."""
    data = small_sim.datacube.data[:8, :8]
    path = tmp_path / 'frames.h5'
    with h5py.File(path, 'w') as h5:
        h5.create_dataset('data', data=data, chunks=(1, 1, *data.shape[2:]))
    return path, data


@pytest.fixture
def h5_reads(monkeypatch):
    """Every selection read through h5py.Dataset.__getitem__."""
    reads = []
    original = h5py.Dataset.__getitem__

    def recording(self, selection, *args, **kwargs):
        reads.append((self.shape, self.chunks, selection))
        return original(self, selection, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, '__getitem__', recording)
    return reads


def chunks_touched(shape, chunks, selection) -> int:
    """HDF5 chunks a basic selection (ints and unit-step slices) reads."""
    selection = selection if isinstance(selection, tuple) else (selection,)
    selection = selection + (slice(None),) * (len(shape) - len(selection))
    count = 1
    for index, n, c in zip(selection, shape, chunks, strict=True):
        if isinstance(index, slice):
            start, stop, _ = index.indices(n)
        else:
            start, stop = int(index), int(index) + 1
        count *= 0 if stop <= start else (stop - 1) // c - start // c + 1
    return count


def test_pattern_browsing_reads_one_chunk(
    make_napari_viewer, frame_chunked_file, h5_reads
):
    from napari_phase.io.layers import datacube_layers
    from napari_phase.widgets.diffraction_view import diffraction_view

    path, data = frame_chunked_file
    with pytest.warns(UserWarning, match='does not give'):
        cube = read_datacube(path, lazy=True)
    cube.calibration.update(scan_step=2.0, q_pixel_mrad=1.0)
    assert cube.is_lazy
    viewer = make_napari_viewer()
    view = diffraction_view(viewer)
    h5_reads.clear()

    (layer,) = viewer._add_layer_from_data(*datacube_layers(cube, 'lazy')[0])
    viewer.layers.selection.active = layer
    touched = [chunks_touched(*read) for read in h5_reads]
    assert not layer.visible
    assert sum(touched) <= 1, f'adding the layer read {h5_reads}'

    h5_reads.clear()
    shown = view.show_pattern_at((0.0, 0.0, 3 * 2.0, 5 * 2.0))
    np.testing.assert_array_equal(shown.data, data[3, 5])
    assert [chunks_touched(*read) for read in h5_reads] == [1]
    assert h5_reads[0][2][:2] == (3, 5)
