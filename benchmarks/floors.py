"""Hardware floors for the benchmark dataset, measured on this machine.

- read pass: one ``np.sum`` over the in-memory cube, i.e. the memory
  bandwidth floor of every one-pass stage (mean pattern, virtual images,
  centre of mass);
- FFT: batched complex64 2D FFTs of the detector size with scipy.fft and
  ``workers = os.cpu_count()``; one gradient-descent ptychography
  iteration needs at least 2 FFTs per pattern (forward and adjoint), so its
  floor is ``2 · N_patterns · t_FFT``.

Floors are the best of a few repeats (a floor is what the machine can do
at its best), not medians; the harness measures them before every round
of runs and keeps the best.
"""

from __future__ import annotations

import os
import time

import numpy as np
import scipy.fft


def _timed(function, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def read_floor(data: np.ndarray, repeats: int = 5) -> dict:
    """Seconds (best of ``repeats``) and GB/s of one summing pass over
    ``data``."""
    seconds = min(_timed(lambda: np.sum(data), repeats))
    return {'seconds': seconds, 'GB_per_s': data.nbytes / seconds / 1e9}


def fft_floor(detector_shape, n_patterns: int, batch: int = 64,
              repeats: int = 5) -> dict:
    """Seconds per complex64 FFT of ``detector_shape`` (best of
    ``repeats`` batches of ``batch``) and the resulting floor of one
    ptychography iteration over ``n_patterns``."""
    rng = np.random.default_rng(0)
    stack = (rng.standard_normal((batch, *detector_shape))
             + 1j * rng.standard_normal((batch, *detector_shape))
             ).astype(np.complex64)
    workers = os.cpu_count()
    scipy.fft.fft2(stack, workers=workers)  # plan / warm up
    seconds = min(_timed(
        lambda: scipy.fft.fft2(stack, workers=workers), repeats)) / batch
    n = int(np.prod(detector_shape))
    return {
        'seconds_per_fft': seconds,
        'GFLOP_per_s': 5 * n * np.log2(n) / seconds / 1e9,
        'workers': workers,
        'ptycho_iteration_seconds': 2 * n_patterns * seconds,
    }


def measure(data: np.ndarray, best: dict | None = None) -> dict:
    """Both floors for the cube ``data`` (Rx, Ry, Qx, Qy), in memory; with
    ``best`` (an earlier measurement), the better of the two for each."""
    n_patterns = data.shape[0] * data.shape[1]
    found = {'read': read_floor(data),
             'fft': fft_floor(data.shape[2:], n_patterns)}
    if best is None:
        return found
    return {
        'read': min(found['read'], best['read'], key=lambda f: f['seconds']),
        'fft': min(found['fft'], best['fft'],
                   key=lambda f: f['seconds_per_fft']),
    }
