"""Quality of a reconstructed phase against the true phase.

The reconstruction is resampled onto the truth's grid (both placed in the
scan frame, Å), registered to it (integer shift: the cross-correlation
peak; sub-pixel: the shift that maximises the correlation), cropped away
from the borders and compared by the Pearson correlation. A
reconstruction whose contrast is inverted correlates negatively: its
``sign`` is −1 and it is reported as inverted rather than silently
flipped. Pearson's r ignores offset and scale, so
radians, cycles and normalised bright-field units score alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

from .compare import Grid, PlacedImage


@dataclass(frozen=True)
class Score:
    """Registered correlation with the truth.

    ``correlation`` is Pearson's r (signed; −1 is a perfect inverted
    image), ``shift_px`` the offset of the reconstruction relative to the
    truth (truth pixels, per axis) and ``sign`` +1 or −1.
    """

    correlation: float
    shift_px: tuple[float, float]
    sign: int

    @property
    def inverted(self) -> bool:
        return self.sign < 0

    def __str__(self) -> str:
        text = f'r = {self.correlation:+.3f}'
        return text + ' (inverted)' if self.inverted else text


def score(
    image,
    truth,
    image_pixel: float = 1.0,
    truth_pixel: float = 1.0,
    image_origin: tuple[float, float] = (0.0, 0.0),
    truth_origin: tuple[float, float] = (0.0, 0.0),
    border: float = 0.1,
    max_shift: float = 0.25,
) -> Score:
    """Score ``image`` against ``truth`` (2D arrays in the scan frame).

    ``*_pixel`` (Å) and ``*_origin`` (Å of pixel (0, 0)) place both images;
    the truth grid is the common grid. ``border`` is the fraction of the
    truth's width left out on every side; ``max_shift`` the largest
    registration shift searched, as a fraction of the truth's width.
    """
    truth = np.asarray(truth, dtype=float)
    image = _antialiased(np.asarray(image, float), image_pixel / truth_pixel)
    placed = PlacedImage(image, (image_pixel,) * 2, image_origin, 'image')
    grid = Grid(tuple(truth_origin), float(truth_pixel), truth.shape)
    inner_truth = _inner(truth, border)

    def correlation_at(shift):
        moved = grid.points + np.reshape(shift, (2, 1, 1)) * truth_pixel
        return _pearson(_inner(placed.sample(moved), border), inner_truth)

    coarse, sign = register(
        _filled(placed.sample(grid.points)), truth, max_shift
    )
    fine = optimize.minimize(
        lambda shift: -sign * correlation_at(shift),
        coarse,
        method='Nelder-Mead',
        options=dict(
            initial_simplex=coarse + np.array([[0, 0], [0.7, 0], [0, 0.7]]),
            xatol=0.01,
            fatol=1e-7,
        ),
    )
    r = correlation_at(fine.x)
    return Score(r, tuple(float(s) for s in fine.x), 1 if r >= 0 else -1)


def register(image, reference, max_shift: float = 0.25):
    """Integer shift (pixels, per axis) of ``image`` relative to
    ``reference`` (same shape) and the sign of the match (−1 for an
    inverted copy): the peak of |cross-correlation| of the mean-free
    images, zero-padded (no wrap-around) and divided by the overlap at each
    lag (no bias towards small shifts), within ``max_shift`` of the width.
    """
    shape = tuple(2 * n for n in reference.shape)
    spectra = [np.fft.rfft2(a - a.mean(), shape) for a in (reference, image)]
    ones = np.fft.rfft2(np.ones(reference.shape), shape)
    surface = np.fft.irfft2(spectra[1] * np.conj(spectra[0]), shape)
    overlap = np.fft.irfft2(ones * np.conj(ones), shape)
    lags = [np.fft.fftfreq(n, 1 / n) for n in shape]
    limit = np.asarray(reference.shape) * max_shift
    allowed = (np.abs(lags[0])[:, None] <= limit[0]) & (
        np.abs(lags[1])[None, :] <= limit[1]
    )
    surface = np.where(allowed, surface / np.maximum(overlap, 1), 0.0)
    peak = np.unravel_index(np.argmax(np.abs(surface)), surface.shape)
    shift = np.array([lags[axis][peak[axis]] for axis in (0, 1)])
    return shift, 1 if surface[peak] >= 0 else -1


def _antialiased(image, zoom: float) -> np.ndarray:
    """Low-pass ``image`` before it is sampled ``zoom`` times as finely
    (< 1: on a coarser grid)."""
    if zoom >= 1:
        return image
    return ndimage.gaussian_filter(image, 0.5 / zoom, mode='nearest')


def _filled(image) -> np.ndarray:
    """NaN (outside the image) replaced by the mean of the rest."""
    finite = np.isfinite(image)
    if not finite.any():
        raise ValueError('the image does not overlap the truth at all')
    return np.where(finite, image, image[finite].mean())


def _inner(image, border: float) -> np.ndarray:
    cut = [int(round(n * border)) for n in image.shape]
    return image[cut[0] : image.shape[0] - cut[0],
                 cut[1] : image.shape[1] - cut[1]]


def _pearson(a, b) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep] - a[keep].mean(), b[keep] - b[keep].mean()
    norm = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / norm) if norm else float('nan')
