"""Gather and scatter-add of N×N object patches.

Two strategies with one interface: slices per position (the CPU kernel:
no index arrays, no bincount) and fancy indexing with ``xp.add.at`` (one
kernel each: the GPU kernel). :func:`patch_access` picks one for the
array module.
"""

from __future__ import annotations

import numpy as np


class SliceAccess:
    """Gather and scatter-add by one slice per position."""

    def __init__(self, xp, size: int):
        self.xp, self.size = xp, size

    def gather(self, obj, corners, out):
        n = self.size
        for k, (x, y) in enumerate(corners):
            out[k] = obj[x : x + n, y : y + n]
        return out

    def scatter(self, target, corners, values):
        n = self.size
        for k, (x, y) in enumerate(corners):
            target[x : x + n, y : y + n] += values[k]


class IndexAccess:
    """Gather by fancy indexing and scatter with ``xp.add.at`` (on complex
    targets the real and imaginary parts are added through a float
    view)."""

    def __init__(self, xp, size: int):
        self.xp, self.size = xp, size
        self.offsets = xp.arange(size)

    def _index(self, corners):
        c = self.xp.asarray(corners)
        rows = c[:, 0, None, None] + self.offsets[:, None]
        cols = c[:, 1, None, None] + self.offsets[None, :]
        return rows, cols

    def gather(self, obj, corners, out):
        rows, cols = self._index(corners)
        out[...] = obj[rows, cols]
        return out

    def scatter(self, target, corners, values):
        rows, cols = self._index(corners)
        if target.dtype.kind == 'c':
            cols = (2 * cols[..., None] + self.xp.arange(2)).reshape(
                *cols.shape[:-1], -1
            )
            target, values = _float_view(target), _float_view(values)
        self.xp.add.at(target, (rows, cols), values)


def _float_view(array):
    """A complex64 array seen as float32 with real/imag interleaved."""
    array = array if array.flags.c_contiguous else array.copy()
    return array.view(np.float32)


def patch_access(xp, size: int, strategy: str | None = None):
    """'slices' (default with numpy) or 'index' (default otherwise)."""
    strategy = strategy or ('slices' if xp is np else 'index')
    kinds = {'slices': SliceAccess, 'index': IndexAccess}
    if strategy not in kinds:
        raise ValueError(f"patch access must be one of {sorted(kinds)}")
    return kinds[strategy](xp, size)
