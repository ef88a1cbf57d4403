"""Virtual detectors: masks in detector pixels and their virtual images.

Every mask is float32 0/1 over the detector (Qx, Qy); x is array axis 0.
A pixel belongs to a shape when its centre (integer coordinates) is
inside. Annuli exclude their inner edge, so a BF disk and an ADF annulus
of the same radius never share a pixel. A shape that covers no pixel
centre (outside the detector, or smaller than a pixel) raises
``ValueError``: its virtual image would be empty.
"""

from __future__ import annotations

import numpy as np
from matplotlib.path import Path

from .backend import ProgressCallback
from .calibration import Calibration
from .datacube import DataCube
from .reduce import detector_sums, iter_detector_sums

#: Extra radius (px) of the BF preset over the fitted probe (the seed's).
BF_MARGIN_PX = 2.0


def circle_mask(shape, center, radius: float) -> np.ndarray:
    """Disk of ``radius`` px around ``center`` (px)."""
    if not radius > 0:
        raise ValueError(f'a circle detector needs a radius > 0, got {radius}')
    return _checked(_distance2(shape, center) <= radius**2, 'circle', shape)


def annulus_mask(shape, center, r_in: float, r_out: float) -> np.ndarray:
    """Ring ``r_in < r ≤ r_out`` (px) around ``center`` (px)."""
    if not 0 <= r_in < r_out:
        raise ValueError(
            'an annulus detector needs 0 ≤ inner < outer radius, got '
            f'{r_in} and {r_out} px'
        )
    r2 = _distance2(shape, center)
    return _checked((r2 > r_in**2) & (r2 <= r_out**2), 'annulus', shape)


def ellipse_mask(shape, corners) -> np.ndarray:
    """Ellipse inscribed in the parallelogram of its 4 bounding-box
    ``corners`` (px, in order around the box: napari's ellipse data), so
    rotated ellipses work too."""
    corners = np.asarray(corners, dtype=np.float64)
    if corners.shape != (4, 2):
        raise ValueError(
            f'an ellipse needs 4 bounding-box corners, got {corners.shape}'
        )
    center = corners.mean(axis=0)
    axes = np.column_stack([
        (corners[1] - corners[0]) / 2, (corners[3] - corners[0]) / 2
    ])
    if abs(np.linalg.det(axes)) < 1e-12:
        raise ValueError('an ellipse detector has zero area')
    x, y = _grid(shape)
    p = np.stack([x - center[0], y - center[1]], axis=-1)
    u = p @ np.linalg.inv(axes).T
    return _checked((u**2).sum(axis=-1) <= 1, 'ellipse', shape)


def rectangle_mask(shape, corners) -> np.ndarray:
    """Axis-aligned box spanned by ``corners`` ((N, 2) px, e.g. two
    opposite corners). Rotated rectangles: use :func:`polygon_mask`."""
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    if not np.all(hi > lo):
        raise ValueError('a rectangle detector has zero area')
    x, y = _grid(shape)
    inside = (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1])
    return _checked(inside, 'rectangle', shape)


def polygon_mask(shape, vertices) -> np.ndarray:
    """Polygon of ``vertices`` ((N ≥ 3, 2) px, closed automatically)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 3:
        raise ValueError(
            f'a polygon detector needs ≥ 3 vertices (N, 2), got '
            f'{vertices.shape}'
        )
    x, y = vertices.T
    if abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) < 1e-12:
        raise ValueError('a polygon detector has zero area')
    gx, gy = _grid(shape)
    points = np.column_stack([gx.ravel(), gy.ravel()])
    inside = Path(vertices).contains_points(points).reshape(tuple(shape))
    return _checked(inside, 'polygon', shape)


def bf_mask(cal: Calibration, shape) -> np.ndarray:
    """Bright-field disk: the fitted probe radius + 2 px (as in the seed)."""
    cal.require('probe_center', 'probe_radius', purpose='the BF detector')
    return circle_mask(shape, cal.probe_center,
                       cal.probe_radius + BF_MARGIN_PX)


def adf_mask(cal: Calibration, shape) -> np.ndarray:
    """Annular dark field: from the BF edge out to the detector edge
    (every pixel outside the BF preset, corners included)."""
    cal.require('probe_center', 'probe_radius', purpose='the ADF detector')
    r_in = cal.probe_radius + BF_MARGIN_PX
    return annulus_mask(shape, cal.probe_center, r_in,
                        outer_radius(shape, cal.probe_center))


def outer_radius(shape, center) -> float:
    """A radius (px) from ``center`` that reaches past every detector
    pixel."""
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]]) * (
        np.asarray(shape) - 1
    )
    return float(np.hypot(*(corners - np.asarray(center)).T).max() + 1)


def virtual_images(
    data_or_cube, masks, progress: ProgressCallback | None = None
):
    """Virtual images (K, Rx, Ry) float32 for K masks, in ONE pass over
    the detector pixels the masks use.

    ``data_or_cube`` is a :class:`DataCube` or a (Rx, Ry, Qx, Qy) numpy,
    cupy or dask array; ``masks`` is (K, Qx, Qy) or a sequence of (Qx, Qy)
    masks. numpy/cupy in, the same out; dask in, numpy out.
    """
    return detector_sums(_data(data_or_cube), _stack(masks), progress)


def iter_virtual_images(data_or_cube, masks):
    """Generator form of :func:`virtual_images` for interactive use: yields
    the fraction done after each chunk of scan rows (lazy data is read one
    chunk at a time, so a caller can stop between chunks) and returns the
    images."""
    return iter_detector_sums(_data(data_or_cube), _stack(masks))


def _data(data_or_cube):
    return data_or_cube.data if isinstance(data_or_cube, DataCube) else (
        data_or_cube
    )


def _stack(masks) -> np.ndarray:
    return np.stack([np.asarray(m, dtype=np.float32) for m in masks])


def _grid(shape):
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f'detector shape must be 2 positive ints: {shape}')
    x = np.arange(shape[0], dtype=np.float64)[:, None]
    y = np.arange(shape[1], dtype=np.float64)[None, :]
    return np.broadcast_arrays(x, y)


def _distance2(shape, center):
    x, y = _grid(shape)
    return (x - center[0]) ** 2 + (y - center[1]) ** 2


def _checked(inside, kind: str, shape) -> np.ndarray:
    if not inside.any():
        raise ValueError(
            f'the {kind} detector covers no pixel of the {tuple(shape)} '
            'detector: it lies outside the detector or is smaller than a '
            'pixel'
        )
    return inside.astype(np.float32)
