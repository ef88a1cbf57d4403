"""χ as a polynomial in (kx, ky), and its Taylor expansion.

``optics.chi`` defines χ. Each of its terms ``C_mn α^(m+1) cos(n(φ −
φ_mn))`` is a homogeneous polynomial of degree m + 1 in (kx, ky), so χ is a
polynomial of degree ``d = max(m + 1)`` whose coefficients follow exactly
from samples of ``optics.chi`` (least squares on (d + 2)² points: exact to
rounding, and χ stays defined in one place). A polynomial's Taylor series
ends at its degree:

    χ(k + Q) − χ(k) = Σ_{1 ≤ i+j ≤ d} D_ij(k) · Qx^i Qy^j,
    D_ij(k) = ∂x^i ∂y^j χ(k) / (i! j!),

so the aberration phase of every pair (bright-field pixel k, spatial
frequency Q) is one matrix product of a (K, M) matrix of the pixels and an
(M, N_Q) matrix of the frequencies. Odd and even powers of Q are kept
apart: ``χ(k + Q) − χ(k) = odd + even`` and ``χ(k) − χ(k − Q) = odd −
even``.
"""

from __future__ import annotations

from math import factorial

import numpy as np
from numpy.polynomial import polynomial

from ..optics import aberration_orders, chi


def chi_coefficients(aberrations: dict, wavelength: float) -> np.ndarray:
    """``c`` with ``χ(kx, ky) = Σ c[i, j] kx^i ky^j`` (radians, k in Å⁻¹)
    for polar ``aberrations`` (``C10``, ``C12``, ``phi12``..., Å and
    degrees)."""
    orders = [
        (m, n) for m, n in aberration_orders(aberrations)
        if aberrations[f'C{m}{n}']
    ]
    degree = max((m + 1 for m, _ in orders), default=0)
    if degree == 0:
        return np.zeros((1, 1))
    scale = 1.0 / wavelength  # Å⁻¹: keeps the powers of order 1
    nodes = np.cos(np.pi * (np.arange(degree + 2) + 0.5) / (degree + 2))
    u, v = (a.ravel() for a in np.meshgrid(nodes, nodes, indexing='ij'))
    design = polynomial.polyvander2d(u, v, (degree, degree))
    values = chi(u * scale, v * scale, wavelength, aberrations)
    fitted, *_ = np.linalg.lstsq(design, values, rcond=None)
    powers = np.add.outer(np.arange(degree + 1), np.arange(degree + 1))
    return fitted.reshape(degree + 1, degree + 1) / scale**powers


def taylor_powers(coefficients: np.ndarray) -> list[tuple[int, int]]:
    """The (i, j) with 1 ≤ i + j ≤ degree: the Taylor terms of χ."""
    degree = coefficients.shape[0] - 1
    return [
        (i, total - i)
        for total in range(1, degree + 1)
        for i in range(total + 1)
    ]


def taylor_matrix(coefficients, k, powers, xp=np):
    """(K, M) float32: ``D_ij(k)`` for the pixels ``k`` (K, 2) Å⁻¹."""
    k = np.asarray(k, dtype=np.float64)
    columns = []
    for i, j in powers:
        derivative = polynomial.polyder(coefficients, i, axis=0)
        derivative = polynomial.polyder(derivative, j, axis=1)
        value = polynomial.polyval2d(k[:, 0], k[:, 1], derivative)
        columns.append(value / (factorial(i) * factorial(j)))
    matrix = np.stack(columns, axis=1) if columns else np.zeros((len(k), 0))
    return xp.asarray(matrix, dtype=np.float32)


def power_matrix(q, powers, xp=np):
    """(M, N_Q) float32: ``Qx^i Qy^j`` for frequencies ``q`` (2, N_Q)."""
    q = xp.asarray(q, dtype=np.float64)
    rows = [q[0] ** i * q[1] ** j for i, j in powers]
    matrix = xp.stack(rows) if rows else xp.zeros((0, q.shape[1]))
    return matrix.astype(np.float32)


def gradient(coefficients, k) -> np.ndarray:
    """∇χ (K, 2) radians·Å at the pixels ``k`` (K, 2) Å⁻¹."""
    k = np.asarray(k, dtype=np.float64)
    return np.stack(
        [
            polynomial.polyval2d(
                k[:, 0], k[:, 1], polynomial.polyder(coefficients, axis=a)
            )
            for a in (0, 1)
        ],
        axis=1,
    )
