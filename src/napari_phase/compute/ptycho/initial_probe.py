"""The initial probe: from the vacuum probe (or the semiangle) and the
aberrations, sampled as the detector samples the beam.

The probe is ``IFFT[A(k)·exp(−iχ(k))]`` with ``C10 = −defocus`` (Å) and
the calibration's other aberrations, ``A`` = √(vacuum probe) or a soft
aperture of the semiangle, scaled so ``Σ|FFT(P)|²`` = mean pattern
counts, and centred in its window (pixel N//2).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..optics import fourier_probe

#: Fraction of the probe intensity near the window edge that means the
#: probe does not fit (warn above the first, refuse above the second).
EDGE_WARN, EDGE_REFUSE = 0.01, 0.1


def initial_probe(vacuum_probe, beam_fraction, *, size: int,
                  pixel_size: float, wavelength: float, semiangle: float,
                  q_pixel_mrad: float, defocus: float, aberrations: dict,
                  mean_intensity: float):
    """Centred real-space probe (N, N) complex64, Σ|FFT|² =
    ``mean_intensity``; refuses a probe that does not fit its window.

    The aperture (√ vacuum probe, or the semiangle) and χ are sampled
    around the beam's sub-pixel position on the detector (the vacuum
    probe's own, or ``beam_fraction`` of the data), exactly as the
    detector pixels sample them."""
    abers = {'C10': -defocus} | aberrations
    aperture = None
    if vacuum_probe is not None:
        aperture, beam_fraction = vacuum_aperture(vacuum_probe)
    probe_k = fourier_probe(
        (size, size), pixel_size, wavelength, semiangle or 0.0, abers,
        edge_mrad=q_pixel_mrad, aperture=aperture,
        offset_px=tuple(beam_fraction),
    )
    probe = _untilted(probe_k, beam_fraction)
    probe *= math.sqrt(
        mean_intensity / (size * size * np.sum(np.abs(probe) ** 2))
    )
    probe = np.fft.fftshift(probe).astype(np.complex64)
    _check_probe_fits(probe, defocus, size * pixel_size)
    return probe


def vacuum_aperture(intensity):
    """√I of a vacuum probe rolled by the whole-pixel part of its centre
    of mass (corner-centred), and the fractional remainder (px)."""
    if not np.all(np.isfinite(intensity)) or not np.any(intensity > 0):
        raise ValueError('the vacuum probe has no positive counts (or NaN)')
    weight = np.maximum(intensity, 0).astype(np.float64)
    centre = np.array([
        np.average(np.arange(n), weights=weight.sum(axis=1 - axis))
        for axis, n in enumerate(weight.shape)
    ])
    whole = np.round(centre).astype(int)
    aperture = np.sqrt(np.roll(weight, tuple(-whole), axis=(0, 1)))
    return aperture, centre - whole


def _untilted(probe_k, fraction):
    """Real-space, corner-centred probe from a Fourier probe whose beam sits
    ``fraction`` px off the FFT origin: IFFT, then the tilt ramp
    exp(2πi u·d/N) removed (the model puts each pattern's own ramp back)."""
    u = np.fft.fftfreq(probe_k.shape[0])
    ramp = np.exp(-2j * np.pi * (u[:, None] * fraction[0]
                                 + u[None, :] * fraction[1]))
    return np.fft.ifft2(probe_k) * ramp


def _check_probe_fits(probe, defocus, window):
    """Refuse (or warn about) a probe whose intensity reaches the window
    edge: wrong defocus magnitude or too small a window."""
    n = probe.shape[0]
    u = np.abs(np.arange(n) - n // 2)
    edge = np.maximum(u[:, None], u[None, :]) > 0.4 * n
    weight = np.abs(probe) ** 2
    fraction = float(weight[edge].sum() / weight.sum())
    message = (
        f'{100 * fraction:.0f} % of the probe intensity at defocus '
        f'{defocus:g} Å lies near the edge of the {window:.1f} Å '
        'reconstruction window: the probe does not fit. Check the defocus '
        '(Å, = −C1) or use a larger (less binned) detector.'
    )
    if fraction > EDGE_REFUSE:
        raise ValueError(message)
    if fraction > EDGE_WARN:
        warnings.warn(message, RuntimeWarning, stacklevel=5)


def initial_modes(probe, count: int, secondary_power: float = 0.5):
    """``count`` mutually orthogonal modes (K, N, N) from one probe (N, N)
    (mixed-state ptychography, Thibault & Menzel 2013).

    Mode 0 is the probe. The others are the probe's Fourier transform
    times monomials k_x, k_y, k_x², k_x·k_y, k_y², … (k in cycles per
    pixel), Gram–Schmidt orthogonalised: the first are its derivatives
    along x and y and the defocus-like |k|² term, which is what the
    incoherent modes of a finite source and of an energy spread look like
    to first order. They share ``secondary_power`` of the total
    intensity, which stays that of ``probe``; they keep its aperture.
    Gradient descent changes the modes' powers only slowly: starting
    with half the intensity in the secondary modes, a 0.4 Å source blur
    is fitted in 30 iterations (error −19 %, tests/test_ptycho_models.py)
    and a 0.15 Å one (nearly coherent) costs little (measured: error
    +7 %, the same r with the truth), where
    starting with 10 % left the 0.4 Å case no better than one mode."""
    n = probe.shape[0]
    total = float(np.sum(np.abs(probe) ** 2))
    if count == 1:
        return probe[None].astype(np.complex64)
    k = np.fft.fftfreq(n)
    kx, ky = k[:, None], k[None, :]
    spectrum = np.fft.fft2(probe)
    modes = [probe.astype(np.complex128)]
    degree = 1
    while len(modes) < count:
        for a in range(degree, -1, -1):
            if len(modes) == count:
                break
            mode = np.fft.ifft2(spectrum * kx**a * ky ** (degree - a))
            for other in modes:
                mode -= other * np.vdot(other, mode) / np.vdot(other, other)
            modes.append(mode)
        degree += 1
    share = secondary_power / (count - 1)
    scaled = [modes[0] * math.sqrt(1 - secondary_power)]
    for mode in modes[1:]:
        norm = float(np.sum(np.abs(mode) ** 2))
        scaled.append(mode * math.sqrt(share * total / max(norm, 1e-300)))
    return np.stack(scaled).astype(np.complex64)
