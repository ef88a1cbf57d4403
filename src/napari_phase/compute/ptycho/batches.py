"""Mini-batches of patterns: random positions within windows of the scan.

The scan is cut into **windows**: near-square rectangles of at most
:data:`WINDOW_BATCHES` batches' worth of positions, made of whole dask
chunks of the data or of pieces of one (the whole scan is one chunk for
other arrays). Every iteration visits the windows in a seeded random
order and splits each window's active positions, in a seeded random
order, into near-equal batches of at most ``batch`` patterns.

A scan smaller than a window is one window: batches are then random
draws from the whole scan, as in py4DSTEM, which converges fastest per
iteration (every object pixel is updated by many batches). A larger scan
keeps that per-pixel rate while each batch stays inside its window, so a
batch updates a region of bounded size and an iteration costs O(scan
positions), not O(positions × object).

Held amplitudes (:class:`HeldBatches`) are computed once, in one pass;
streamed ones (:class:`StreamedBatches`, 'lazy' storage) are read window
by window (the next one in a thread while this one is used), so every
iteration reads each pattern once and memory holds two windows, not the
cube. Both plan the same batches for the same windows.
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..backend import is_dask, iterate_scan_rows, to_numpy

#: A window holds at most this many batches' worth of scan positions.
WINDOW_BATCHES = 16
#: Streamed windows hold at most this many bytes of amplitudes.
STREAMED_WINDOW_BYTES = 256 << 20


def centred_amplitudes(data, shifts, storage_xp):
    """:func:`centred` amplitudes of every pattern (J, N, N), one pass
    over ``data``; ``shifts`` (J, 2) whole px."""
    rx, ry, qx, qy = data.shape
    out = storage_xp.empty((rx * ry, qx, qy), np.float32)
    for rows, block in iterate_scan_rows(data):
        block = to_numpy(block).reshape(-1, qx, qy)
        mine = slice(rows.start * ry, rows.start * ry + len(block))
        out[mine] = storage_xp.asarray(centred(block, shifts[mine]))
    return out


def centred(patterns, shifts, out=None):
    """√max(I, 0) float32 (NaN counts as 0) of ``patterns`` (B, N, N), each
    rolled by −``shifts`` (B, 2; whole px, the beam's position) so that
    its beam sits at the FFT origin; in ``out`` or a new array."""
    block = np.empty(patterns.shape, np.float32) if out is None else out
    for shift in np.unique(shifts, axis=0):
        pick = np.all(shifts == shift, axis=1)
        if pick.all():  # one beam position: no copies
            _roll_into(block, patterns, shift)
        else:
            block[pick] = np.roll(patterns[pick], tuple(-shift), axis=(1, 2))
    return np.sqrt(np.fmax(block, 0, out=block), out=block)  # fmax: NaN → 0


def _roll_into(out, patterns, shift):
    """``out[:] = np.roll(patterns, -shift, axis=(1, 2))`` by four slice
    copies (no temporary of the patterns' size)."""
    (n, a), (m, b) = ((n, int(s) % n)
                      for s, n in zip(shift, patterns.shape[1:]))
    for rows_out, rows_in in ((slice(0, n - a), slice(a, n)),
                              (slice(n - a, n), slice(0, a))):
        for cols_out, cols_in in ((slice(0, m - b), slice(b, m)),
                                  (slice(m - b, m), slice(0, b))):
            out[:, rows_out, cols_out] = patterns[:, rows_in, cols_in]


class HeldBatches:
    """Batches whose amplitudes the engine holds. ``windows``: (rows,
    cols, active mask of the window's positions, their pattern indices)."""

    def __init__(self, data, active, batch: int, window: int | None = None):
        self.batch = batch
        flat = np.arange(active.size).reshape(data.shape[:2])
        self.windows = []
        for rows, cols in scan_windows(data, window or WINDOW_BATCHES * batch):
            index = flat[rows, cols].ravel()
            keep = active[index]
            if keep.any():
                self.windows.append((rows, cols, keep, index[keep]))

    def plan(self, rng) -> list[tuple[tuple, list[np.ndarray]]]:
        """Per window, in a random order: the window and its batches
        (positions in the window's list of active patterns)."""
        plan = []
        for w in rng.permutation(len(self.windows)):
            window = self.windows[w]
            order = rng.permutation(len(window[3]))
            plan.append((window, np.array_split(
                order, math.ceil(len(order) / self.batch))))
        return plan

    @staticmethod
    def count(plan) -> int:
        """Batches in ``plan``."""
        return sum(len(parts) for _, parts in plan)

    def read(self, plan):
        """(pattern indices, None) per batch."""
        for window, parts in plan:
            for part in parts:
                yield window[3][part], None


class StreamedBatches(HeldBatches):
    """Batches read from the data window by window ('lazy' storage): a
    window's patterns are read and become centred amplitudes, from which
    its batches are taken."""

    def __init__(self, data, shifts, active, batch: int):
        super().__init__(data, active, batch,
                         streamed_window(batch, data.shape[2:]))
        self.data, self.shifts = data, shifts

    def read(self, plan):
        """(pattern indices, amplitudes (B, N, N) float32) per batch."""
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self.read_window, plan[0][0])
            for k, (window, parts) in enumerate(plan):
                amplitudes = pending.result()
                if k + 1 < len(plan):
                    pending = pool.submit(self.read_window, plan[k + 1][0])
                for part in parts:
                    yield window[3][part], amplitudes[part]

    def read_window(self, window):
        """Centred amplitudes of a window's active patterns, read a few
        scan rows (64 MB) at a time: memory holds the window's amplitudes
        and one such piece, not the window's raw data as well."""
        rows, cols, keep, index = window
        width = cols.stop - cols.start
        out = np.empty((len(index), *self.data.shape[2:]), np.float32)
        filled = 0
        for part_rows, part in iterate_scan_rows(self.data[rows, cols]):
            patterns = to_numpy(part).reshape(-1, *self.data.shape[2:])
            start = part_rows.start * width
            mask = keep[start : start + len(patterns)]
            if not mask.all():
                patterns = patterns[mask]
            mine = slice(filled, filled + len(patterns))
            centred(patterns, self.shifts[index[mine]], out=out[mine])
            filled += len(patterns)
        return out


def streamed_window(batch: int, detector_shape) -> int:
    """Positions per window of streamed data: :data:`WINDOW_BATCHES`
    batches, or fewer (at least one) to hold at most
    :data:`STREAMED_WINDOW_BYTES` of amplitudes."""
    pattern = int(np.prod(detector_shape)) * 4
    return max(batch, min(WINDOW_BATCHES * batch,
                          STREAMED_WINDOW_BYTES // pattern))


def scan_windows(data, limit: int) -> list[tuple[slice, slice]]:
    """(rows, cols) rectangles of at most ``limit`` scan positions,
    near-square, covering the scan: consecutive dask chunks of ``data``
    merged, or one chunk cut into near-equal pieces (the whole scan is one
    chunk for other arrays)."""
    rx, ry = data.shape[:2]
    row_sizes, col_sizes = (data.chunks[:2] if is_dask(data)
                            else ((rx,), (ry,)))
    windows = []
    for rows in _spans(row_sizes, max(1, math.isqrt(limit))):
        width = max(1, limit // (rows.stop - rows.start))
        windows += [(rows, cols) for cols in _spans(col_sizes, width)]
    return windows


def _spans(sizes, target: int) -> list[slice]:
    """Consecutive slices covering ``sum(sizes)``: neighbouring chunks
    merged while the span stays ≤ ``target``, a longer chunk cut into
    near-equal pieces ≤ ``target``."""
    spans, start, position = [], None, 0
    for size in sizes:
        if size > target:
            if start is not None:
                spans.append(slice(start, position))
                start = None
            edges = np.linspace(position, position + size,
                                math.ceil(size / target) + 1)
            edges = np.round(edges).astype(int)
            spans += [slice(int(a), int(b))
                      for a, b in itertools.pairwise(edges)]
        else:
            if start is not None and position + size - start > target:
                spans.append(slice(start, position))
                start = None
            start = position if start is None else start
        position += size
    if start is not None:
        spans.append(slice(start, position))
    return spans
