"""Probe (bright-field disk) radius and centre from a diffraction pattern.

The method follows py4DSTEM's ``get_probe_size``: threshold the pattern,
normalised to its maximum, at ``n`` levels between ``thresh_lower`` and
``thresh_upper``; each thresholded area gives a radius ``sqrt(area/π)``.
The bright-field disk is much brighter than the rest, so the radius is flat
over a wide range of thresholds: the levels where ``dr/dthreshold`` is
small (between twice its median and zero) are trusted, the radius is their
mean and the centre is the intensity centre of mass of the pattern above
their mean threshold. Averaging over many levels makes both sub-pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import to_numpy


@dataclass(frozen=True)
class ProbeFit:
    """Fitted bright-field disk, detector pixels (x = array axis 0)."""

    radius: float  # px
    center: tuple[float, float]  # px, (axis 0, axis 1)
    threshold: float  # relative threshold of the region used for the centre


def fit_probe(
    pattern,
    thresh_lower: float = 0.01,
    thresh_upper: float = 0.99,
    n: int = 100,
) -> ProbeFit:
    """Radius and centre (px) of the bright-field disk in ``pattern``.

    ``pattern`` (Qx, Qy) is a vacuum probe or a mean diffraction pattern
    (numpy, cupy or dask). Thresholds are fractions of the maximum.
    """
    pattern = np.asarray(to_numpy(pattern), dtype=np.float64)
    _check(pattern, thresh_lower, thresh_upper, n)
    peak = pattern.max()
    thresholds = np.linspace(thresh_lower, thresh_upper, n)
    values = np.sort(pattern, axis=None)
    above = values.size - np.searchsorted(values, thresholds * peak, 'right')
    radii = np.sqrt(above / np.pi)
    slope = np.gradient(radii, thresholds)
    trusted = (slope <= 0) & (slope >= 2 * np.median(slope))
    if not trusted.any():
        raise ValueError(
            'no plateau in the probe radius over the thresholds '
            f'{thresh_lower}–{thresh_upper}: is there a bright-field disk?'
        )
    threshold = float(thresholds[trusted].mean())
    region = np.where(pattern > threshold * peak, pattern, 0.0)
    x, y = np.indices(pattern.shape)
    total = region.sum()
    center = (float((x * region).sum() / total),
              float((y * region).sum() / total))
    return ProbeFit(float(radii[trusted].mean()), center, threshold)


def q_pixel_from_semiangle(semiangle_mrad: float, radius_px: float) -> float:
    """Detector pixel size (mrad) from the convergence semiangle (mrad) and
    the bright-field disk radius (px)."""
    if not (semiangle_mrad > 0 and radius_px > 0):
        raise ValueError(
            'the convergence semiangle and the probe radius must be > 0, '
            f'got {semiangle_mrad} mrad and {radius_px} px'
        )
    return semiangle_mrad / radius_px


def _check(pattern, lower, upper, n):
    if pattern.ndim != 2:
        raise ValueError(
            f'a probe pattern must be 2D (Qx, Qy), got shape {pattern.shape}'
        )
    if not np.isfinite(pattern).all():
        raise ValueError('the probe pattern contains NaN or infinite values')
    if not pattern.max() > 0:
        raise ValueError('the probe pattern has no positive intensity')
    if not 0 <= lower < upper <= 1:
        raise ValueError(
            f'thresholds must satisfy 0 ≤ lower < upper ≤ 1, got {lower}, '
            f'{upper}'
        )
    if not (isinstance(n, int | np.integer) and n >= 3):
        raise ValueError(f'n (number of thresholds) must be ≥ 3, got {n}')


__all__ = ['ProbeFit', 'fit_probe', 'q_pixel_from_semiangle']
