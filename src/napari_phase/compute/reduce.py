"""Single-pass reductions over a 4D-STEM array (numpy, cupy or dask).

Every virtual image, the centre of mass and the mean/max pattern are
reductions over the detector axes; they read the data once, in chunks of
scan rows, so memory stays bounded. Results are small: a lazy (dask) input
is computed and comes back as numpy; numpy and cupy come back as they went.
"""

from __future__ import annotations

import numpy as np

from .backend import ProgressCallback, is_dask, iterate_scan_rows, xp_of


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
            self._total = max(1, sum(len(state[k]) for k in ('ready', 'waiting')))
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
    total = xp.zeros(data.shape[2:], dtype=np.float64)
    peak = xp.full(data.shape[2:], -np.inf, dtype=np.float32)
    for rows, block in iterate_scan_rows(data):
        total += block.sum(axis=(0, 1), dtype=np.float64)
        xp.maximum(peak, block.max(axis=(0, 1)), out=peak)
        if progress:
            progress(rows.stop / data.shape[0])
    n = data.shape[0] * data.shape[1]
    return (total / n).astype(np.float32), peak


def detector_sums(
    data, weights, progress: ProgressCallback | None = None
) -> np.ndarray:
    """Weighted detector sums for many weight maps in one pass.

    ``weights`` is (K, Qx, Qy) (or (Qx, Qy) for one map): a virtual
    detector mask, a CoM coordinate map... Returns (K, Rx, Ry) float32 (or
    (Rx, Ry)): ``out[k, rx, ry] = Σ_q data[rx, ry, q] · weights[k, q]``,
    computed as one matrix product per chunk of scan rows.
    """
    single = np.ndim(weights) == 2
    w = weights[None] if single else weights
    rx, ry, qx, qy = data.shape
    if w.shape[1:] != (qx, qy):
        raise ValueError(
            f'weight maps of shape {w.shape[1:]} do not match the detector '
            f'shape {(qx, qy)}'
        )
    if is_dask(data):
        import dask.array as da

        w_flat = np.asarray(w, dtype=np.float32).reshape(len(w), -1).T
        sums = da.tensordot(
            data.astype(np.float32), w_flat.reshape(qx, qy, -1), axes=2
        )
        (out,) = compute_dask(sums, progress=progress)
        out = np.moveaxis(out, -1, 0)
        return out[0] if single else out
    xp = xp_of(data)
    w_flat = xp.asarray(w, dtype=xp.float32).reshape(len(w), -1).T
    out = xp.empty((rx, ry, len(w)), dtype=xp.float32)
    for rows, block in iterate_scan_rows(data):
        flat = block.reshape(-1, qx * qy).astype(xp.float32, copy=False)
        out[rows] = (flat @ w_flat).reshape(-1, ry, len(w))
        if progress:
            progress(rows.stop / rx)
    out = xp.moveaxis(out, -1, 0)
    return out[0] if single else out
