"""Probe aberrations from parallax shifts, and the CTF correction they imply.

Derivation of the model (the simulator's forward model, py4DSTEM's
conventions). The probe is ``Σ_k A(k)·exp(−iχ(k))·exp(2πi k·r)``; by
stationary phase, the partial wave of direction ``k`` (detector frame)
crosses the specimen at ``p_Q + g(k)`` with

    g(k) = ∇_k χ(k) / 2π  (Å),  e.g. g = λ·C1·k = C1·θ for pure defocus,

so the virtual image of bright-field pixel ``k`` is the specimen seen
through a displaced position: ``I_k(p_R) = O_R(p_R + d_R)`` with
``d_R = detector_to_scan(g(k)) = R(θ)·swap?(g(k))``. Moving image ``k``
by ``+d_R`` (towards +index) aligns it, so the alignment shifts are

    s(k) = R(rotation)·swap?(g(k)) + constant      (Å, scan frame),

which for pure defocus is ``+C1·θ`` mapped to the scan frame.

``χ = (2π/λ) Σ C_mn α^(m+1)/(m+1) cos(n(φ − φ_mn))`` is linear in the
Cartesian pairs ``a = C cos(nφ_mn)``, ``b = C sin(nφ_mn)``; with
``z = θ_x + iθ_y`` (radians), ``α^(m+1)·e^(inφ) = z^p·z̄^q`` with
``p = (m+1+n)/2``, ``q = (m+1−n)/2``, whose gradient gives the basis.

(θ, C) and (θ + 180°, −C) give the same shifts: every fitted coefficient
flips sign with the half-turn, and so does the CTF-corrected phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import fft_of, xp_of
from .geometry import (
    detector_to_scan,
    rotation_matrix,
    scan_to_detector,
    wrap_degrees,
)
from .optics import chi, fft_frequencies

#: Mahalanobis distance (in standard errors) above which a fitted
#: aberration is reported as significant.
SIGNIFICANCE = 3.0


def aberration_orders(max_radial_order: int) -> list[tuple[int, int]]:
    """(m, n) of the χ terms with radial power m+1 ≤ ``max_radial_order``:
    3 gives C10 (defocus), C12 (astigmatism), C21 (coma), C23 (trefoil)."""
    return [
        (m, n)
        for m in range(1, max_radial_order)
        for n in range(m + 2)
        if (m + n) % 2 == 1
    ]


def _zpow(z, p: int, q: int):
    """z^p · conj(z)^q, zero when an exponent is negative."""
    if p < 0 or q < 0:
        return np.zeros_like(z)
    return z**p * np.conj(z) ** q


def gradient_basis(theta: np.ndarray, orders) -> tuple[np.ndarray, list]:
    """Shift basis ``g`` (Å per Å of coefficient) at detector-frame angles
    ``theta`` (N, 2) radians: returns (N, 2, P) and the P names
    ``('C10', 'a')``, ``('C12', 'a')``, ``('C12', 'b')``..."""
    z = theta[:, 0] + 1j * theta[:, 1]
    columns, names = [], []
    for m, n in orders:
        p, q = (m + 1 + n) // 2, (m + 1 - n) // 2
        dz = p * _zpow(z, p - 1, q)  # ∂/∂z of z^p z̄^q
        dzb = q * _zpow(z, p, q - 1)  # ∂/∂z̄
        dx, dy = (dz + dzb) / (m + 1), 1j * (dz - dzb) / (m + 1)
        columns.append(np.stack([dx.real, dy.real], axis=1))
        names.append((f'C{m}{n}', 'a'))
        if n:
            columns.append(np.stack([dx.imag, dy.imag], axis=1))
            names.append((f'C{m}{n}', 'b'))
    return np.stack(columns, axis=2), names


@dataclass
class AffineFit:
    """First pass: shifts ≈ M·θ + offset, M = R(rotation)·P·swap?."""

    rotation_deg: float
    transpose: bool
    C1: float  # Å, ≥ 0 unless the rotation was forced
    M: np.ndarray  # (2, 2) Å per radian, scan frame


def affine_fit(theta, shifts, rotation_deg, transpose) -> AffineFit:
    """Least-squares ``shifts (N,2) Å ≈ M·theta (N,2) rad + c`` split as
    ``M = R(rotation)·P·swap?`` with P symmetric (C1 and astigmatism), for
    the given transpose. The split is exact for any P: with
    ``M·swap? = [[a, b], [c, d]]``, ``R(−θ)·M·swap?`` is symmetric for
    ``tan θ = (c − b)/(a + d)``; of θ and θ + 180° the one with C1 =
    trace(P)/2 ≥ 0 is returned, unless the rotation is forced."""
    design = np.column_stack([theta, np.ones(len(theta))])
    coef, *_ = np.linalg.lstsq(design, shifts, rcond=None)
    M = coef[:2].T
    (a, b), (c, d) = M[:, ::-1] if transpose else M
    if rotation_deg is None:
        rotation_deg = float(np.rad2deg(np.arctan2(c - b, a + d)))
    P = rotation_matrix(rotation_deg).T @ np.array([[a, b], [c, d]])
    return AffineFit(
        wrap_degrees(rotation_deg), bool(transpose),
        float(np.trace(P) / 2), M
    )


@dataclass
class AberrationFit:
    """Second pass: the aberration-gradient basis fitted to the shifts."""

    aberrations: dict  # polar: 'C10', 'C12', 'phi12' ... (Å, degrees)
    uncertainties: dict  # one standard error per entry of `aberrations`
    significant: dict  # 'C10', 'C12'...: True when > SIGNIFICANCE σ
    offset: np.ndarray  # (2,) Å, scan frame: the shifts' common offset
    residual_rms: float  # Å
    explained: float  # robust fraction of the shifts' spread the fit explains
    coefficients: np.ndarray  # Cartesian (a, b) per basis column, then offset
    orders: list
    rotation_deg: float
    transpose: bool

    def predict(self, theta) -> np.ndarray:
        """Fitted shifts (N, 2) Å, scan frame, at angles ``theta`` (N, 2)
        rad."""
        basis, _ = gradient_basis(theta, self.orders)
        d_q = basis @ self.coefficients[:-2] + self.coefficients[-2:]
        return detector_to_scan(d_q.T, self.rotation_deg, self.transpose).T


def fit_aberrations(
    theta, shifts, rotation_deg, transpose, orders, groups=None
) -> AberrationFit:
    """Least squares of ``shifts (N,2) Å`` (scan frame) at ``theta (N,2)``
    rad (detector frame) onto the gradient basis plus a constant.

    ``groups`` (N,): labels of the independent shift measurements (the
    alignment groups; default: every shift), for honest standard errors
    and the explained spread.
    """
    labels = np.arange(len(theta)) if groups is None else groups
    labels = np.unique(labels, return_inverse=True)[1].ravel()
    d_q = scan_to_detector(shifts.T, rotation_deg, transpose).T
    basis, names = gradient_basis(theta, orders)
    n, _, n_basis = basis.shape
    design = np.zeros((2 * n, n_basis + 2))
    design[:, :n_basis] = basis.transpose(1, 0, 2).reshape(2 * n, n_basis)
    design[:n, n_basis] = design[n:, n_basis + 1] = 1.0
    target = d_q.T.reshape(-1)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ coef
    dof = max(1, 2 * (labels.max() + 1) - design.shape[1])
    sigma2 = residual @ residual / dof
    cov = sigma2 * np.linalg.pinv(design.T @ design)
    offset_q = coef[n_basis:]
    offset_r = detector_to_scan(offset_q, rotation_deg, transpose)
    values, errors, significant = _to_polar(coef, cov, names)
    return AberrationFit(
        values,
        errors,
        significant,
        offset_r,
        float(np.sqrt(residual @ residual / n)),
        _explained(residual, target, labels),
        coef,
        list(orders),
        rotation_deg,
        transpose,
    )


def _explained(residual, target, labels) -> float:
    """1 − (median |residual| / median |target − median|)², over the group
    means of both components: how much of the shifts' spread the fit
    explains, robust to a few wild groups."""
    counts = np.bincount(labels)
    n = len(labels)

    def group_means(v):
        return np.stack(
            [np.bincount(labels, part) / counts for part in (v[:n], v[n:])]
        )

    res, tgt = group_means(residual), group_means(target)
    spread = np.median(np.abs(tgt - np.median(tgt, axis=1, keepdims=True)))
    return float(1 - (np.median(np.abs(res)) / max(spread, 1e-300)) ** 2)


def _to_polar(coef, cov, names):
    """Cartesian (a, b) pairs → C_mn (Å), phi_mn (degrees), standard
    errors and significance (Mahalanobis distance of (a, b) from 0)."""
    values, errors, significant = {}, {}, {}
    index = {name: i for i, name in enumerate(names)}
    for key in dict.fromkeys(name for name, _ in names):
        n = int(key[2])
        ia = index[(key, 'a')]
        if not n:
            values[key], errors[key] = (
                float(coef[ia]),
                float(np.sqrt(cov[ia, ia])),
            )
            significant[key] = abs(coef[ia]) > SIGNIFICANCE * errors[key]
            continue
        ib = index[(key, 'b')]
        ab = coef[[ia, ib]]
        c = cov[np.ix_([ia, ib], [ia, ib])]
        mag = float(np.hypot(*ab))
        unit = ab / (mag or 1.0)
        normal = np.array([-unit[1], unit[0]])
        phi = f'phi{key[1:]}'
        values[key] = mag
        values[phi] = float(np.rad2deg(np.arctan2(ab[1], ab[0])) / n)
        errors[key] = float(np.sqrt(unit @ c @ unit))
        errors[phi] = float(
            np.rad2deg(np.sqrt(normal @ c @ normal) / (mag or np.inf)) / n
        )
        significant[key] = bool(ab @ np.linalg.pinv(c) @ ab > SIGNIFICANCE**2)
    return values, errors, significant


def half_turn(aberrations: dict) -> dict:
    """The same aberrations seen after a 180° rotation: every C_mn flips
    sign (C10 is negated, the azimuth of the others turns by 180°/n)."""
    out = {}
    for key, value in aberrations.items():
        if key == 'C10':
            out[key] = -value
        elif key.startswith('phi'):
            out[key] = wrap_degrees(value + 180.0 / int(key[-1]))
        else:
            out[key] = value
    return out


def even_odd(aberrations: dict) -> tuple[dict, dict]:
    """Split into even (radial power m+1 even: C10, C12, C30...) and odd
    (coma, trefoil...) parts."""
    even, odd = {}, {}
    for key, value in aberrations.items():
        (even if int(key[-2]) % 2 else odd)[key] = value
    return even, odd


def ctf_correct(
    image,
    pixel_size,
    wavelength,
    aberrations,
    rotation_deg,
    transpose,
    flip=True,
    info_limit=None,
):
    """Phase (radians, a lower bound: the BF contrast is ``2φ|sin χ|``)
    from a tilt-corrected BF image (normalised to 1) of ``pixel_size`` Å
    in the scan frame.

    ``FFT(image − mean)·sign(sin χ_even)·exp(−iχ_odd) / 2``, DC = 0;
    ``flip=False`` skips the sign flip (no defocus to flip for);
    ``info_limit`` (Å⁻¹) damps by ``1/(1 + (k/k_info)^4)``. χ is
    evaluated at detector-frame frequencies ``scan_to_detector(k_R)``.
    The sign is that of the simulator's phase for the right half-turn.
    """
    xp = xp_of(image)
    fft = fft_of(xp)
    kx, ky = fft_frequencies(image.shape, pixel_size, xp)
    kx, ky = xp.broadcast_arrays(kx, ky)
    k_q = scan_to_detector(xp.stack([kx, ky]), rotation_deg, transpose)
    even, odd = even_odd(aberrations)
    transfer = xp.exp(-1j * chi(k_q[0], k_q[1], wavelength, odd, xp))
    if flip:
        transfer = transfer * xp.sign(
            xp.sin(chi(k_q[0], k_q[1], wavelength, even, xp))
        )
    if info_limit:
        transfer = transfer / (1 + (kx**2 + ky**2) ** 2 / info_limit**4)
    transfer[0, 0] = 0
    spectrum = fft.fft2(image - image.mean()) * transfer
    return (fft.ifft2(spectrum).real / 2).astype(np.float32)
