"""DECTRIS NeXus master files (ARINA, QUADRO, EIGER).

The master file links ``/entry/data/data_000001``, ``data_000002``... to
frame stacks (N, Qx, Qy) in separate data files, compressed with
bitshuffle-LZ4 (HDF5 filter 32008) or LZ4 (32004), which hdf5plugin
decodes. The frames are concatenated and reshaped to the scan in raster
order (fast axis Ry). The scan shape comes from, in this order: the
``scan_shape`` argument; a ``scan_shape`` attribute on ``/entry/data`` or
``/entry``; ``detectorSpecific/ntrigger`` lines × ``nimages`` positions per
line. The beam energy is ``detectorSpecific/photon_energy`` (eV); the
detector pixel is ``x_pixel_size / detector_distance`` (both in m).
"""

from __future__ import annotations

import h5py
import numpy as np

from ..compute.calibration import Calibration
from .generic import external_file
from .read import Found

DATA = '/entry/data'
DETECTOR = '/entry/instrument/detector'
SPECIFIC = f'{DETECTOR}/detectorSpecific'


def is_master(h5: h5py.File) -> bool:
    """True when ``/entry/data`` holds ``data_NNNNNN`` frame stacks."""
    group = h5.get(DATA)
    return isinstance(group, h5py.Group) and any(
        key.startswith('data_') for key in group
    )


def find_datacube(h5: h5py.File, scan_shape=None) -> Found:
    """The frame stacks, their scan shape and the calibration."""
    stacks = [_frames(h5, key) for key in sorted(h5[DATA])
              if key.startswith('data_')]
    n_frames = sum(s.shape[0] for s in stacks)
    shape = scan_shape or _scan_shape(h5, n_frames)
    if shape is None:
        raise ValueError(
            f'dataset {DATA}: {n_frames} frames of {stacks[0].shape[1:]} '
            'pixels, and the file does not say the scan shape: give it, '
            f'e.g. read_datacube(path, scan_shape=(Rx, Ry)) with Rx·Ry = '
            f'{n_frames}'
        )
    return Found(stacks, DATA, _calibration(h5), tuple(int(n) for n in shape))


def _frames(h5: h5py.File, key: str) -> h5py.Dataset:
    name = f'{DATA}/{key}'
    link = h5.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        target = external_file(h5, link)
        if not target.is_file():
            raise ValueError(
                f'dataset {name}: its data file {link.filename!r} is missing '
                f'(looked for {target})'
            )
    stack = h5[name]
    if not isinstance(stack, h5py.Dataset) or stack.ndim != 3:
        raise ValueError(
            f'dataset {name}: expected frames (N, Qx, Qy), got '
            f'{getattr(stack, "shape", "a group")}'
        )
    return stack


def _scan_shape(h5: h5py.File, n_frames: int):
    for where in (DATA, '/entry'):
        if 'scan_shape' in h5[where].attrs:
            return tuple(np.asarray(h5[where].attrs['scan_shape']).tolist())
    lines = _scalar(h5, f'{SPECIFIC}/ntrigger')
    per_line = _scalar(h5, f'{SPECIFIC}/nimages')
    if lines and per_line and lines > 1 and lines * per_line == n_frames:
        return int(lines), int(per_line)
    return None


def _calibration(h5: h5py.File) -> Calibration:
    pixel = _scalar(h5, f'{DETECTOR}/x_pixel_size')
    distance = _scalar(h5, f'{DETECTOR}/detector_distance')
    q_pixel = 1e3 * pixel / distance if pixel and distance else None
    return Calibration(
        energy=_scalar(h5, f'{SPECIFIC}/photon_energy'),
        q_pixel_mrad=q_pixel,
    )


def _scalar(h5: h5py.File, name: str) -> float | None:
    item = h5.get(name)
    if not isinstance(item, h5py.Dataset) or item.size != 1:
        return None
    value = float(np.asarray(item[()]).ravel()[0])
    return value if np.isfinite(value) and value > 0 else None
