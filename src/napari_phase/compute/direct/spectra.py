"""The expensive part of direct ptychography, done once: the bright field's
aperture, and the Fourier transform over scan positions of every
bright-field detector pixel.

For each detector pixel ``k`` the intensity ``I(k, p)`` over the scan
positions ``p`` is an image; its FFT over ``p`` is ``G(k, Q)``. Pixels are
independent, so they are transformed a chunk of pixels at a time (memory:
one chunk of images plus the result). Each image is taken as its deviation
from its mean, blended to 0 over ``edge_blend`` scan pixels at the scan
edges (``bright_field.edge_window``), zero-padded by ``padding`` pixels (half
before, half after) and divided by ``I0``, the mean counts of a
bright-field pixel; only the half plane of a real FFT is kept.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ..backend import fft_of, is_dask, to_numpy, xp_of
from ..bright_field import edge_window
from ..calibration import Calibration
from ..probe import fit_probe

#: Bytes of float32 images transformed together (one chunk of pixels).
CHUNK_BYTES = 256 << 20
#: Narrowest aperture edge (px) the fitted ramp may have.
MIN_EDGE_PX = 0.5


@dataclass(frozen=True)
class Aperture:
    """Probe aperture amplitude ``a(k)``, 1 inside, 0 outside, with a ramp
    linear in |k|² between ``inner`` and ``outer`` (Å⁻¹), fitted to the
    edge of the vacuum probe or the mean pattern (:func:`fit_aperture`)."""

    inner: float
    outer: float

    @property
    def ramp(self) -> tuple[float, float]:
        """(c0, c1) with ``a = clip(c0 − c1·|k|², 0, 1)``."""
        c1 = 1.0 / (self.outer**2 - self.inner**2)
        return self.outer**2 * c1, c1

    def __call__(self, k2, xp=np):
        """a at squared frequencies ``k2`` (Å⁻²)."""
        c0, c1 = self.ramp
        return xp.clip(c0 - c1 * k2, 0.0, 1.0)


@dataclass
class BrightField:
    """The detector pixels that see the probe, and where they are."""

    pixels: np.ndarray  # (K, 2) detector indices
    k: np.ndarray  # (K, 2) Å⁻¹, detector frame, from the beam centre
    aperture: Aperture
    intensity: float  # I0: mean counts of a bright-field pixel
    center: tuple[float, float]  # beam centre (px)
    radius: float  # aperture half-amplitude radius (px)


def find_bright_field(mean_pattern, cal: Calibration,
                      vacuum_probe=None) -> BrightField:
    """The bright field of ``mean_pattern`` (Qx, Qy): centre and radius
    from the calibration (else fitted), the aperture edge fitted to the
    radial profile of ``vacuum_probe`` (about its own centre) or, without
    one, of the pattern (a specimen's scattering widens that edge: on
    abTEM's gold on carbon SSB then overshot the lowest frequencies ×1.7),
    and every pixel inside the aperture, from the centre outward (so that
    chunks of pixels near the centre, which SSB does not use at low
    frequencies, can be skipped whole)."""
    pattern = np.asarray(to_numpy(mean_pattern), dtype=np.float64)
    center, radius = _center_and_radius(pattern, cal)
    r = _radii(pattern.shape, center)
    intensity = _plateau(pattern, r, radius)
    if vacuum_probe is None:
        inner, outer = fit_aperture(r, pattern / intensity, radius)
    else:
        probe = np.asarray(to_numpy(vacuum_probe), dtype=np.float64)
        if probe.shape != pattern.shape:
            raise ValueError(
                f'the vacuum probe has shape {probe.shape} but the '
                f'patterns have {pattern.shape}'
            )
        fit = fit_probe(probe)
        r_probe = _radii(probe.shape, fit.center)
        inner, outer = fit_aperture(
            r_probe, probe / _plateau(probe, r_probe, fit.radius),
            fit.radius,
        )
    dk = cal.q_pixel_inv_A
    pixels = np.argwhere(r < outer)
    pixels = pixels[np.argsort(r[tuple(pixels.T)], kind='stable')]
    k = (pixels - np.asarray(center)) * dk
    return BrightField(
        pixels, k, Aperture(inner * dk, outer * dk), intensity,
        tuple(center), (inner + outer) / 2,
    )


def _radii(shape, center) -> np.ndarray:
    x, y = np.indices(shape)
    return np.hypot(x - center[0], y - center[1])


def _plateau(pattern, r, radius) -> float:
    """Mean counts inside 0.7 of the disk's ``radius`` (px)."""
    intensity = float(pattern[r < 0.7 * radius].mean())
    if not intensity > 0:
        raise ValueError(
            'the bright-field disk has no counts: check the probe centre '
            f'and radius ({radius:.1f} px)'
        )
    return intensity


def _center_and_radius(pattern, cal: Calibration):
    if cal.probe_center is not None and cal.probe_radius is not None:
        return np.asarray(cal.probe_center, float), float(cal.probe_radius)
    fit = fit_probe(pattern)
    center = cal.probe_center if cal.probe_center is not None else fit.center
    return np.asarray(center, float), float(cal.probe_radius or fit.radius)


def fit_aperture(r, relative, radius) -> tuple[float, float]:
    """Inner and outer radius (px) of the amplitude ramp: the amplitude
    ``√(relative)`` averaged in rings of 0.25 px, its 90 % and 10 %
    crossings past 0.5·``radius`` (px) give the ramp's width (≥
    :data:`MIN_EDGE_PX`) and its 50 % crossing the centre."""
    step = 0.25
    bins = (r / step).astype(int).ravel()
    counts = np.bincount(bins)
    total = np.bincount(bins, np.sqrt(np.clip(relative, 0, None)).ravel())
    filled = counts > 0
    radii = (np.flatnonzero(filled) + 0.5) * step
    profile = total[filled] / counts[filled]
    start = np.searchsorted(radii, 0.5 * radius)
    crossings = [
        _crossing(radii[start:], profile[start:], level)
        for level in (0.9, 0.5, 0.1)
    ]
    if None in crossings:
        raise ValueError(
            'no bright-field edge found around the probe radius '
            f'{radius:.1f} px: check the calibration (probe centre and '
            'radius)'
        )
    r90, r50, r10 = crossings
    width = max((r10 - r90) / 0.8, MIN_EDGE_PX)
    return r50 - width / 2, r50 + width / 2


def _crossing(radii, profile, level):
    """First radius where ``profile`` falls below ``level`` (linear
    interpolation), or None."""
    below = np.flatnonzero(profile < level)
    if len(below) == 0 or below[0] == 0:
        return None
    i = below[0]
    (r0, r1), (p0, p1) = radii[i - 1 : i + 1], profile[i - 1 : i + 1]
    return float(r0 + (p0 - level) / (p0 - p1) * (r1 - r0))


def padded_shape(scan_shape, padding) -> tuple[int, int]:
    return tuple(int(n + p) for n, p in zip(scan_shape, padding))


def spectra_steps(
    data, bright_field: BrightField, edge_blend, padding, xp,
    chunk_bytes=CHUNK_BYTES,
) -> Generator[float, None, tuple]:
    """Yield the fraction of pixels done; return the real and imaginary
    parts (K, N_Q) float32 of ``G(k, Q) / I0``, Q on the rfft2 grid of the
    padded scan, flattened (see the module doc)."""
    rx, ry = data.shape[:2]
    shape = padded_shape((rx, ry), padding)
    x0, y0 = (p // 2 for p in padding)
    n_pixels = len(bright_field.pixels)
    n_q = shape[0] * (shape[1] // 2 + 1)
    real = xp.empty((n_pixels, n_q), np.float32)
    imag = xp.empty((n_pixels, n_q), np.float32)
    window = edge_window((rx, ry), edge_blend, xp) / bright_field.intensity
    fft = fft_of(xp)
    per_chunk = max(1, int(chunk_bytes // (rx * ry * 4)))
    for start in range(0, n_pixels, per_chunk):
        rows = slice(start, min(start + per_chunk, n_pixels))
        n = rows.stop - rows.start
        block = xp.asarray(_gather(data, bright_field.pixels[rows]))
        images = block.T.reshape(n, rx, ry)  # a view: (pixel, x, y)
        padded = xp.zeros((n, *shape), np.float32)
        inside = padded[:, x0 : x0 + rx, y0 : y0 + ry]
        xp.subtract(images, block.mean(axis=0, dtype=np.float64)[:, None, None],
                    out=inside, casting='unsafe')
        inside *= window
        spectra = fft.rfft2(padded).reshape(n, n_q)
        real[rows], imag[rows] = spectra.real, spectra.imag
        yield rows.stop / n_pixels
    return real, imag


def _gather(data, pixels):
    """(Rx·Ry, n): the counts of detector ``pixels`` (n, 2) at every scan
    position. Of a dask array only the box around the pixels is read
    (once per chunk of pixels)."""
    rx, ry, _, qy = data.shape
    if not is_dask(data):
        xp = xp_of(data)
        if data.flags.c_contiguous:  # one row per pattern: take is the
            flat = xp.asarray(pixels[:, 0] * qy + pixels[:, 1])  # fastest
            return xp.take(data.reshape(rx * ry, -1), flat, axis=1)
        ix, iy = (xp.asarray(i) for i in pixels.T)
        return data[:, :, ix, iy].reshape(rx * ry, -1)
    (x0, y0), (x1, y1) = pixels.min(axis=0), pixels.max(axis=0) + 1
    box = data[:, :, x0:x1, y0:y1].reshape(rx * ry, -1)
    flat = (pixels[:, 0] - x0) * (y1 - y0) + (pixels[:, 1] - y0)
    return box[:, flat].compute()
