"""Comparing results on one physical grid (Qt-free).

Every real-space result is an image placed in the scan frame: pixel
``(i, j)`` sits at ``translate + (i, j)·scale`` Å from scan position
(0, 0) (napari's ``scale``/``translate``). Profiles, correlations and
Fourier ring correlations are computed in Å on that grid, so results that
were padded, cropped or upsampled differently compare point for point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .backend import to_numpy


class CompareError(ValueError):
    """Images that cannot be compared (no overlap, other dataset, …)."""


@dataclass(frozen=True)
class PlacedImage:
    """A 2D image with its placement: ``scale`` (Å/pixel) and
    ``translate`` (Å of pixel (0, 0)), both per axis, scan frame."""

    data: np.ndarray
    scale: tuple[float, float] = (1.0, 1.0)
    translate: tuple[float, float] = (0.0, 0.0)
    name: str = 'image'

    def __post_init__(self):
        data = np.asarray(to_numpy(self.data))
        if data.ndim != 2:
            raise CompareError(
                f'{self.name}: a 2D image is needed, got shape {data.shape}'
            )
        object.__setattr__(self, 'data', data)
        object.__setattr__(self, 'scale', _pair(self.scale, self.name))
        object.__setattr__(self, 'translate', _pair(self.translate, self.name))

    @property
    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest pixel-centre positions (Å, per axis)."""
        low = np.asarray(self.translate)
        high = low + (np.asarray(self.data.shape) - 1) * self.scale
        return low, high

    def pixel_coordinates(self, points) -> np.ndarray:
        """Fractional pixel indices (2, ...) of scan-frame ``points``
        (2, ...) in Å."""
        points = np.asarray(points, float)
        shape = (2,) + (1,) * (points.ndim - 1)
        translate = np.reshape(self.translate, shape)
        return (points - translate) / np.reshape(self.scale, shape)

    def sample(self, points, order: int = 1) -> np.ndarray:
        """Values at scan-frame ``points`` (2, ...) Å; NaN outside."""
        coords = self.pixel_coordinates(points)
        values = ndimage.map_coordinates(
            self.data.astype(float), coords, order=order, mode='nearest'
        )
        limit = np.reshape(np.asarray(self.data.shape) - 1, (2,) + (1,) * (
            coords.ndim - 1
        ))
        inside = np.all((coords >= -1e-9) & (coords <= limit + 1e-9), axis=0)
        return np.where(inside, values, np.nan)


def _pair(value, name) -> tuple[float, float]:
    values = tuple(float(v) for v in np.ravel(value)[-2:])
    if len(values) != 2:
        raise CompareError(f'{name}: scale/translate need 2 values')
    return values


def robust_limits(
    image, percentiles: tuple[float, float] = (1.0, 99.0)
) -> tuple[float, float]:
    """Contrast limits from ``percentiles`` of the finite values (so that a
    few outliers or padding do not flatten the contrast)."""
    values = np.asarray(to_numpy(image), float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise CompareError('no finite values to set the contrast from')
    low, high = np.percentile(values, percentiles)
    if high <= low:
        high = low + (abs(low) or 1.0) * 1e-6
    return float(low), float(high)


def common_limits(
    images: list[PlacedImage], percentiles: tuple[float, float] = (1.0, 99.0)
) -> list[tuple[float, float]]:
    """Matched robust contrast: the same percentiles, taken in each image
    over the field of view that all of them cover (Å)."""
    grid = common_grid(images)
    return [robust_limits(image.sample(grid.points), percentiles)
            for image in images]


@dataclass(frozen=True)
class Grid:
    """A sampling grid in the scan frame: ``points`` (2, nx, ny) Å."""

    origin: tuple[float, float]
    pixel_size: float
    shape: tuple[int, int]

    @property
    def points(self) -> np.ndarray:
        axes = [self.origin[k] + np.arange(self.shape[k]) * self.pixel_size
                for k in (0, 1)]
        return np.stack(np.meshgrid(*axes, indexing='ij'))


def common_grid(
    images: list[PlacedImage], pixel_size: float | None = None
) -> Grid:
    """The grid covering the overlap of all ``images``, with the coarsest
    of their pixels (or ``pixel_size``, Å)."""
    if not images:
        raise CompareError('no images to compare')
    low = np.max([image.extent[0] for image in images], axis=0)
    high = np.min([image.extent[1] for image in images], axis=0)
    pixel_size = pixel_size or max(max(image.scale) for image in images)
    if np.any(high - low < pixel_size):
        names = ', '.join(image.name for image in images)
        raise CompareError(f'{names}: the images do not overlap (in Å)')
    shape = tuple(int(np.floor((h - l) / pixel_size + 1e-9)) + 1
                  for l, h in zip(low, high))
    return Grid(tuple(float(v) for v in low), float(pixel_size), shape)


@dataclass(frozen=True)
class Profile:
    """A line profile: ``distance`` (Å from the start) and one row of
    ``values`` per image (NaN where an image does not reach)."""

    distance: np.ndarray
    values: np.ndarray
    names: tuple[str, ...]
    points: np.ndarray  # (2, n) scan-frame positions, Å


def line_profile(
    images: list[PlacedImage],
    start,
    end,
    spacing: float | None = None,
    order: int = 1,
) -> Profile:
    """Sample every image along the segment ``start`` → ``end`` (Å, scan
    frame) every ``spacing`` Å (default: the finest pixel), by
    interpolation of the given ``order``."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    length = float(np.hypot(*(end - start)))
    spacing = spacing or min(min(image.scale) for image in images)
    n = max(int(np.floor(length / spacing + 1e-9)) + 1, 2)
    distance = np.linspace(0.0, (n - 1) * spacing, n) if length else (
        np.zeros(n)
    )
    direction = (end - start) / length if length else np.zeros(2)
    points = start[:, None] + direction[:, None] * distance
    values = np.stack([image.sample(points, order) for image in images])
    return Profile(distance, values, tuple(i.name for i in images), points)


def correlation(a: PlacedImage, b: PlacedImage) -> float:
    """Pearson correlation of two images over their common field of view,
    both resampled on the coarser grid."""
    grid = common_grid([a, b])
    va, vb = (image.sample(grid.points).ravel() for image in (a, b))
    keep = np.isfinite(va) & np.isfinite(vb)
    va, vb = va[keep] - va[keep].mean(), vb[keep] - vb[keep].mean()
    norm = np.sqrt(np.sum(va**2) * np.sum(vb**2))
    return float(np.sum(va * vb) / norm) if norm else float('nan')


@dataclass(frozen=True)
class FRC:
    """Fourier ring correlation: ``frequency`` (Å⁻¹, ring centres),
    ``frc``, the ``threshold`` curve used, and the ``resolution`` (Å) where
    the FRC first falls below it (the Nyquist period when it never does,
    with ``limited_by_sampling`` set)."""

    frequency: np.ndarray
    frc: np.ndarray
    threshold: np.ndarray
    resolution: float
    limited_by_sampling: bool


def fourier_ring_correlation(
    a: PlacedImage, b: PlacedImage, threshold: str | float = 'half-bit'
) -> FRC:
    """FRC of two independent reconstructions of the same field of view,
    resampled on a common grid and apodized (Hann window).

    ``threshold``: ``'half-bit'`` (van Heel & Schatz 2005) or a constant
    (e.g. 1/7).
    """
    grid = common_grid([a, b])
    window = np.outer(*(np.hanning(n) for n in grid.shape))
    spectra = []
    for image in (a, b):
        values = image.sample(grid.points)
        values = np.nan_to_num(values - np.nanmean(values))
        spectra.append(np.fft.fft2(values * window))
    kx, ky = (np.fft.fftfreq(n, grid.pixel_size) for n in grid.shape)
    k = np.hypot(kx[:, None], ky[None, :])
    dk = 1.0 / (min(grid.shape) * grid.pixel_size)
    nyquist = 0.5 / grid.pixel_size
    rings = np.round(k / dk).astype(int).ravel()
    n_rings = int(np.floor(nyquist / dk)) + 1

    def ring_sum(values):
        return np.bincount(rings, values.ravel(), minlength=n_rings)[:n_rings]

    cross = ring_sum(np.real(spectra[0] * np.conj(spectra[1])))
    power = ring_sum(np.abs(spectra[0]) ** 2) * ring_sum(
        np.abs(spectra[1]) ** 2
    )
    frc = np.divide(cross, np.sqrt(power), out=np.zeros(n_rings),
                    where=power > 0)
    count = np.maximum(ring_sum(np.ones_like(k)), 1)
    curve = _threshold_curve(threshold, count)
    frequency = np.arange(n_rings) * dk
    below = np.nonzero((frc < curve) & (frequency > 0))[0]
    if below.size == 0:
        return FRC(frequency, frc, curve, 1.0 / nyquist, True)
    first = below[0]
    crossing = _crossing(frequency, frc - curve, first)
    return FRC(frequency, frc, curve, 1.0 / crossing, False)


def _threshold_curve(threshold, count) -> np.ndarray:
    if threshold == 'half-bit':
        root = 1.0 / np.sqrt(count)
        return (0.2071 + 1.9102 * root) / (1.2071 + 0.9102 * root)
    if isinstance(threshold, str):
        raise CompareError(
            f"FRC threshold must be 'half-bit' or a number, not {threshold!r}"
        )
    return np.full(count.shape, float(threshold))


def _crossing(frequency, difference, first) -> float:
    """Frequency (Å⁻¹) where ``difference`` crosses zero, linearly
    interpolated between ring ``first - 1`` and ``first``."""
    if first == 0:
        return float(frequency[0])
    d0, d1 = difference[first - 1], difference[first]
    f0, f1 = frequency[first - 1], frequency[first]
    return float(f0 + (f1 - f0) * d0 / (d0 - d1)) if d0 != d1 else float(f1)


def check_same_dataset(sources: dict[str, str | None]) -> None:
    """Raise :class:`CompareError` when the named results come from
    different datasets (``sources``: result name → dataset source; unknown
    sources are not checked)."""
    known = {name: src for name, src in sources.items() if src is not None}
    if len(set(known.values())) > 1:
        listing = '; '.join(f'{n!r} from {s!r}' for n, s in known.items())
        raise CompareError(
            f'These results come from different datasets: {listing}. '
            'Compare results of one dataset.'
        )


def local_centroid(
    image: PlacedImage, center, radius: float, spacing: float | None = None
) -> np.ndarray:
    """Centroid (Å, scan frame) of the bright feature within ``radius`` Å
    of ``center``: values above the median of the disk, weighted by their
    excess, sampled every ``spacing`` Å (default: the image pixel)."""
    spacing = spacing or min(image.scale)
    offsets = np.arange(-radius, radius + spacing / 2, spacing)
    dx, dy = np.meshgrid(offsets, offsets, indexing='ij')
    inside = dx**2 + dy**2 <= radius**2
    points = np.stack([dx[inside], dy[inside]]) + np.reshape(center, (2, 1))
    values = image.sample(points)
    keep = np.isfinite(values)
    if not keep.any():
        raise CompareError(f'{image.name}: nothing within {radius:g} Å of '
                           f'{tuple(center)}')
    weight = np.clip(values[keep] - np.median(values[keep]), 0, None)
    if not weight.sum() > 0:
        raise CompareError(f'{image.name}: no bright feature near '
                           f'{tuple(center)}')
    return (points[:, keep] * weight).sum(axis=1) / weight.sum()
