"""Probe positions: from the scan grid into the object's pixels and back,
their global affine fit, and the object resampled into the scan frame.

The object lives in the **detector frame** (docs/conventions.md): scan
position ``p_R`` (Å) sits at ``p_Q = swap?(R(−θ)·p_R)``
(geometry.scan_to_detector), in object pixels of ``Δx`` Å, shifted by an
``offset`` (px) that leaves the padding around the outermost positions.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..geometry import detector_to_scan, scan_to_detector


def scan_grid(scan_shape, scan_step: float) -> np.ndarray:
    """Nominal scan positions (J, 2) Å, scan frame, raster order."""
    ix, iy = np.meshgrid(*map(np.arange, scan_shape), indexing='ij')
    return np.stack([ix.ravel(), iy.ravel()], axis=1) * scan_step


def object_grid(scan_shape, scan_step, pixel_size, rotation_deg, transpose,
                padding):
    """Nominal probe centres (J, 2) in object px, the object shape (px),
    and the offset (px) from detector-frame position/Δx to object pixel;
    ``padding`` (2,) px between the outermost centres and the edges."""
    p_Q = scan_to_detector(scan_grid(scan_shape, scan_step).T, rotation_deg,
                           transpose).T / pixel_size
    offset = np.asarray(padding) - p_Q.min(axis=0)
    centres = p_Q + offset
    shape = tuple(int(v) for v in np.ceil(centres.max(axis=0)) + padding + 1)
    return centres, shape, offset


def to_scan_frame(centres, offset, pixel_size, rotation_deg, transpose):
    """Object-pixel centres (J, 2) as scan-frame positions (J, 2) Å."""
    p_Q = (np.asarray(centres) - offset) * pixel_size
    return detector_to_scan(p_Q.T, rotation_deg, transpose).T


def from_scan_frame(positions, offset, pixel_size, rotation_deg, transpose):
    """Scan-frame positions (J, 2) Å as object-pixel centres (J, 2)."""
    p_Q = scan_to_detector(np.asarray(positions, np.float64).T,
                           rotation_deg, transpose).T
    return p_Q / pixel_size + offset


def affine_fit(initial, current, active):
    """``current`` (J, 2) replaced by its least-squares affine image of
    ``initial`` (J, 2), ``A·p + t``, fitted on the ``active`` positions:
    corrections that are a global scale, shear, rotation and shift of the
    scan (py4DSTEM's ``global_affine_transformation``, by plain least
    squares). Returns the fitted positions and the 2×3 matrix [A | t]."""
    design = np.column_stack([initial, np.ones(len(initial))])
    matrix, *_ = np.linalg.lstsq(design[active], current[active],
                                 rcond=None)
    return design @ matrix, matrix.T


def crop_to_scan_frame(obj, scan_shape, scan_step, pixel_size, offset,
                       rotation_deg, transpose) -> np.ndarray:
    """Resample a detector-frame object (…, M, M') onto the scan-frame grid
    of pixel ``pixel_size`` Å whose (0, 0) is scan position (0, 0) (cubic
    spline, complex values: no phase wrapping issue); leading axes (the
    slices) are kept."""
    nx, ny = (
        round((n - 1) * scan_step / pixel_size) + 1 for n in scan_shape
    )
    gx, gy = np.meshgrid(np.arange(nx), np.arange(ny), indexing='ij')
    r = np.stack([gx, gy]).astype(np.float64) * pixel_size
    coords = scan_to_detector(r, rotation_deg, transpose) / pixel_size
    coords += np.asarray(offset)[:, None, None]
    obj = np.asarray(obj)
    flat = obj.reshape(-1, *obj.shape[-2:])
    out = np.stack([ndimage.map_coordinates(layer, coords, order=3,
                                            mode='nearest')
                    for layer in flat])
    return out.reshape(*obj.shape[:-2], nx, ny)
