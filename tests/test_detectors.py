"""Detector masks against hand-computed pixel sets; virtual images against
a plain numpy reference (einsum), eager and lazy."""

import dask.array as da
import numpy as np
import pytest

from napari_phase import Calibration
from napari_phase.compute.detectors import (
    adf_mask,
    annulus_mask,
    bf_mask,
    circle_mask,
    ellipse_mask,
    polygon_mask,
    rectangle_mask,
    virtual_images,
)

SHAPE = (40, 50)
X, Y = np.indices(SHAPE)


def test_circle_and_annulus():
    c = (19.3, 24.6)
    r2 = (X - c[0]) ** 2 + (Y - c[1]) ** 2
    np.testing.assert_array_equal(circle_mask(SHAPE, c, 7.5), r2 <= 7.5**2)
    ring = annulus_mask(SHAPE, c, 7.5, 12.2)
    np.testing.assert_array_equal(ring, (r2 > 7.5**2) & (r2 <= 12.2**2))
    assert ring.dtype == np.float32
    assert not np.any(ring * circle_mask(SHAPE, c, 7.5))


def test_ellipse_axis_aligned_and_rotated():
    c, a, b = np.array([20.2, 25.1]), 9.3, 4.4
    box = c + np.array([[-a, -b], [a, -b], [a, b], [-a, b]])
    expected = ((X - c[0]) / a) ** 2 + ((Y - c[1]) / b) ** 2 <= 1
    np.testing.assert_array_equal(ellipse_mask(SHAPE, box), expected)
    t = np.deg2rad(30)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    turned = (box - c) @ rot.T + c
    u = np.stack([X - c[0], Y - c[1]], -1) @ rot  # into the ellipse frame
    expected = (u[..., 0] / a) ** 2 + (u[..., 1] / b) ** 2 <= 1
    np.testing.assert_array_equal(ellipse_mask(SHAPE, turned), expected)


def test_rectangle_and_polygon():
    mask = rectangle_mask(SHAPE, [[12.5, 30.2], [3.4, 7.7]])
    expected = np.zeros(SHAPE, bool)
    expected[4:13, 8:31] = True
    np.testing.assert_array_equal(mask, expected)
    tri = np.array([[2.3, 3.1], [30.7, 5.2], [10.4, 41.6]])
    inside = np.ones(SHAPE, bool)
    for a, b in zip(tri, np.roll(tri, -1, axis=0)):  # counter-clockwise
        inside &= (b[0] - a[0]) * (Y - a[1]) - (b[1] - a[1]) * (X - a[0]) > 0
    np.testing.assert_array_equal(polygon_mask(SHAPE, tri), inside)


def test_presets():
    cal = Calibration(probe_center=(19.3, 24.6), probe_radius=8.2)
    bf, adf = bf_mask(cal, SHAPE), adf_mask(cal, SHAPE)
    np.testing.assert_array_equal(bf, circle_mask(SHAPE, (19.3, 24.6), 10.2))
    np.testing.assert_array_equal(bf + adf, np.ones(SHAPE))


@pytest.mark.parametrize(
    'make, message',
    [
        (lambda: circle_mask(SHAPE, (100, 100), 5), 'outside the detector'),
        (lambda: circle_mask(SHAPE, (10, 10), 0), 'radius > 0'),
        (lambda: circle_mask(SHAPE, (10.5, 10.5), 0.3), 'smaller than a'),
        (lambda: annulus_mask(SHAPE, (10, 10), 5, 5), 'inner < outer'),
        (lambda: rectangle_mask(SHAPE, [[1, 2], [1, 9]]), 'zero area'),
        (lambda: polygon_mask(SHAPE, [[1, 1], [2, 2], [3, 3]]), 'zero area'),
        (lambda: polygon_mask(SHAPE, [[1, 1], [2, 2]]), '≥ 3 vertices'),
        (lambda: ellipse_mask(SHAPE, [[1, 1]] * 4), 'zero area'),
        (lambda: rectangle_mask(SHAPE, [[-9, -9], [-2, -3]]), 'outside'),
        (lambda: bf_mask(Calibration(), SHAPE), 'probe centre'),
    ],
)
def test_bad_masks(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.fixture(scope='module')
def cube_and_masks(small_sim):
    cube = small_sim.datacube
    shape = cube.detector_shape
    cal = Calibration(probe_center=small_sim.truth['probe_center'],
                      probe_radius=small_sim.truth['probe_radius'])
    masks = [
        bf_mask(cal, shape),
        adf_mask(cal, shape),
        ellipse_mask(shape, [[30, 40], [60, 40], [60, 55], [30, 55]]),
        rectangle_mask(shape, [[10.2, 20.7], [50.1, 33.3]]),
        polygon_mask(shape, [[5, 5], [80, 20], [40, 90], [20, 60]]),
    ]
    return cube, np.stack(masks)


@pytest.mark.parametrize('lazy', [False, True])
def test_virtual_images_match_numpy(cube_and_masks, lazy):
    cube, masks = cube_and_masks
    data = da.from_array(cube.data, chunks=(8, 32, -1, -1)) if lazy \
        else cube.data
    got = virtual_images(data, masks)
    assert isinstance(got, np.ndarray) and got.shape == (5, 32, 32)
    expected = np.einsum('ijkl,nkl->nij', cube.data.astype(np.float64),
                         masks.astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=2e-6)
    for mask, image in zip(masks, expected, strict=True):  # cropped reads
        np.testing.assert_allclose(virtual_images(data, [mask])[0], image,
                                   rtol=2e-6)


def test_virtual_images_of_a_cube_and_progress(cube_and_masks):
    cube, masks = cube_and_masks
    seen = []
    got = virtual_images(cube, list(masks[:2]), progress=seen.append)
    np.testing.assert_allclose(
        got.sum(axis=0), cube.data.sum(axis=(2, 3)), rtol=2e-6
    )
    assert seen[-1] == 1.0
