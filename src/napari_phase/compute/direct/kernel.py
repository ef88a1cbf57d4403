"""The sums over bright-field pixels behind every SSB/OBF update.

For pixels k (rows) and spatial frequencies Q (columns), with the
side-band weights ``w± = a(k)·a(k ∓ Q_d)`` and the aberration phases
``Δ+ = χ(k) − χ(k − Q_d)``, ``Δ− = χ(k + Q_d) − χ(k)``,

    Γ = w+ e^{iΔ+} − w− e^{iΔ−} = x + iy,
    S = Σ_k (G/I0)·conj(Γ),   N = Σ_k |Γ|²   (per Q).

The weights depend on the rotation and transpose only: they are computed
once per geometry (:func:`side_bands`) and kept, with a flag per chunk of
pixels that has any weight, so that an aberration update costs the
phases (two small matrix products, four sines and cosines per pair) and
the sums. Work runs over chunks of pixels small enough to stay in cache,
in ``backend.FFT_WORKERS`` threads on the CPU (numpy releases the GIL),
in one chunk on a GPU; every temporary lives in a few reused buffers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from ..backend import FFT_WORKERS

#: (pixel, frequency) pairs per chunk on the CPU (a few buffers in cache).
CHUNK_PAIRS = 1 << 15


@dataclass(frozen=True)
class SideBands:
    """Side-band weights for one geometry: (K, N_Q) float32 each."""

    key: tuple  # (rotation_deg, transpose, method)
    plus: object  # a(k)·a(k − Q_d)
    minus: object  # a(k)·a(k + Q_d)
    used: np.ndarray  # (chunks,) bool: the chunk has any weight
    step: int  # pixels per chunk


def chunk_step(n_q: int, xp) -> int:
    """Pixels per chunk for ``n_q`` frequencies."""
    return max(1, CHUNK_PAIRS // n_q) if xp is np else 1 << 62


def side_bands(key, ramp, a, toward, away, sideband_only, xp) -> SideBands:
    """The weights for ``ramp`` (K, 4) and the frequency rows ``toward``
    / ``away`` (4, N_Q), ``a(k ∓ Q) = clip(ramp @ toward/away, 0, 1)``
    (see sideband.py); ``sideband_only`` (SSB) keeps the pairs where one
    disk only (at half amplitude) covers the pixel."""
    n_pixels, n_q = len(ramp), toward.shape[1]
    step = min(chunk_step(n_q, xp), n_pixels)
    plus = xp.empty((n_pixels, n_q), np.float32)
    minus = xp.empty((n_pixels, n_q), np.float32)

    def fill(rows: slice) -> bool:
        p, m = plus[rows], minus[rows]
        xp.matmul(ramp[rows], toward, out=p)
        xp.matmul(ramp[rows], away, out=m)
        if sideband_only:
            single = (p > 0.5) != (m > 0.5)
        xp.clip(p, 0, 1, out=p)
        xp.clip(m, 0, 1, out=m)
        if sideband_only:
            p *= single
            m *= single
        p *= a[rows, None]
        m *= a[rows, None]
        return bool(xp.any(p) or xp.any(m))

    used = np.array(_map_chunks(fill, n_pixels, step, xp), bool)
    return SideBands(key, plus, minus, used, step)


def trotter_sums(real, imag, bands: SideBands, d_odd, p_odd, d_even,
                 p_even, xp):
    """(S.real, S.imag, N), each (N_Q,) float64, for the Taylor terms
    ``d_* @ p_*`` of the phases (odd and even powers of Q)."""
    n_q = real.shape[1]
    step = bands.step

    def partial(rows_list):
        buffers = [xp.empty((step, n_q), np.float32) for _ in range(6)]
        totals = [xp.zeros((step, n_q), np.float32) for _ in range(3)]
        for rows in rows_list:
            n = rows.stop - rows.start
            odd, even, c, s, x, y = (b[:n] for b in buffers)
            s_re, s_im, norm = (t[:n] for t in totals)
            _product(d_odd[rows], p_odd, odd, xp)
            _product(d_even[rows], p_even, even, xp)
            plus, minus = bands.plus[rows], bands.minus[rows]
            xp.subtract(odd, even, out=c)  # Δ+
            xp.sin(c, out=s)
            xp.cos(c, out=c)
            xp.multiply(plus, c, out=x)
            xp.multiply(plus, s, out=y)
            xp.add(odd, even, out=c)  # Δ−
            xp.sin(c, out=s)
            xp.cos(c, out=c)
            c *= minus
            s *= minus
            x -= c
            y -= s
            real_k, imag_k = real[rows], imag[rows]
            for left, right, total, sign in (
                (real_k, x, s_re, 1), (imag_k, y, s_re, 1),
                (imag_k, x, s_im, 1), (real_k, y, s_im, -1),
                (x, x, norm, 1), (y, y, norm, 1),
            ):
                xp.multiply(left, right, out=c)
                if sign > 0:
                    total += c
                else:
                    total -= c
        return [t.sum(axis=0, dtype=np.float64) for t in totals]

    chunks = [
        slice(start, min(start + step, len(real)))
        for i, start in enumerate(range(0, len(real), step))
        if bands.used[i]
    ]
    if not chunks:
        return tuple(xp.zeros(n_q) for _ in range(3))
    parts = _split(chunks, FFT_WORKERS if xp is np else 1)
    with ThreadPoolExecutor(len(parts)) as pool:
        sums = list(pool.map(partial, parts))
    return tuple(sum(part[i] for part in sums) for i in range(3))


def _map_chunks(function, n_pixels, step, xp) -> list:
    """``function(rows)`` for every chunk of pixels, in threads."""
    chunks = [
        slice(start, min(start + step, n_pixels))
        for start in range(0, n_pixels, step)
    ]
    parts = _split(chunks, FFT_WORKERS if xp is np else 1)
    with ThreadPoolExecutor(len(parts)) as pool:
        done = pool.map(lambda part: [function(rows) for rows in part], parts)
    return [flag for part in done for flag in part]


def _split(items: list, n: int) -> list[list]:
    """``items`` in at most ``n`` contiguous, nearly equal parts."""
    bounds = np.linspace(0, len(items), min(n, len(items)) + 1).astype(int)
    return [items[a:b] for a, b in pairwise(bounds)]


def _product(left, right, out, xp):
    if left.shape[1]:
        xp.matmul(left, right, out=out)
    else:
        out[...] = 0
