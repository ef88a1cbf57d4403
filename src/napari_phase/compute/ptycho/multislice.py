"""Fresnel propagation between the slices of a multislice object.

Conventions (docs/conventions.md): the probe is ``A(k)·exp(−iχ(k))``
with ``χ = πλ|k|²·C1 + …`` and ``C1 = −defocus``. A wave propagated
``dz`` Å downstream is multiplied in Fourier space by

    H(k) = exp(−iπλ|k|²·dz)

(py4DSTEM 0.14.18's propagator, Maiden, Humphry & Rodenburg, JOSA A 29
(2012)), so propagating a probe by ``dz`` turns its ``C1`` into
``C1 + dz``, i.e. its defocus into ``defocus − dz``: the focus lies
``defocus`` Å below the entrance surface, and ``dz`` Å nearer to the
next slice.
"""

from __future__ import annotations

import numpy as np

from ..optics import fft_frequencies


def fresnel_propagator(size: int, pixel_size: float, wavelength: float,
                       thickness: float, xp=np):
    """H(k) (size, size) complex64, corner-centred (numpy fftfreq order),
    for a window of ``pixel_size`` Å, ``wavelength`` Å and a distance of
    ``thickness`` Å."""
    kx, ky = fft_frequencies((size, size), pixel_size)
    kernel = np.exp(-1j * np.pi * wavelength * thickness * (kx**2 + ky**2))
    return xp.asarray(kernel.astype(np.complex64))


def propagate(waves, kernel, fft):
    """``waves`` (…, N, N) propagated by ``kernel`` (a new array; the
    input is left alone)."""
    spectrum = fft.fft2(waves)
    spectrum *= kernel
    return fft.ifft2(spectrum, overwrite_x=True)
