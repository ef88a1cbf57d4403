"""napari layer-data tuples for datacubes and vacuum probes (no napari
import needed).

Both live in the main (real-space) viewer with units (mrad, mrad, Å, Å) on
axes (kx, ky, x, y), so napari sees one consistent set of units next to
every real-space result in Å (docs/design.md):

- the datacube layer is the data transposed lazily to (Qx, Qy, Rx, Ry)
  (a view; dask stays dask): the displayed axes are real space, the two
  sliders pick a detector pixel;
- the vacuum probe is a diffraction pattern: a 2D layer in mrad next to Å
  layers would make napari drop units ("Inconsistent units across
  layers"), so it is shown as (Qx, Qy, 1, 1) on the same kx, ky axes,
  hidden; the widgets and the diffraction view use the 2D probe kept in
  its metadata.

An unknown scan step or detector pixel gets scale 1 (the
``Calibration.DEFAULTS`` value; the reader warned which were unknown) with
the same units, so that units stay consistent.
"""

from __future__ import annotations

import numpy as np

from ..compute.backend import is_dask, to_numpy
from ..compute.calibration import Calibration
from ..compute.datacube import DataCube

#: Key under which napari-phase keeps its objects in ``layer.metadata``.
META = 'napari_phase'
UNITS = ('mrad', 'mrad', 'angstrom', 'angstrom')
AXIS_LABELS = ('kx', 'ky', 'x', 'y')


def layer_scale(calibration: Calibration) -> tuple[float, ...]:
    """(kx, ky, x, y) scale: mrad per detector pixel, Å per scan step."""
    dq = calibration.q_pixel_mrad or 1.0
    step = calibration.scan_step or 1.0
    return (dq, dq, step, step)


def datacube_layers(cube: DataCube, name: str,
                    contrast_limits: tuple | None = None) -> list[tuple]:
    """The datacube layer: ``cube.data`` as (Qx, Qy, Rx, Ry) and the cube
    in metadata. A lazy cube's layer starts hidden, with the contrast of
    its first pattern unless ``contrast_limits`` are given (napari would
    otherwise read across every pattern). Widgets compute the mean pattern
    when they need it, in a thread."""
    attrs = {
        'name': name,
        'scale': layer_scale(cube.calibration),
        'units': UNITS,
        'axis_labels': AXIS_LABELS,
        'metadata': {META: {'datacube': cube}},
    }
    if cube.is_lazy:
        if contrast_limits is None:
            frame = to_numpy(cube.data[0, 0])
            low, high = float(np.min(frame)), float(np.max(frame))
            contrast_limits = (low, max(high, low + 1))
        attrs.update(visible=False, contrast_limits=contrast_limits)
    return [(cube.data.transpose(2, 3, 0, 1), attrs, 'image')]


def probe_layers(probe, calibration: Calibration, name: str,
                 contrast_limits: tuple | None = None) -> list[tuple]:
    """A hidden (Qx, Qy, 1, 1) layer holding the 2D vacuum probe and its
    calibration in metadata (``contrast_limits`` spare reading a lazy
    probe)."""
    if not is_dask(probe):  # a lazy probe stays lazy
        probe = np.asarray(probe)
    attrs = {
        'name': name,
        'scale': layer_scale(calibration),
        'units': UNITS,
        'axis_labels': AXIS_LABELS,
        'visible': False,
        'metadata': {META: {'probe': probe, 'calibration': calibration}},
    }
    if contrast_limits is not None:
        attrs['contrast_limits'] = contrast_limits
    return [(probe[:, :, None, None], attrs, 'image')]


def phase_scale(method) -> dict:
    """What a phase layer records of its radians: ``quantitative`` (on
    the true scale within 20 %) and, in words, what they are worth;
    ``method`` is a result (or prepared phase) or its class."""
    return {'quantitative': bool(getattr(method, 'quantitative', False)),
            'phase_scale': method.phase_scale}


def real_space_layer(
    image,
    name: str,
    pixel_size: float,
    parameters: dict,
    origin: tuple[float, float] = (0.0, 0.0),
    layer_type: str = 'image',
    **kwargs,
):
    """LayerDataTuple for a scan-frame image with pixels of ``pixel_size``
    Å whose pixel (0, 0) sits at ``origin`` (Å, relative to scan position
    (0, 0)); ``parameters`` (every parameter used) go into metadata."""
    attrs = {
        'name': name,
        'scale': (pixel_size, pixel_size),
        'translate': tuple(origin),
        'units': ('angstrom', 'angstrom'),
        'axis_labels': ('x', 'y'),
        'metadata': {META: {'parameters': parameters}},
    }
    return (np.asarray(image), attrs | kwargs, layer_type)
