"""The one place that decides between numpy and cupy, and recognises dask.

Compute code never writes ``if cupy``: it asks this module for the array
module of its input (:func:`xp_of`), for an FFT module that matches
(:func:`fft_of`), or for the module of a named device (:func:`device_xp`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType

import numpy as np

#: FFT worker threads for scipy.fft on the CPU.
FFT_WORKERS = os.cpu_count() or 1


def is_dask(array) -> bool:
    """True for a dask array (lazy, chunked)."""
    return type(array).__module__.split('.')[0] == 'dask'


def is_cupy(array) -> bool:
    """True for a cupy array, or a dask array of cupy chunks."""
    if is_dask(array):
        array = array._meta
    return type(array).__module__.split('.')[0] == 'cupy'


def xp_of(array) -> ModuleType:
    """numpy or cupy: the module that holds ``array`` (dask: its chunks)."""
    if is_cupy(array):
        import cupy

        return cupy
    return np


def to_numpy(array) -> np.ndarray:
    """A numpy copy of a numpy, cupy or dask array (dask is computed)."""
    if is_dask(array):
        array = array.compute()
    if is_cupy(array):
        return array.get()
    return np.asarray(array)


def gpu_available() -> bool:
    """True when cupy is installed and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001  (no cupy, no driver, no device)
        return False


def device_xp(device: str) -> ModuleType:
    """Array module for ``device`` ('cpu' or 'gpu').

    A GPU asked for where there is none falls back to numpy with a warning
    that says so.
    """
    if device not in ('cpu', 'gpu'):
        raise ValueError(f"device must be 'cpu' or 'gpu', not {device!r}")
    if device == 'gpu':
        if gpu_available():
            import cupy

            return cupy
        warnings.warn(
            'No usable GPU (cupy with a CUDA device) was found: '
            'running on the CPU instead.',
            RuntimeWarning,
            stacklevel=2,
        )
    return np


def fft_of(xp: ModuleType):
    """An FFT namespace for ``xp``: scipy.fft (threaded) or cupyx.scipy.fft.

    The returned object has ``fft2``/``ifft2``/``rfft2``... taking the same
    arguments for both modules; on the CPU the work is spread over
    :data:`FFT_WORKERS` threads.
    """
    if xp is np:
        return _ScipyFFT()
    import cupyx.scipy.fft

    return cupyx.scipy.fft


class _ScipyFFT:
    """scipy.fft with ``workers`` filled in."""

    def __getattr__(self, name):
        import functools

        import scipy.fft

        return functools.partial(getattr(scipy.fft, name), workers=FFT_WORKERS)


def scan_chunks(n_rows: int, row_bytes: int, budget: int = 64 << 20):
    """Slices of scan rows, each about ``budget`` bytes of data."""
    step = max(1, budget // max(1, row_bytes))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def iterate_scan_rows(
    data, budget: int = 64 << 20
) -> Iterator[tuple[slice, object]]:
    """Yield (rows, block) pairs covering ``data`` along its first axis.

    Dask blocks are computed one at a time so that memory stays bounded.
    """
    row_bytes = int(np.prod(data.shape[1:])) * data.dtype.itemsize
    for rows in scan_chunks(data.shape[0], row_bytes, budget):
        block = data[rows]
        if is_dask(block):
            block = block.compute()
        yield rows, block


ProgressCallback = Callable[[float], None]


def available_memory(xp: ModuleType) -> int:
    """Bytes free now on the device of ``xp``: host RAM (numpy) or the
    GPU's free memory (cupy)."""
    if xp is np:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    free, _total = xp.cuda.runtime.memGetInfo()
    return int(free + xp.get_default_memory_pool().free_bytes())
