"""Scan rotation and transpose from a CoM field: the (θ, transpose) whose
rotated field is closest to a gradient (least curl), exactly, with no angle
grid. Used by DPC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import wrap_half_turn

#: Transpose clarity (:func:`transpose_clarity`) below which the transpose
#: is a toss and the method says so. On the independent suite
#: (docs/validation.md) DPC's right fits had 2.3–15 and its wrong ones at
#: most 1.55, except under astigmatism comparable to the defocus, where a
#: masked CoM can favour the transpose with |C1| > |A1| clearly and
#: wrongly (3.35 and 2.06 on gold_carbon_astig_T: docs/conventions.md).
TOSS_CLARITY = 2.0

#: CoM anisotropy (:func:`anisotropy`) from which the transpose is not
#: trusted, however clear. On the independent suite (docs/validation.md)
#: the whole-detector or dark-field CoM of the three astigmatic specimens
#: is 1.77–2.59 (24² scans) and 1.96–4.27 (48²) times stronger along one
#: direction than across it, where DPC's transpose is wrong or a toss;
#: on the five others at most 1.35, but for the crystal's aliased lattice
#: (2.17 on the whole detector, a toss anyway). On our simulator, where
#: DPC's transpose stays right under such astigmatism, at most 1.42.
ANISOTROPIC = 1.5


@dataclass
class RotationCurve:
    """How far from a gradient field the rotated CoM is, versus the trial
    rotation: the fraction of its energy that is curl (see curl_form)."""

    angles_deg: np.ndarray  # (n,) degrees, one half-turn
    curl: np.ndarray  # (n,) non-gradient fraction (0–1), transpose False
    curl_transposed: np.ndarray  # (n,) the same, transpose True


# --- rotation and transpose ------------------------------------------------
#
# The rotated field f(θ) = R(θ)·swap?(c) = cos θ·F₀ + sin θ·F₉₀ with
# F₀ = swap?(c) and F₉₀ = R(90°)·F₀. Its non-gradient (solenoidal) energy
# E(θ) = Σ_k |k̂ × f̂(k)|² is the mean-square curl weighted by 1/|k|²: the
# least-squares misfit of the best phase, so noise at high k, which
# dominates py4DSTEM's mean |curl| of central differences, weighs no more
# than the signal. E is a quadratic form in (cos θ, sin θ): its minimum is
# an eigenvector of a 2×2 matrix, exact, with no angle grid. The field is
# mirror-extended (the even extension of the phase) so that the scan edges
# are not counted as curl.


def _mirrored(f, odd_axis: int):
    """``f`` extended by its mirror image along both axes, negated along
    ``odd_axis`` (a gradient component is odd along its own axis)."""
    for axis in (0, 1):
        sign = -1 if axis == odd_axis else 1
        f = np.concatenate([f, sign * np.flip(f, axis)], axis=axis)
    return f


def _spectra(field):
    """FFTs of the mirror-extended components of ``field`` (2, Rx, Ry) and
    their frequencies (cycles per scan step)."""
    fx = np.fft.fft2(_mirrored(field[0], 0))
    fy = np.fft.fft2(_mirrored(field[1], 1))
    kx = np.fft.fftfreq(fx.shape[0])[:, None]
    ky = np.fft.fftfreq(fx.shape[1])[None, :]
    return fx, fy, kx, ky


def _solenoidal(field, weight):
    """√w·k̂ × f̂(k) of the mirror-extended field (2, Rx, Ry), and the
    weighted Σ w·|f̂|²."""
    fx, fy, kx, ky = _spectra(field)
    k = np.hypot(kx, ky)
    k[0, 0] = np.inf
    energy = float(np.sum(weight * (np.abs(fx) ** 2 + np.abs(fy) ** 2)))
    return np.sqrt(weight) * (kx * fy - ky * fx) / k, energy


# --- noise weighting ----------------------------------------------------
#
# With noise N per mode and component (white: Poisson counting) and a
# gradient signal of power S(|k|) per mode, the component of f̂ along k̂
# at the right (θ, transpose) has variance S + N and the one across k̂
# has N. Maximising the likelihood over θ is minimising Σ w·|k̂ × f̂|² with
# w = 1/N − 1/(S + N) = S / (N·(S + N)): frequencies with no signal above
# the noise drop out, whatever the probe size or specimen. S is the ring
# average of the measured power less 2N (both components); nothing is
# tuned. On the independent suite's 24×24 scans it brings the low-dose
# dark field from −1.9° to +0.2° and sharpens the transpose decision
# (holey film's dark field: clarity 5.2 → 11.7; docs/validation.md); it
# assumes the counts are electrons (Poisson).


def noise_weight(com: np.ndarray, noise: float) -> np.ndarray:
    """Weights w(k) on the mirrored FFT grid of ``com`` (2, Rx, Ry) for
    white noise of variance ``noise`` per component (com's units²); all
    ones when no ring rises above the noise (or ``noise`` is not > 0)."""
    fx, fy, kx, ky = _spectra(com)
    if not noise > 0:
        return np.ones(fx.shape)
    ring = np.rint(np.hypot(kx, ky) * min(fx.shape)).astype(int)
    power = (np.abs(fx) ** 2 + np.abs(fy) ** 2) / fx.size
    mean = np.bincount(ring.ravel(), power.ravel()) / np.bincount(
        ring.ravel())
    signal = np.clip(mean - 2 * noise, 0, None)[ring]
    weight = signal / (noise * (signal + noise))
    return weight if weight.any() else np.ones(fx.shape)


def curl_form(com: np.ndarray, transpose: bool,
              weight: np.ndarray | None = None) -> np.ndarray:
    """2×2 matrix Q: the (``weight``ed, see :func:`noise_weight`)
    non-gradient fraction of R(θ)·swap?(com) is
    (cos θ, sin θ)·Q·(cos θ, sin θ)ᵀ. ``com`` (2, Rx, Ry), detector frame."""
    f0 = com[::-1] if transpose else com
    w = 1.0 if weight is None else weight
    t0, energy = _solenoidal(f0, w)
    t90, _ = _solenoidal(np.stack([-f0[1], f0[0]]), w)
    cross = np.vdot(t0, t90).real
    form = np.array([[np.vdot(t0, t0).real, cross],
                     [cross, np.vdot(t90, t90).real]])
    return form / (energy or 1.0)


def _non_gradient_fraction(form, angles_deg) -> np.ndarray:
    theta = np.deg2rad(np.atleast_1d(angles_deg))
    v = np.stack([np.cos(theta), np.sin(theta)])
    return np.einsum('in,ij,jn->n', v, form, v)


def rotation_curve(com: np.ndarray, step_deg: float = 1.0,
                   weight: np.ndarray | None = None) -> RotationCurve:
    """Non-gradient (curl) fraction of R(θ)·swap?(com) over one half-turn
    of θ, both transposes. ``com`` (2, Rx, Ry), detector frame."""
    _check_scan(com)
    angles = np.arange(-90.0, 90.0, step_deg)
    return RotationCurve(
        angles,
        _non_gradient_fraction(curl_form(com, False, weight), angles),
        _non_gradient_fraction(curl_form(com, True, weight), angles),
    )


def transpose_clarity(com: np.ndarray,
                      weight: np.ndarray | None = None) -> float:
    """How clearly the transpose is decided: the larger of the two
    transposes' least curl fractions over the smaller (≥ 1; 1 = a toss)."""
    least = sorted(np.linalg.eigvalsh(curl_form(com, option, weight))[0]
                   for option in (False, True))
    return float(least[1] / least[0]) if least[0] > 0 else np.inf


def anisotropy(com: np.ndarray, valid: np.ndarray | None = None) -> float:
    """How much stronger the CoM field ``com`` (2, Rx, Ry) is along its
    strongest direction than across it (over the ``valid`` patterns): √
    of its covariance's eigenvalue ratio, ≥ 1, and near 1 for a round
    probe on an isotropic specimen. An astigmatic probe is not round, and
    neither is the field."""
    vectors = com.reshape(2, -1)
    if valid is not None:
        vectors = vectors[:, valid.ravel()]
    vectors = vectors - vectors.mean(axis=1, keepdims=True)
    low, high = np.linalg.eigvalsh(vectors @ vectors.T)
    if not high > 0:
        return 1.0  # no field: no direction stands out
    return float(np.sqrt(high / low)) if low > 0 else np.inf


def _check_scan(com) -> None:
    if min(com.shape[1:]) < 3:
        raise ValueError(
            f'the scan ({com.shape[1]}×{com.shape[2]}) is too small to fit a'
            ' rotation: it needs at least 3×3 positions'
        )


def best_rotation(
    com: np.ndarray,
    rotation_deg: float | None = None,
    transpose: bool | None = None,
    weight: np.ndarray | None = None,
) -> tuple[float, bool]:
    """The least-curl (rotation, transpose), the rotation modulo 180° in
    (−90, 90], unless forced: a forced rotation is returned as given (the
    transpose is then chosen at that angle); a forced transpose restricts
    the search."""
    options = (False, True) if transpose is None else (bool(transpose),)
    candidates = []
    for option in options:
        form = curl_form(com, option, weight)
        if rotation_deg is None:
            values, vectors = np.linalg.eigh(form)
            angle = wrap_half_turn(
                np.rad2deg(np.arctan2(vectors[1, 0], vectors[0, 0]))
            )
            candidates.append((values[0], angle, option))
        else:
            fraction = _non_gradient_fraction(form, rotation_deg)[0]
            candidates.append((fraction, float(rotation_deg), option))
    _, angle, option = min(candidates)
    return angle, option
