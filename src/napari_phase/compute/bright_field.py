"""The bright-field pixels of a 4D-STEM scan and their virtual images, as
parallax (``parallax.py``) and direct ptychography's parallax quick phase
(``direct/quick_parallax.py``) align and shift them."""

from __future__ import annotations

import numpy as np

from .backend import iterate_scan_rows

#: Fewest BF pixels worth aligning.
MIN_BF_PIXELS = 10

#: Fraction of the BF disk radius whose shifts enter the aberration fit.
#: Pixels near the aperture edge interfere with scattered beams on one
#: side only; on the simulator their shifts come out 4–12 % too large.
FIT_RADIUS = 0.8

#: What the CTF-corrected bright field's radians are worth (parallax and
#: its quick phase; docs/validation.md).
PHASE_SCALE = ('not on the true scale: a lower bound (the transfer is '
               'divided out only where it is large; slope 0.04–0.17 on the '
               'independent suite)')


def bright_field_pixels(mean_pattern, cal, threshold, source):
    """BF pixel indices (N, 2) and their angles θ (N, 2) rad, detector
    frame, from the beam centre (calibrated, else the BF centroid)."""
    mask = mean_pattern >= threshold * mean_pattern.max()
    bf_pixels = np.argwhere(mask)
    if len(bf_pixels) < MIN_BF_PIXELS:
        raise ValueError(
            f'{source}: threshold_intensity {threshold} selects only '
            f'{len(bf_pixels)} bright-field pixel(s) '
            f'(need ≥ {MIN_BF_PIXELS}); '
            'lower the threshold or check that the beam is on the detector.'
        )
    if cal.probe_center is not None:
        centre = np.asarray(cal.probe_center, float)
    else:
        weights = mean_pattern[mask].astype(float)
        centre = (bf_pixels * weights[:, None]).sum(0) / weights.sum()
    return bf_pixels, (bf_pixels - centre) * cal.q_pixel_mrad * 1e-3


def edge_window(shape, edge_blend: float, xp=np):
    """sin² ramp from 0 at the scan edge to 1 ``edge_blend`` px inside."""
    ramps = []
    for n in shape:
        d = (1 - np.abs((2 * np.arange(n) + 1) / n - 1)) * n / 2
        ramp = (
            np.sin(np.pi / 2 * np.clip(d / edge_blend, 0, 1)) ** 2
            if edge_blend > 0
            else np.ones(n)
        )
        ramps.append(ramp)
    return xp.asarray(np.outer(*ramps), dtype=np.float32)


def bright_field_images(data, bf_pixels, edge_blend, padding, xp):
    """(N, Rx + pad, Ry + pad) float32: each BF pixel's virtual image over
    its window-weighted mean, blended to 1 at the edges, padded with 1."""
    rx, ry = data.shape[:2]
    mask = np.zeros(data.shape[2:], bool)
    mask[tuple(bf_pixels.T)] = True
    mask = xp.asarray(mask)
    stack = xp.empty((rx, ry, len(bf_pixels)), np.float32)
    for rows, block in iterate_scan_rows(data):
        stack[rows] = xp.asarray(block)[..., mask]
    stack = xp.moveaxis(stack, -1, 0)
    window = edge_window((rx, ry), edge_blend, xp)
    means = (stack * window).sum(axis=(1, 2)) / window.sum()
    means = xp.maximum(means, 1e-6 * means.max())
    images = xp.ones(
        (len(bf_pixels), rx + padding[0], ry + padding[1]), np.float32
    )
    x0, y0 = padding[0] // 2, padding[1] // 2
    images[:, x0 : x0 + rx, y0 : y0 + ry] = (
        1 - window + window * stack / means[:, None, None]
    )
    return images
