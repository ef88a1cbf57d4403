"""Centre of mass of every diffraction pattern, and the descan fit.

Used by DPC (the phase gradient) and ptychography (centring each pattern
on the FFT origin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import ProgressCallback, to_numpy, xp_of
from .reduce import detector_sums


@dataclass
class CenterOfMass:
    """Per-pattern centre of mass, detector pixels (array axis 0, 1)."""

    com: np.ndarray  # (2, Rx, Ry): measured CoM, px; 0 where no counts
    intensity: np.ndarray  # (Rx, Ry): Σ of the (masked) pattern
    fit: np.ndarray  # (2, Rx, Ry): descan fit of com, px
    empty: int  # number of patterns with no counts in the mask
    #: (Rx, Ry) Poisson variance of the CoM (both components summed, px²)
    #: if the counts are electrons; inf where the pattern is empty
    variance: np.ndarray

    @property
    def shift(self) -> np.ndarray:
        """CoM minus its descan fit (2, Rx, Ry), detector px."""
        return self.com - self.fit


def center_of_mass(
    data,
    mask=None,
    descan: str = 'plane',
    progress: ProgressCallback | None = None,
) -> CenterOfMass:
    """CoM of each pattern of ``data`` (Rx, Ry, Qx, Qy) in one pass.

    ``mask`` (Qx, Qy), boolean or fractional, weights the detector.
    Patterns with no counts get the fitted CoM and are counted in
    ``empty``. ``descan`` is 'plane' (least-squares plane over the scan,
    per component), 'constant' (the mean) or 'none' (zero).
    """
    return centers_of_mass(data, [mask], descan, progress)[0]


def centers_of_mass(
    data,
    masks,
    descan: str = 'plane',
    progress: ProgressCallback | None = None,
) -> list[CenterOfMass]:
    """:func:`center_of_mass` for several detector masks (``None``: the
    whole detector), still in one pass over the data."""
    qx, qy = data.shape[2:]
    xp = xp_of(data)
    kx = xp.arange(qx, dtype=np.float32)[:, None]
    ky = xp.arange(qy, dtype=np.float32)[None, :]
    weights = []
    for mask in masks:
        weight = _detector_weight(mask, (qx, qy), xp)
        weights += [weight, weight * kx, weight * ky,
                    weight * (kx**2 + ky**2)]
    sums = to_numpy(
        detector_sums(data, xp.stack(weights), progress)
    ).astype(np.float64)
    return [_com_from_sums(sums[k : k + 4], descan)
            for k in range(0, len(sums), 4)]


def _detector_weight(mask, shape, xp):
    if mask is None:
        return xp.ones(shape, np.float32)
    weight = xp.asarray(mask, dtype=np.float32)
    if weight.shape != shape:
        raise ValueError(
            f'mask shape {tuple(weight.shape)} does not match the detector '
            f'shape {shape}'
        )
    if not float(weight.sum()) > 0:
        raise ValueError('the detector mask selects no pixel')
    return weight


def _com_from_sums(sums: np.ndarray, descan: str) -> CenterOfMass:
    """CoM from (Σ I, Σ I·kx, Σ I·ky, Σ I·|k|²) maps (4, Rx, Ry). The
    CoM of N counts spread by s² (px²) about it varies by s²/N."""
    total = sums[0]
    valid = total > 0
    com = np.zeros((2, *total.shape))
    com[:, valid] = sums[1:3, valid] / total[valid]
    variance = np.full(total.shape, np.inf)
    spread = sums[3, valid] / total[valid] - (com[:, valid] ** 2).sum(0)
    variance[valid] = np.maximum(spread, 0) / total[valid]
    fit = fit_descan(com, valid, descan)
    com[:, ~valid] = fit[:, ~valid]
    return CenterOfMass(com, total, fit, int((~valid).sum()), variance)


def fit_descan(com: np.ndarray, valid: np.ndarray, kind: str) -> np.ndarray:
    """Fit each CoM component over the scan: 'plane', 'constant' or 'none'."""
    if kind == 'none':
        return np.zeros_like(com)
    rx, ry = com.shape[1:]
    ix, iy = np.meshgrid(np.arange(rx), np.arange(ry), indexing='ij')
    columns = {'constant': [np.ones_like(ix)], 'plane': [np.ones_like(ix), ix, iy]}
    if kind not in columns:
        raise ValueError(
            f"descan must be 'plane', 'constant' or 'none', not {kind!r}"
        )
    basis = np.stack(columns[kind], axis=-1).astype(np.float64)
    if not valid.any():
        raise ValueError('every pattern is empty: no counts to fit')
    coef, *_ = np.linalg.lstsq(basis[valid], com[:, valid].T, rcond=None)
    return np.moveaxis(basis @ coef, -1, 0)
