"""Kernel-density upsampling of shifted images (tilt-corrected BF).

Every sample of image b, at pixel (x, y), belongs at ((x, y) + s_b) in
a grid ``factor`` times finer. It is split bilinearly over the four
nearest fine pixels (values V and weights W, periodic), both grids are
Gaussian-smoothed and V/W is the image. For an integer factor all
samples of one image share one fractional offset, so the splat is four
strided slice-adds per image (images with equal shifts summed first)
instead of a scatter (ALGORITHMS.md §1.4).
"""

from __future__ import annotations

import numpy as np

from .backend import fft_of, xp_of


def kde_upsample(images, shifts, factor: float, sigma_px: float = 0.125):
    """Kernel-density upsampling: every sample of image b (X, Y) lands at
    ((x, y) + shifts_b)·factor on a periodic grid ``factor`` times finer,
    split bilinearly; values V and weights W are Gaussian-smoothed (σ =
    ``sigma_px`` scan pixels) and V/W returned (1 where W ≈ 0)."""
    xp = xp_of(images)
    if float(factor).is_integer():
        values, weights = _splat_strided(images, shifts, int(factor))
    else:
        values, weights = _splat_bincount(images, shifts, factor)
    fft = fft_of(xp)
    kx, ky = (xp.asarray(np.fft.fftfreq(n))[:, None] for n in values.shape)
    gauss = xp.exp(-2 * (np.pi * sigma_px * factor) ** 2 * (kx**2 + ky.T**2))
    values, weights = (
        fft.ifft2(fft.fft2(a) * gauss).real for a in (values, weights)
    )
    ok = weights > 1e-3
    return xp.where(ok, values / xp.where(ok, weights, 1.0), 1.0).astype(
        np.float32
    )


def _splat_strided(images, shifts, factor):
    """Bilinear splat for an integer factor: images sharing a shift are
    summed, then each sum lands with 4 strided slice-adds (every sample of
    an image has the same fractional offset), folded periodically."""
    xp = xp_of(images)
    n, nx, ny = images.shape
    position = shifts * factor
    whole = np.floor(position).astype(int)
    frac = position - whole
    _, first, labels = np.unique(
        np.column_stack([whole, frac]),
        axis=0,
        return_index=True,
        return_inverse=True,
    )
    labels = labels.ravel()
    order = np.argsort(labels, kind='stable')
    starts = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0])
    sums = xp.add.reduceat(
        images[xp.asarray(order)], xp.asarray(starts), axis=0
    )
    counts = np.diff(np.r_[starts, n])
    margin = int(np.abs(whole).max()) // factor + 2
    tiles = [-(-(size + 2 * margin) // size) for size in (nx, ny)]
    big_v = xp.zeros(
        (tiles[0] * nx * factor, tiles[1] * ny * factor), np.float32
    )
    big_w = xp.zeros_like(big_v)
    base = margin * factor
    for k, (i0, j0) in enumerate(whole[first]):
        fx, fy = frac[first[k]]
        for di, wx in ((0, 1 - fx), (1, fx)):
            for dj, wy in ((0, 1 - fy), (1, fy)):
                a, b = base + i0 + di, base + j0 + dj
                target = (
                    slice(a, a + nx * factor, factor),
                    slice(b, b + ny * factor, factor),
                )
                big_v[target] += (wx * wy) * sums[k]
                big_w[target] += wx * wy * counts[k]
    fold = [(tiles[0], nx * factor, tiles[1], ny * factor), (0, 2)]
    values, weights = (
        xp.roll(
            a.reshape(fold[0]).sum(axis=fold[1]), (-base, -base), axis=(0, 1)
        )
        for a in (big_v, big_w)
    )
    return values, weights


def _splat_bincount(images, shifts, factor):
    """Bilinear splat for a non-integer factor (scatter with bincount)."""
    xp = xp_of(images)
    nx, ny = images.shape[1:]
    mx, my = int(round(nx * factor)), int(round(ny * factor))
    gx = (
        xp.arange(nx)[None, :, None] + xp.asarray(shifts[:, :1, None])
    ) * factor
    gy = (
        xp.arange(ny)[None, None, :] + xp.asarray(shifts[:, 1:2, None])
    ) * factor
    x0, y0 = xp.floor(gx), xp.floor(gy)
    fx, fy = gx - x0, gy - y0
    values = xp.zeros(mx * my)
    weights = xp.zeros(mx * my)
    for di, wx in ((0, 1 - fx), (1, fx)):
        for dj, wy in ((0, 1 - fy), (1, fy)):
            index = ((x0 + di) % mx).astype(int) * my + (
                (y0 + dj) % my
            ).astype(int)
            w = xp.broadcast_to(wx * wy, images.shape).ravel()
            index = xp.broadcast_to(index, images.shape).ravel()
            values += xp.bincount(index, w * images.ravel(), minlength=mx * my)
            weights += xp.bincount(index, w, minlength=mx * my)
    return values.reshape(mx, my), weights.reshape(mx, my)
