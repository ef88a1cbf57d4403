"""DECTRIS NeXus master files (ARINA, QUADRO, EIGER).

The master file ``<name>_master.h5`` links ``/entry/data/data_000001``,
``data_000002``... to frame stacks (N, Qx, Qy) in separate data files,
compressed with bitshuffle-LZ4 (HDF5 filter 32008) or LZ4 (32004). The
frames are concatenated and reshaped to the scan in raster order (fast
axis Ry).

ARINA acquisitions also write a side metadata file ``<name>.h5`` whose
group ``STEM Metadata`` has the attributes ``NumPixelsX``, ``NumPixelsY``
(scan positions per line, lines), ``Pixel Size`` (scan step, nm: a
one-element array, as rosettasciio's ARINA reader also reads it),
``Camera Length`` and ``High Tension`` (units not documented: read by
their size, see ``_camera_length_m`` and ``_high_tension_ev``).

The scan shape comes from, in this order: the ``scan_shape`` argument;
the side file; a ``scan_shape`` attribute on ``/entry/data`` or
``/entry``; else it is guessed, with a warning, from
``detectorSpecific/ntrigger`` lines × ``nimages`` positions per line, or
a square scan when one of them is 1. The beam energy is the side file's
High Tension, else ``detectorSpecific/photon_energy`` (eV); the detector
pixel is ``x_pixel_size`` over the camera length (side file) or
``detector_distance`` (m).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import h5py
import numpy as np

from ..compute.calibration import Calibration
from .checked import CheckedDataset
from .found import Candidate, Found
from .generic import needs_scan_shape
from .hdf5 import dataset_at, where

DATA = '/entry/data'
DETECTOR = '/entry/instrument/detector'
SPECIFIC = f'{DETECTOR}/detectorSpecific'
SIDE_GROUP = 'STEM Metadata'


def is_master(h5: h5py.File) -> bool:
    """True when ``/entry/data`` holds ``data_NNNNNN`` frame stacks."""
    group = h5.get(DATA)
    return isinstance(group, h5py.Group) and any(
        key.startswith('data_') for key in group
    )


def side_file(master) -> Path:
    """The ARINA side metadata file of a master file."""
    master = Path(master)
    return master.with_name(re.sub(r'_master\.h5$', '.h5', master.name))


def find_datacube(h5: h5py.File, scan_shape=None) -> Found:
    """The frame stacks, their scan shape and the calibration."""
    stacks = [_frames(h5, f'{DATA}/{key}') for key in sorted(h5[DATA])
              if key.startswith('data_')]
    n_frames = sum(s.shape[0] for s in stacks)
    side = read_side_file(h5.filename)
    notes = []
    shape = (scan_shape or _side_shape(h5.filename, side, n_frames)
             or _attribute_shape(h5))
    if shape is None:
        shape = _guess_shape(h5, n_frames)
        if shape is None:
            raise ValueError(needs_scan_shape(
                DATA, (n_frames, *stacks[0].shape[1:])))
        notes.append(
            f'the scan shape {shape[0]}×{shape[1]} was guessed from '
            f'ntrigger × nimages ({n_frames} frames); there is no side '
            f'metadata file {side_file(h5.filename).name} saying it. If '
            'it is wrong, give the scan shape (Open 4D-STEM data in '
            'napari, or scan_shape=(Rx, Ry)).'
        )
    shape = tuple(int(n) for n in shape)
    return Found(stacks, DATA, _calibration(h5, side), shape, notes=notes)


def candidate(h5: h5py.File) -> Candidate:
    """All frames of the master, for the user to give a scan shape."""
    stacks = [_frames(h5, f'{DATA}/{key}') for key in sorted(h5[DATA])
              if key.startswith('data_')]
    n_frames = sum(s.shape[0] for s in stacks)
    return Candidate(DATA, (n_frames, *stacks[0].shape[1:]),
                     str(stacks[0].dtype), needs_scan_shape=True)


def read_side_file(master) -> dict:
    """The side metadata file's ``STEM Metadata`` attributes as numbers
    (first element of arrays; strings read as their leading number), or
    {} when there is no side file. Opened read-only."""
    path = side_file(master)
    if path == Path(master) or not path.is_file():
        return {}
    try:
        with h5py.File(path, 'r') as h5:
            group = h5.get(SIDE_GROUP)
            attrs = dict(group.attrs) if group is not None else {}
    except OSError as error:
        raise ValueError(
            f'side metadata file {path}: cannot read it ({error})') from None
    return {key: value for key, value in
            ((k, _number(v)) for k, v in attrs.items()) if value is not None}


def _frames(h5: h5py.File, name: str) -> CheckedDataset:
    stack = dataset_at(h5, name)
    if stack.ndim != 3:
        raise ValueError(
            f'dataset {name}: expected frames (N, Qx, Qy), got {stack.shape}')
    return CheckedDataset(stack, where(h5, name))


def _side_shape(master, side: dict, n_frames: int):
    """(lines, positions per line) from the side file, checked against the
    frames; None without a side file."""
    if 'NumPixelsX' not in side or 'NumPixelsY' not in side:
        return None
    shape = (int(side['NumPixelsY']), int(side['NumPixelsX']))
    if shape[0] * shape[1] != n_frames:
        raise ValueError(
            f'the side metadata file {side_file(master)} gives a '
            f'{shape[0]}×{shape[1]} scan '
            f'(NumPixelsY × NumPixelsX) but the data files hold {n_frames} '
            'frames: give the scan shape (scan_shape=(Rx, Ry))'
        )
    return shape


def _attribute_shape(h5: h5py.File):
    for group in (DATA, '/entry'):
        if 'scan_shape' in h5[group].attrs:
            return tuple(np.asarray(h5[group].attrs['scan_shape']).tolist())
    return None


def _guess_shape(h5: h5py.File, n_frames: int):
    """Lines × positions per line from ntrigger × nimages, or a square
    scan when that says nothing about lines; None when neither fits."""
    lines = _scalar(h5, f'{SPECIFIC}/ntrigger')
    per_line = _scalar(h5, f'{SPECIFIC}/nimages')
    if lines and per_line and lines * per_line == n_frames:
        if lines > 1 and per_line > 1:
            return int(lines), int(per_line)
        side = math.isqrt(n_frames)
        if side > 1 and side * side == n_frames:
            return side, side
    return None


def _calibration(h5: h5py.File, side: dict) -> Calibration:
    pixel = _scalar(h5, f'{DETECTOR}/x_pixel_size')
    camera = _camera_length_m(side.get('Camera Length'))
    distance = camera or _scalar(h5, f'{DETECTOR}/detector_distance')
    q_pixel = 1e3 * pixel / distance if pixel and distance else None
    step = side.get('Pixel Size')
    return Calibration(
        energy=(_high_tension_ev(side.get('High Tension'))
                or _scalar(h5, f'{SPECIFIC}/photon_energy')),
        q_pixel_mrad=q_pixel,
        scan_step=10.0 * step if step else None,  # nm -> Å
    )


def _high_tension_ev(value) -> float | None:
    """High Tension in eV: microscopes run at 10-1300 kV, so a value below
    10 000 is in kV, above in V."""
    if not value:
        return None
    return value * 1e3 if value < 1e4 else value


def _camera_length_m(value) -> float | None:
    """Camera length in m: STEM camera lengths are 1 cm to a few m, so a
    value of 10 or more is in mm."""
    if not value:
        return None
    return value * 1e-3 if value >= 10 else value


def _number(value) -> float | None:
    """A positive finite number from an attribute, else None."""
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    if isinstance(value, str):
        match = re.match(r'\s*([-+0-9.eE]+)', value)
        value = match[1] if match else None
    try:
        number = float(np.asarray(value, dtype=float).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def _scalar(h5: h5py.File, name: str) -> float | None:
    item = h5.get(name)
    if not isinstance(item, h5py.Dataset) or item.size != 1:
        return None
    return _number(item[()])
