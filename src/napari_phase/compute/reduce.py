"""Single-pass reductions over a 4D-STEM array (numpy, cupy or dask).

Every virtual image, the centre of mass and the mean/max pattern are
reductions over the detector axes; they read the data once, in chunks of
scan rows, so memory stays bounded. Results are small: a lazy (dask) input
is computed and comes back as numpy; numpy and cupy come back as they went.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .backend import (
    ProgressCallback,
    is_dask,
    iterate_scan_rows,
    to_numpy,
    xp_of,
)


def compute_dask(*arrays, progress: ProgressCallback | None = None):
    """Compute dask arrays together (one pass over shared inputs)."""
    import dask
    from dask.callbacks import Callback

    if progress is None:
        return dask.compute(*arrays)
    from .scheduler import active_client

    client = active_client()
    if client is not None:
        return _compute_on_cluster(client, arrays, progress)

    class _Progress(Callback):
        def _start_state(self, dsk, state):
            pending = state['ready'], state['waiting']
            self._total = max(1, sum(len(tasks) for tasks in pending))
            self._done = 0

        def _posttask(self, key, result, dsk, state, worker_id):
            self._done += 1
            progress(min(1.0, self._done / self._total))

    with _Progress():
        return dask.compute(*arrays)


def _compute_on_cluster(client, arrays, progress: ProgressCallback):
    """Compute on a dask.distributed cluster (where local-scheduler
    callbacks never run): progress per finished output chunk."""
    import dask
    from distributed import as_completed, futures_of

    persisted = client.persist(list(arrays))
    futures = futures_of(persisted)
    for done, _ in enumerate(as_completed(futures), 1):
        progress(done / len(futures))
    return dask.compute(*persisted)


#: Patterns reduced together by mean_and_max_pattern (a few MB: in cache).
_CACHE_PATTERNS = 16


def mean_and_max_pattern(
    data, progress: ProgressCallback | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and maximum diffraction pattern of ``data`` (Rx, Ry, Qx, Qy).

    One pass over the data; the mean is accumulated in float64.
    """
    if is_dask(data):
        mean, peak = compute_dask(
            data.mean(axis=(0, 1), dtype=np.float64),
            data.max(axis=(0, 1)),
            progress=progress,
        )
        return mean.astype(np.float32), peak.astype(np.float32)
    xp = xp_of(data)
    n_q = data.shape[2] * data.shape[3]
    total = xp.zeros(n_q, dtype=np.float64)
    peak = xp.full(n_q, -np.inf, dtype=np.float32)
    for rows, block in iterate_scan_rows(data):
        patterns = block.reshape(-1, n_q)
        # A few patterns at a time stay in cache for both reductions.
        for start in range(0, len(patterns), _CACHE_PATTERNS):
            part = patterns[start : start + _CACHE_PATTERNS]
            total += xp.add.reduce(part, axis=0, dtype=np.float32)
            xp.maximum(peak, part.max(axis=0), out=peak)
        if progress:
            progress(rows.stop / data.shape[0])
    n = data.shape[0] * data.shape[1]
    shape = data.shape[2:]
    return (total / n).astype(np.float32).reshape(shape), peak.reshape(shape)


def detector_sums(
    data, weights, progress: ProgressCallback | None = None
) -> np.ndarray:
    """Weighted detector sums for many weight maps in one pass.

    ``weights`` is (K, Qx, Qy) (or (Qx, Qy) for one map): a virtual
    detector mask, a CoM coordinate map... Returns (K, Rx, Ry) float32 (or
    (Rx, Ry)): ``out[k, rx, ry] = Σ_q data[rx, ry, q] · weights[k, q]``.
    Only the detector box where some weight is nonzero is read.
    """
    single = np.ndim(weights) == 2
    w = _checked_weights(weights, data.shape)
    if is_dask(data):
        import dask.array as da

        box = _support(w)
        sums = da.tensordot(
            data[(..., *box)].astype(np.float32), w[(..., *box)],
            axes=((2, 3), (1, 2)),
        )
        (out,) = compute_dask(sums, progress=progress)
        out = np.moveaxis(out, -1, 0)
    else:
        out = run_steps(iter_detector_sums(data, w), progress)
    return out[0] if single else out


def iter_detector_sums(data, weights):
    """Generator form of :func:`detector_sums` for (K, Qx, Qy) weights:
    yields the fraction done after each chunk of scan rows (a caller can
    stop between chunks; dask is read one chunk at a time) and returns the
    (K, Rx, Ry) sums."""
    w = _checked_weights(weights, data.shape)
    box = _support(w)
    data = data[(..., *box)]
    xp = xp_of(data)
    w = xp.asarray(w[(..., *box)])
    out = xp.empty((len(w), *data.shape[:2]), dtype=xp.float32)
    for rows, block in iterate_scan_rows(data):
        out[:, rows] = _weighted_sum(block, w, xp)
        yield rows.stop / data.shape[0]
    return out


def run_steps(steps, progress: Callable | None = None):
    """Drive a generator to its end, handing each yielded value (a
    fraction done, a progress report) to ``progress``; return its value."""
    while True:
        try:
            done = next(steps)
        except StopIteration as finished:
            return finished.value
        if progress:
            progress(done)


def _weighted_sum(block, w, xp):
    """(K, n0, n1) sums of a (n0, n1, qx, qy) block against (K, qx, qy):
    one matrix product on contiguous data, einsum on a strided box (which
    would otherwise be copied)."""
    if block.flags.c_contiguous:
        flat = block.reshape(-1, w.shape[1] * w.shape[2])
        sums = flat.astype(xp.float32, copy=False) @ w.reshape(len(w), -1).T
        return sums.T.reshape(len(w), *block.shape[:2])
    return xp.einsum('ijkl,nkl->nij', block, w, dtype=xp.float32)


def _checked_weights(weights, shape) -> np.ndarray:
    """Weights as (K, Qx, Qy) float32, checked against the data shape."""
    xp = xp_of(weights)
    w = xp.asarray(weights, dtype=xp.float32)
    w = w[None] if w.ndim == 2 else w
    if w.shape[1:] != tuple(shape[2:]):
        raise ValueError(
            f'weight maps of shape {w.shape[1:]} do not match the detector '
            f'shape {tuple(shape[2:])}'
        )
    return w


def _support(weights) -> tuple[slice, slice]:
    """Bounding box (slices of Qx, Qy) of the nonzero weights."""
    used = (weights != 0).any(axis=0)
    box = []
    for axis in (1, 0):
        hit = np.flatnonzero(to_numpy(used.any(axis=axis)))
        box.append(slice(hit[0], hit[-1] + 1) if len(hit) else slice(0, 0))
    return tuple(box)


def rescaled(steps, start, span):
    """Re-yield a generator's fractions mapped onto [start, start + span];
    return its value."""
    while True:
        try:
            fraction = next(steps)
        except StopIteration as done:
            return done.value
        yield start + span * fraction
