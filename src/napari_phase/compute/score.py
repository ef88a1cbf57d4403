"""Quality of a reconstructed phase against the true phase.

The reconstruction is resampled onto the truth's grid (both placed in the
scan frame, Å), registered to it (integer shift: the cross-correlation
peak; sub-pixel: the shift within a pixel of it that maximises the
correlation), cropped away from the borders and compared by the Pearson
correlation. A reconstruction whose contrast is inverted correlates
negatively: its ``sign`` is −1 and it is reported as inverted rather than
silently flipped. Pearson's r ignores offset and scale, so radians,
cycles and normalised bright-field units score alike.

:func:`quality` adds the scale: the truth is first blurred to what the
method can see (an optional point-spread, e.g. the probe intensity for
DPC, then a Gaussian of the method's resolution), both images are
band-passed (that Gaussian minus a wide one of σ ``coarse``: offsets and
the largest scales, which integration and CTF correction cannot recover,
are left out), registered on those band-passed images (a smooth
background that integration leaves cannot pull the match away) and
compared by Pearson's r and by the least-squares slope of the image
against the truth (1 = the right radians).
:func:`rotation_error` and :func:`relative_error` score the fitted
geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, optimize

from .compare import Grid, PlacedImage
from .geometry import wrap_degrees

#: σ (Å) of the wide Gaussian whose image is subtracted in the band-pass.
COARSE = 8.0


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
    return _registered(image, truth, image_pixel, truth_pixel, image_origin,
                       truth_origin, border, max_shift)[0]


def _registered(image, truth, image_pixel, truth_pixel, image_origin,
                truth_origin, border, max_shift, filtered=None):
    """:func:`score`'s :class:`Score` and the image resampled on the
    truth grid at the registered shift (NaN outside the image), or, with
    ``filtered`` (a filter of a resampled image, NaN filled), that image
    filtered; ``truth`` is then filtered alike by the caller."""
    truth = np.asarray(truth, dtype=float)
    image = _antialiased(np.asarray(image, float), image_pixel / truth_pixel)
    placed = PlacedImage(image, (image_pixel,) * 2, image_origin, 'image')
    grid = Grid(tuple(truth_origin), float(truth_pixel), truth.shape)
    inner_truth = _inner(truth, border)
    prepared = filtered or _filled

    def sampled_at(shift):
        moved = grid.points + np.reshape(shift, (2, 1, 1)) * truth_pixel
        sampled = placed.sample(moved)
        return sampled if filtered is None else filtered(sampled)

    def correlation_at(shift):
        return _pearson(_inner(sampled_at(shift), border), inner_truth)

    coarse, sign = register(
        prepared(placed.sample(grid.points)), truth, max_shift)
    fine = optimize.minimize(  # within a pixel of the integer peak
        lambda shift: -sign * correlation_at(shift),
        coarse,
        method='Nelder-Mead',
        bounds=[(c - 1.0, c + 1.0) for c in coarse],
        options={
            'initial_simplex': coarse
            + np.array([[0, 0], [0.7, 0], [0, 0.7]]),
            'xatol': 0.01,
            'fatol': 1e-7,
        },
    )
    r = correlation_at(fine.x)
    found = Score(r, tuple(float(s) for s in fine.x), 1 if r >= 0 else -1)
    return found, sampled_at(fine.x)


@dataclass(frozen=True)
class Quality:
    """A phase image against the truth blurred to the method's resolution:
    ``correlation`` (band-passed Pearson r, signed), ``slope`` (band-passed
    image per radian of truth: 1 = quantitative, < 0 = inverted),
    ``registered`` (the :class:`Score` of the band-passed images: their
    shift and r) and the parameters used (``resolution`` FWHM and
    ``coarse`` σ in Å)."""

    correlation: float
    slope: float
    registered: Score
    resolution: float
    coarse: float

    @property
    def inverted(self) -> bool:
        return self.correlation < 0

    def __str__(self) -> str:
        text = f'band r = {self.correlation:+.3f}, slope {self.slope:+.2f}'
        return text + ' (inverted)' if self.inverted else text


def quality(
    image,
    truth,
    image_pixel: float,
    truth_pixel: float,
    resolution: float,
    image_origin: tuple[float, float] = (0.0, 0.0),
    truth_origin: tuple[float, float] = (0.0, 0.0),
    psf=None,
    coarse: float = COARSE,
    border: float = 0.1,
    max_shift: float = 0.25,
) -> Quality:
    """Band-passed correlation and phase slope of ``image`` (radians, scan
    frame) against ``truth`` (radians).

    The reference is ``truth`` cross-correlated with ``psf`` (a kernel on
    the truth grid, centred, summing to 1; e.g. the probe intensity, the
    point-spread of full-detector DPC), then low-passed by a Gaussian of
    FWHM ``resolution`` Å. The image is registered to it (:func:`score`),
    low-passed the same way, and both are band-passed by subtracting a
    Gaussian of σ ``coarse`` Å. ``border``/``max_shift`` as in
    :func:`score`.
    """
    truth = np.asarray(truth, dtype=float)
    if psf is not None:
        truth = ndimage.correlate(truth, np.asarray(psf, float),
                                  mode='nearest')
    fine = resolution / (2 * np.sqrt(2 * np.log(2))) / truth_pixel
    wide = coarse / truth_pixel

    def band_passed(x):
        x = ndimage.gaussian_filter(_extended(x), fine, mode='nearest')
        return x - ndimage.gaussian_filter(x, wide, mode='nearest')

    reference = band_passed(truth)
    found, moved = _registered(image, reference, image_pixel, truth_pixel,
                               image_origin, truth_origin, border, max_shift,
                               band_passed)
    a, b = (_inner(x, border) for x in (moved, reference))
    a, b = a - a.mean(), b - b.mean()
    slope = float(np.sum(a * b) / np.sum(b * b))
    return Quality(_pearson(a, b), slope, found, float(resolution),
                   float(coarse))


def rotation_error(found_deg: float, true_deg: float) -> float:
    """``found − true`` in degrees, wrapped into (−180, 180]: a wrong
    half-turn is ±180, not 0."""
    return wrap_degrees(found_deg - true_deg)


def relative_error(found: float, true: float) -> float:
    """``(found − true) / |true|``: −2 for the right size with the wrong
    sign."""
    return (found - true) / abs(true)


def register(image, reference, max_shift: float = 0.25):
    """Integer shift (pixels, per axis) of ``image`` relative to
    ``reference`` (same shape) and the sign of the match (−1 for an
    inverted copy): the peak of |cross-correlation| of the mean-free
    images, zero-padded (no wrap-around), within ``max_shift`` of the
    width. Summed over the overlap, it favours the smaller of equal
    matches, as a crystal offers one at every lattice vector.
    """
    shape = tuple(2 * n for n in reference.shape)
    spectra = [np.fft.rfft2(a - a.mean(), shape) for a in (reference, image)]
    surface = np.fft.irfft2(spectra[1] * np.conj(spectra[0]), shape)
    lags = [np.fft.fftfreq(n, 1 / n) for n in shape]
    limit = np.asarray(reference.shape) * max_shift
    allowed = (np.abs(lags[0])[:, None] <= limit[0]) & (
        np.abs(lags[1])[None, :] <= limit[1]
    )
    surface = np.where(allowed, surface, 0.0)
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


def _extended(image) -> np.ndarray:
    """NaN (outside the image) replaced by the nearest finite value, as
    the filters' 'nearest' mode extends the reference."""
    missing = ~np.isfinite(image)
    if not missing.any():
        return image
    _filled(image)  # raises if nothing is finite
    nearest = ndimage.distance_transform_edt(
        missing, return_distances=False, return_indices=True)
    return image[tuple(nearest)]


def _inner(image, border: float) -> np.ndarray:
    cut = [round(n * border) for n in image.shape]
    return image[cut[0] : image.shape[0] - cut[0],
                 cut[1] : image.shape[1] - cut[1]]


def _pearson(a, b) -> float:
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep] - a[keep].mean(), b[keep] - b[keep].mean()
    norm = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / norm) if norm else float('nan')
