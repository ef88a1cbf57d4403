"""Alignment of bright-field images by cross-correlation, coarse to fine.

BF pixels are grouped in square bins of their detector position; each
group's mean image (Fourier-shifted by the current per-pixel shifts) is
cross-correlated against the sum of all the other groups. Coarse levels,
repeated until the shifts settle, pass on a smooth polynomial of θ
through their group shifts; the finest level's shifts stay raw unless a
regulariser is asked for. Sub-pixel peaks come from a parabola and
matrix-multiply DFT upsampling, vectorised over groups (numpy or cupy
alike).
"""

from __future__ import annotations

import math

import numpy as np

from .backend import fft_of, to_numpy, xp_of

#: Highest degree of the smooth polynomial of θ through the group shifts
#: of the coarse levels. Group-constant shifts would leave steps that the
#: finer groups straddle and never resolve; only the finest level's raw
#: shifts are kept as measured.
COARSE_DEGREE = 3

#: Most alignment passes at one coarse level, and the largest shift
#: change (px) at which they stop: on the independent suite 3–4 passes
#: converge from zero shifts (docs/validation.md).
COARSE_PASSES = 8
CONVERGED_PX = 0.05


def normalised_contrast(images):
    """Alignment input: each image's contrast (image − 1) scaled to unit
    standard deviation, so that every BF pixel weighs the same in its
    group (high-contrast pixels at the aperture edge would dominate)."""
    contrast = images - 1
    spread = contrast.std(axis=(1, 2), keepdims=True)
    return contrast / (spread + 1e-12)


def _bin_levels(max_bin, min_bin, repeats):
    """Bin sizes (px): halving from ``max_bin`` while above ``min_bin``,
    then ``min_bin`` ``repeats`` times."""
    levels = []
    size = float(max_bin)
    while size > min_bin:
        levels.append(size)
        size /= 2
    return levels + [float(min_bin)] * repeats


def _group_labels(centred_pixels, bin_px):
    """Group index (0…G−1) of each BF pixel for bins of ``bin_px``.

    Slivers at the disk edge (fewer than a quarter of the largest group's
    pixels) join the nearest full group: alone, their few aperture-edge
    pixels give no reliable correlation peak."""
    cells = np.round(centred_pixels / bin_px).astype(int)
    keys, labels, counts = np.unique(
        cells, axis=0, return_inverse=True, return_counts=True
    )
    labels = labels.ravel()
    full = counts >= counts.max() / 4
    distance = ((keys[:, None] - keys[full][None]) ** 2).sum(axis=2)
    nearest = np.flatnonzero(full)[distance.argmin(axis=1)]
    return np.unique(nearest[labels], return_inverse=True)[1]


def _ramps(shifts, shape, xp, width=None):
    """Separable Fourier phase ramps that move images by ``shifts`` (N, 2)
    px towards +index: (N, X) and (N, Y) complex64; with ``width``, Y is
    the half plane of a real FFT of images that wide."""
    fx = np.fft.fftfreq(shape[0])
    fy = np.fft.fftfreq(shape[1]) if width is None else np.fft.rfftfreq(width)
    s = xp.asarray(shifts)
    return tuple(
        _phasors(-2 * np.pi * s[:, i : i + 1] * xp.asarray(f)[None], xp)
        for i, f in enumerate((fx, fy))
    )


def _phasors(angle, xp):
    """exp(i·angle) as complex64, from a cosine and a sine (several times
    faster than numpy's complex exponential)."""
    return (xp.cos(angle) + 1j * xp.sin(angle)).astype(np.complex64)


def shifted_sum(spectra, shifts, width=None):
    """Σ_b FFT(image_b shifted by shifts_b), (X, Y); ``width``: the
    images' width when ``spectra`` are real-FFT half planes (rfft2)."""
    xp = xp_of(spectra)
    ex, ey = _ramps(shifts, spectra.shape[1:], xp, width)
    return xp.einsum('bx,bxy,by->xy', ex, spectra, ey)


def align_bright_field(
    spectra,
    theta,
    centred,
    max_bin: float,
    min_bin: float,
    repeats: int,
    upsample: int = 8,
    regularize: bool | int = False,
):
    """Generator over the bin pyramid: yields the fraction done after each
    level, returns the shifts (N, 2) px that align the images whose
    spectra are ``spectra`` (N, X, Y), and the finest level's group labels.

    ``theta`` (N, 2): the pixels' angles (any unit); ``centred`` (N, 2):
    their detector positions (px) about the disk centre; bins from
    ``max_bin`` halving to ``min_bin`` px, then ``repeats`` times more.
    """
    levels = _bin_levels(max_bin, min_bin, repeats)
    regularizer = _regularizer(theta, regularize)
    shifts = np.zeros((len(theta), 2))
    cache = None  # finest level: group spectra and the group shifts since
    for i, bin_px in enumerate(levels):
        labels = _group_labels(centred, bin_px)
        if bin_px > min_bin:
            shifts = _coarse_level(spectra, theta, shifts, labels, upsample)
            yield (i + 1) / len(levels)
            continue
        if cache is None:
            cache = (
                _group_spectra(spectra, shifts, labels),
                np.zeros((labels.max() + 1, 2)),
            )
        base, moved = cache
        ex, ey = _ramps(moved, spectra.shape[1:], xp_of(spectra))
        delta = _align_groups(base * ex[:, :, None] * ey[:, None, :],
                              upsample)
        shifts += delta[labels]
        if regularizer is not None:
            shifts = regularizer @ shifts
            cache = None
        else:
            cache = (base, moved + delta - shifts.mean(axis=0))
        shifts -= shifts.mean(axis=0)
        yield (i + 1) / len(levels)
    return shifts, labels


def _coarse_level(spectra, theta, shifts, labels, upsample):
    """Shifts (N, 2) px after one coarse level: align its groups and pass
    on the smooth polynomial through them, repeated until the shifts move
    less than CONVERGED_PX (at most COARSE_PASSES times). Aligned to the
    sum of the others, each group starts against a reference blurred by
    the shifts still to be found, which biases its peak towards zero:
    one pass finds a fraction of the shift, a few converge."""
    for _ in range(COARSE_PASSES):
        groups = _group_spectra(spectra, shifts, labels)
        moved = _smooth(theta, shifts + _align_groups(groups, upsample)[
            labels], labels)
        moved -= moved.mean(axis=0)
        change = np.abs(moved - shifts).max()
        shifts = moved
        if change < CONVERGED_PX:
            break
    return shifts


def _group_spectra(spectra, shifts, labels):
    """(G, X, Y): Σ over each group of the images' spectra, each moved by
    its shift (one vectorised pass over the stack)."""
    xp = xp_of(spectra)
    order = np.argsort(labels, kind='stable')
    starts = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0])
    ex, ey = _ramps(shifts[order], spectra.shape[1:], xp)
    shifted = spectra[xp.asarray(order)]
    shifted *= ex[:, :, None]
    shifted *= ey[:, None, :]
    return xp.add.reduceat(shifted, xp.asarray(starts), axis=0)


def _align_groups(groups, upsample):
    """Shift update (G, 2) px of each group's image (spectra ``groups``):
    its cross-correlation peak against the sum of all the other groups at
    their current shifts. That reference holds all the data but the
    group's own noise, so it stays sharp at low dose, where a single
    group (say the centre's) is mostly noise and aligning to it aligns
    noise."""
    xp = xp_of(groups)
    if len(groups) == 1:
        return np.zeros((1, 2))
    others = groups.sum(axis=0)[None] - groups
    return correlation_peaks(others * xp.conj(groups), upsample)


def _parabola(minus, centre, plus):
    """Vertex offset of a parabola through three equally spaced values."""
    curvature = minus - 2 * centre + plus
    safe = np.where(curvature < 0, curvature, -1.0)
    return np.where(
        curvature < 0, np.clip((minus - plus) / (2 * safe), -0.5, 0.5), 0.0
    )


def correlation_peaks(cross_spectra, upsample: int = 8) -> np.ndarray:
    """Sub-pixel peak (G, 2) px of the cross-correlations whose spectra
    are ``cross_spectra`` (G, X, Y) = FFT(ref)·conj(FFT(img)); moving
    ``img`` by the peak aligns it with ``ref``. Integer peak, parabolic
    refinement, then DFT upsampling by ``upsample`` around it."""
    xp = xp_of(cross_spectra)
    cc = to_numpy(fft_of(xp).ifft2(cross_spectra).real)
    g, nx, ny = cc.shape
    ix, iy = np.unravel_index(cc.reshape(g, -1).argmax(axis=1), (nx, ny))
    rows = np.arange(g)
    dx = _parabola(
        cc[rows, (ix - 1) % nx, iy],
        cc[rows, ix, iy],
        cc[rows, (ix + 1) % nx, iy],
    )
    dy = _parabola(
        cc[rows, ix, (iy - 1) % ny],
        cc[rows, ix, iy],
        cc[rows, ix, (iy + 1) % ny],
    )
    peak = np.stack([ix + dx, iy + dy], axis=1)
    peak = (peak + np.array([nx, ny]) / 2) % np.array([nx, ny]) - np.array(
        [nx, ny]
    ) / 2
    if upsample > 1:
        peak = _dft_refine(cross_spectra, peak, upsample)
    return peak


def _dft_refine(cross_spectra, peak, upsample):
    """Evaluate the correlations on a (1.5 px)² grid of pitch 1/upsample
    around ``peak`` by matrix-multiply DFTs; refined peak (G, 2) px."""
    xp = xp_of(cross_spectra)
    g, nx, ny = cross_spectra.shape
    n = int(math.ceil(1.5 * upsample)) | 1
    offsets = (np.arange(n) - n // 2) / upsample
    grid = (
        np.round(peak * upsample)[:, :, None] / upsample + offsets
    )  # (G, 2, n)
    kernels = [
        xp.asarray(
            np.exp(2j * np.pi * grid[:, k, :, None] * np.fft.fftfreq(size))
        )
        for k, size in ((0, nx), (1, ny))
    ]
    cross = cross_spectra.astype(np.complex128)
    up = to_numpy(
        (kernels[0] @ cross @ xp.swapaxes(kernels[1], 1, 2)).real
    )  # (G, n, n)
    a, b = np.unravel_index(up.reshape(g, -1).argmax(axis=1), (n, n))
    rows = np.arange(g)
    inner_a, inner_b = np.clip(a, 1, n - 2), np.clip(b, 1, n - 2)
    da = np.where(
        a == inner_a,
        _parabola(
            up[rows, inner_a - 1, b], up[rows, a, b], up[rows, inner_a + 1, b]
        ),
        0.0,
    )
    db = np.where(
        b == inner_b,
        _parabola(
            up[rows, a, inner_b - 1], up[rows, a, b], up[rows, a, inner_b + 1]
        ),
        0.0,
    )
    return np.stack(
        [grid[rows, 0, a] + da / upsample, grid[rows, 1, b] + db / upsample],
        axis=1,
    )


def _monomials(u, degree):
    """Columns u_x^i·u_y^j, i + j ≤ degree."""
    return np.column_stack(
        [
            u[:, 0] ** i * u[:, 1] ** j
            for i in range(degree + 1)
            for j in range(degree + 1 - i)
        ]
    )


def _smooth(theta, shifts, labels):
    """Per-pixel shifts from a least-squares polynomial of θ through the
    group means (weighted by group size), of the highest degree ≤
    COARSE_DEGREE with at most half as many terms as groups."""
    counts = np.bincount(labels)
    degree = 0
    while degree < COARSE_DEGREE and (degree + 2) * (degree + 3) / 2 <= max(
        3, len(counts) / 2
    ):
        degree += 1
    u = theta / np.abs(theta).max()
    means = [
        np.stack([np.bincount(labels, a[:, k]) for k in (0, 1)], 1)
        / counts[:, None]
        for a in (u, shifts)
    ]
    weight = np.sqrt(counts)[:, None]
    coef, *_ = np.linalg.lstsq(
        _monomials(means[0], degree) * weight, means[1] * weight, rcond=None
    )
    return _monomials(u, degree) @ coef


def _regularizer(theta, order):
    """Projector (N, N) onto polynomials of θ of degree ``order`` (True:
    2), or None. Degree 2 spans the shifts of C1, astigmatism, coma and
    trefoil in any rotation."""
    if order is False or order is None:
        return None
    degree = 2 if order is True else int(order)
    basis = _monomials(theta / np.abs(theta).max(), degree)
    return basis @ np.linalg.pinv(basis)
