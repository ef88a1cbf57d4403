"""Probe optics: aberration function χ, aperture, Fourier-space probe.

Conventions (py4DSTEM 0.14.18, docs/conventions.md): polar coefficients
``C_mn`` in Å with azimuths ``phi_mn`` in **degrees** here,

    χ(k) = (2π/λ) Σ C_mn α^(m+1)/(m+1) cos(n(φ − φ_mn)),
    α = λ|k|,  φ = atan2(k_y, k_x),

and the probe in Fourier space is ``A(k)·exp(−iχ(k))``; ``C10 = C1 =
−defocus``.
"""

from __future__ import annotations

import re

import numpy as np

_NAME = re.compile(r'^C(\d)(\d)$')


def aberration_orders(aberrations: dict) -> list[tuple[int, int]]:
    """The (m, n) pairs named in ``aberrations`` (keys 'C10', 'C12'...)."""
    orders = []
    for key in aberrations:
        match = _NAME.match(key)
        if match:
            orders.append((int(match[1]), int(match[2])))
        elif not re.match(r'^phi\d\d$', key):
            raise ValueError(
                f'unknown aberration {key!r}: use C<m><n> (Å) and '
                'phi<m><n> (degrees), e.g. C10, C12, phi12, C21, phi21'
            )
    return orders


def chi(kx, ky, wavelength: float, aberrations: dict, xp=np):
    """Aberration phase χ (radians) on spatial frequencies ``kx, ky`` (Å⁻¹).

    ``kx``/``ky`` broadcast against each other (e.g. a column and a row).
    """
    alpha = wavelength * xp.sqrt(kx**2 + ky**2)
    phi = xp.arctan2(ky, kx)
    out = xp.zeros(xp.broadcast_shapes(kx.shape, ky.shape), dtype=np.float64)
    for m, n in aberration_orders(aberrations):
        c = aberrations[f'C{m}{n}']
        if not c:
            continue
        angle = np.deg2rad(aberrations.get(f'phi{m}{n}', 0.0))
        out = out + c * alpha ** (m + 1) / (m + 1) * xp.cos(n * (phi - angle))
    return 2 * np.pi / wavelength * out


def soft_aperture(alpha_mrad, semiangle: float, edge_mrad: float, xp=np):
    """Aperture amplitude: 1 inside, 0 outside, a cosine edge of width
    ``edge_mrad`` centred on ``semiangle`` (so its half-amplitude radius is
    the semiangle)."""
    if edge_mrad <= 0:
        return (alpha_mrad <= semiangle).astype(np.float64)
    t = xp.clip((alpha_mrad - semiangle) / edge_mrad + 0.5, 0.0, 1.0)
    return 0.5 * (1 + xp.cos(np.pi * t))


def fft_frequencies(shape: tuple[int, int], pixel_size: float, xp=np):
    """Column and row of spatial frequencies (Å⁻¹) for a real-space grid
    of ``shape`` with ``pixel_size`` (Å), numpy fftfreq order."""
    kx = xp.fft.fftfreq(shape[0], pixel_size)[:, None]
    ky = xp.fft.fftfreq(shape[1], pixel_size)[None, :]
    return kx, ky


def fourier_probe(
    shape: tuple[int, int],
    pixel_size: float,
    wavelength: float,
    semiangle: float,
    aberrations: dict,
    edge_mrad: float = 0.5,
    aperture=None,
    offset_px: tuple[float, float] = (0.0, 0.0),
    xp=np,
):
    """Probe in Fourier space, corner-centred: ``A(k)·exp(−iχ(k))``.

    ``aperture`` (corner-centred amplitude) replaces the soft aperture,
    e.g. √ of a measured vacuum probe. ``offset_px`` moves the beam
    centre by that many Fourier pixels (a tilted beam: the far field of
    every pattern is displaced by as much, without interpolation).
    """
    kx, ky = fft_frequencies(shape, pixel_size, xp)
    kx = kx - offset_px[0] / (shape[0] * pixel_size)
    ky = ky - offset_px[1] / (shape[1] * pixel_size)
    if aperture is None:
        alpha_mrad = 1e3 * wavelength * xp.sqrt(kx**2 + ky**2)
        aperture = soft_aperture(alpha_mrad, semiangle, edge_mrad, xp)
    phase = chi(kx, ky, wavelength, aberrations, xp)
    return (aperture * xp.exp(-1j * phase)).astype(np.complex64)
