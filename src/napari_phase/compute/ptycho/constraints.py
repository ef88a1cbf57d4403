"""Constraints applied once per iteration, after the batches.

Each function takes and returns device arrays (numpy or cupy): objects
``(S, M, M')`` (complex transmission or real potential, one per slice),
probe modes ``(K, N, N)`` (centred, real space). Order
(:func:`constrain_object`, :func:`constrain_probes`): filters, then the
amplitude / positivity bounds; probe centring, Fourier constraints, then
the orthogonalisation of the modes (py4DSTEM 0.14.18's order).
"""

from __future__ import annotations

import numpy as np

from ..backend import xp_of
from ..optics import fft_frequencies
from .engine import intensity_centre, separable_ramps

#: Chambolle iterations of the TV constraint per ptychography iteration.
TV_ITERATIONS = 10


# -- object --------------------------------------------------------------
def clip_amplitude(obj, amplitude_max: float, xp):
    """Complex object: amplitude clipped to ≤ ``amplitude_max`` (no unit:
    1 = vacuum), phase kept; this removes the probe–object scale
    ambiguity."""
    magnitude = xp.maximum(xp.abs(obj), 1e-12)
    obj *= xp.minimum(1.0, amplitude_max / magnitude)
    return obj


def positive_potential(potential, xp):
    """'potential' object: V (rad) clipped to ≥ 0 (a thin specimen's
    projected potential is positive)."""
    return xp.maximum(potential, 0, out=potential)


def gaussian_blur(obj, sigma: float, pixel_size: float, fft):
    """Gaussian low-pass of every slice, σ = ``sigma`` Å (a Fourier
    multiplication by exp(−2π²σ²|k|²); the object is padded by the probe
    window, so its circular wrap-around stays outside the field of
    view)."""
    kx, ky = fft_frequencies(obj.shape[-2:], pixel_size)
    envelope = np.exp(-2 * np.pi**2 * sigma**2 * (kx**2 + ky**2))
    return _filtered(obj, envelope, fft)


def butterworth(obj, q_lowpass, q_highpass, order: float,
                pixel_size: float, fft):
    """Butterworth low-pass (cut-off ``q_lowpass``, Å⁻¹) and/or high-pass
    (``q_highpass``, Å⁻¹) of every slice, of the given ``order``; each
    slice's mean is kept (py4DSTEM's ``butterworth_filter``)."""
    kx, ky = fft_frequencies(obj.shape[-2:], pixel_size)
    q = np.sqrt(kx**2 + ky**2)
    envelope = np.ones_like(q)
    if q_highpass:
        envelope *= 1 - 1 / (1 + (q / q_highpass) ** (2 * order))
    if q_lowpass:
        envelope *= 1 / (1 + (q / q_lowpass) ** (2 * order))
    envelope[0, 0] = 1.0  # the mean
    return _filtered(obj, envelope, fft)


def _filtered(obj, envelope, fft):
    """``obj`` (…, M, M') times ``envelope`` (M, M', host) in Fourier
    space; a real ``obj`` stays real."""
    xp = xp_of(obj)
    kernel = xp.asarray(envelope.astype(np.float32))
    out = fft.ifft2(fft.fft2(obj) * kernel)
    if obj.dtype.kind == 'f':
        return out.real.astype(np.float32)
    return out.astype(np.complex64)


def total_variation(obj, weight: float, xp, iterations=TV_ITERATIONS):
    """Total-variation denoising of every slice: a few iterations of
    Chambolle's projection algorithm for ½‖u − f‖² + ``weight``·TV(u)
    (Rudin, Osher & Fatemi). A complex object is denoised as one
    vector-valued image (real and imaginary parts together): for unit
    amplitude |∇O| = |∇φ|, so this is the TV of the phase, with no phase
    wrapping. ``weight`` in radians (the unit of φ, or of V)."""
    tau = 0.25
    dual = xp.zeros((2, *obj.shape), obj.dtype)
    out = obj
    for _ in range(iterations):
        out = obj - _divergence(dual, xp)
        gradient = _gradient(out, xp)
        norm = xp.sqrt((xp.abs(gradient) ** 2).sum(axis=0))
        dual -= tau * gradient
        dual /= (1 + (tau / weight) * norm)
    return out.astype(obj.dtype)


def _gradient(image, xp):
    """Forward differences along the last two axes (0 at the far edge)."""
    gradient = xp.zeros((2, *image.shape), image.dtype)
    gradient[0, ..., :-1, :] = image[..., 1:, :] - image[..., :-1, :]
    gradient[1, ..., :, :-1] = image[..., :, 1:] - image[..., :, :-1]
    return gradient


def _divergence(field, xp):
    """Divergence of ``field`` (2, …): −(adjoint of :func:`_gradient`)."""
    div = xp.zeros(field.shape[1:], field.dtype)
    div[..., :-1, :] += field[0, ..., :-1, :]
    div[..., 1:, :] -= field[0, ..., :-1, :]
    div[..., :, :-1] += field[1, ..., :, :-1]
    div[..., :, 1:] -= field[1, ..., :, :-1]
    return div


def kz_regularization(obj, gamma: float, slice_thickness: float,
                      pixel_size: float, fft):
    """Couple the slices of a multislice object: multiply its 3D Fourier
    transform by w = 1 − (2/π)·atan(γ²·(dz/Δx)²·k_z² / |k|²) (the arctan
    filter of py4DSTEM's ``kz_regularization_filter``), which damps
    structure that changes from slice to slice faster than it does
    laterally. ``gamma`` γ has no unit (0: off; py4DSTEM uses ~0.1–1).
    The stack is padded with one vacuum slice above and below (O = 1, or
    V = 0) so that its two faces are not wrapped onto each other."""
    xp = xp_of(obj)
    complex_object = obj.dtype.kind == 'c'
    contrast = obj - 1 if complex_object else obj
    padded = xp.zeros((obj.shape[0] + 2, *obj.shape[1:]), contrast.dtype)
    padded[1:-1] = contrast
    kz = np.fft.fftfreq(padded.shape[0], slice_thickness)[:, None, None]
    kx, ky = fft_frequencies(obj.shape[-2:], pixel_size)
    scale = (gamma * slice_thickness / pixel_size) ** 2
    weight = 1 - 2 / np.pi * np.arctan2(scale * kz**2, (kx**2 + ky**2))
    kernel = xp.asarray(weight.astype(np.float32))
    filtered = fft.ifftn(fft.fftn(padded, axes=(0, 1, 2)) * kernel,
                         axes=(0, 1, 2))[1:-1]
    if complex_object:
        return (filtered + 1).astype(np.complex64)
    return filtered.real.astype(np.float32)


# -- probe ---------------------------------------------------------------
def recentre(probes, centre, fft, xp):
    """Probe modes Fourier-shifted together so that the centre of mass of
    Σ_k|P_k|² is back at ``centre`` (px, where it started): the probe and
    the object cannot then drift together."""
    shift = np.asarray(centre) - intensity_centre(probes, xp)
    k = xp.asarray(np.fft.fftfreq(probes.shape[-1]))
    col, row = separable_ramps(xp, shift[None], -1, k)
    waves = fft.fft2(probes)[None] * col * row
    return fft.ifft2(waves)[0].astype(np.complex64)


def fourier_amplitude(probes, aperture, fft, xp):
    """Probe constraint 'amplitude': the Fourier amplitude of the modes'
    incoherent sum, √Σ_k|FFT P_k|², is set to ``aperture`` (the initial
    one: √ of the vacuum probe, or the soft aperture of the semiangle;
    counts^½ per detector pixel), each mode's Fourier phase and share
    kept (py4DSTEM's ``fix_probe_aperture`` for one mode)."""
    spectra = fft.fft2(probes)
    total = xp.sqrt((xp.abs(spectra) ** 2).sum(axis=0))
    spectra *= xp.where(total > 0, aperture / xp.maximum(total, 1e-30), 0)
    return fft.ifft2(spectra).astype(np.complex64)


def fourier_support(probes, support, fft, xp):
    """Probe constraint 'support': every mode's Fourier transform is set to
    zero outside ``support`` (the bright-field disk of the initial probe,
    boolean), free inside; the total intensity is kept."""
    before = (xp.abs(probes) ** 2).sum()
    spectra = fft.fft2(probes)
    spectra *= support
    out = fft.ifft2(spectra)
    after = (xp.abs(out) ** 2).sum()
    return (out * xp.sqrt(before / xp.maximum(after, 1e-30))).astype(
        np.complex64)


def orthogonalise(probes, xp):
    """Mixed-state modes made orthogonal and sorted by intensity: the
    eigenvectors V of the Gram matrix G_ij = ⟨P_i, P_j⟩ give the modes
    Q_a = Σ_i V_ia·P_i (py4DSTEM's, after tike); the incoherent sum
    Σ|P_k|² and the total intensity are unchanged."""
    if probes.shape[0] == 1:
        return probes
    flat = probes.reshape(probes.shape[0], -1)
    gram = flat.conj() @ flat.T
    _, vectors = xp.linalg.eigh(gram)
    # Each eigenvector's largest entry real and positive: an orthogonal
    # set comes back as it went (no phase jumps between iterations).
    largest = vectors[xp.argmax(xp.abs(vectors), axis=0),
                      xp.arange(len(vectors))]
    vectors = vectors * (xp.conj(largest) / xp.abs(largest))
    modes = (vectors.T @ flat).reshape(probes.shape)
    power = (xp.abs(modes) ** 2).sum(axis=(1, 2))
    order = xp.argsort(-power)
    return modes[order].astype(np.complex64)
