"""Calibration of EMD 0.x arrays (Prismatic, py4DSTEM before 0.13, fpd):
dim vectors beside the data.

An EMD 0.x array group holds the data and ``dim1``..``dimN``, one
coordinate vector per axis (1-based), with attributes ``name`` and
``units``: Prismatic writes ``/4DSTEM_simulation/data/datacubes/
CBED_array_depth0000/{datacube, dim1..dim4}`` with R in ``'[Å]'`` or
``'[n_m]'`` and Q in ``'[Å^-1]'`` or ``'[n_m^-1]'``; fpd writes
``/fpd_expt/fpd_data/{data, dim1..dim5}``. The scan step and detector
pixel are the differences of the first two coordinates. Prismatic keeps
the beam energy (kV) and probe semiangle (mrad) in its simulation
parameters (attributes ``E`` and ``sa``); with the energy a Q pixel in
Å⁻¹ becomes mrad.
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np

from ..compute.calibration import Calibration
from . import units

#: Prismatic's simulation parameters (attributes).
PRISMATIC = '/4DSTEM_simulation/metadata/metadata_0/original/' \
    'simulation_parameters'


def calibration_of(dset: h5py.Dataset, drop_axis: int | None) -> Calibration:
    """Calibration from the dim vectors beside ``dset`` (empty when there
    are none); ``drop_axis``: a singleton axis that is not part of the
    cube."""
    dims = _dims(dset)
    if dims is None:
        return Calibration()
    if drop_axis is not None:
        del dims[drop_axis]
    energy, semiangle = _prismatic(dset.file)
    scan = _step(dims[0]) if len(dims) == 4 else (None, None)
    q_size, q_units = _step(dims[-1])
    q_pixel = units.angle_mrad(q_size, q_units, energy)
    if q_pixel is None and units.kind(q_units) == 'reciprocal':
        warnings.warn(
            f'{dset.file.filename}: detector pixel {q_size:g} {q_units} '
            'cannot be converted to mrad without the beam energy: left '
            'unknown (q_pixel_mrad = q·λ·1000)', UserWarning, stacklevel=5)
    return Calibration(
        scan_step=units.length_A(*scan), q_pixel_mrad=q_pixel,
        energy=energy, semiangle=semiangle,
    )


def _dims(dset: h5py.Dataset) -> list | None:
    """The dim vectors of ``dset``'s axes, or None when its group has none
    that match."""
    group = dset.parent
    dims = [group.get(f'dim{n + 1}') for n in range(dset.ndim)]
    if not all(isinstance(d, h5py.Dataset) and d.ndim == 1 for d in dims):
        return None
    if [d.shape[0] for d in dims] != list(dset.shape):
        return None
    return dims


def _step(dim: h5py.Dataset) -> tuple[float | None, str]:
    """(coordinate step, units) of a dim vector; (None, units) when it
    has no numeric step."""
    label = units.normalize(dim.attrs.get('units', ''))
    if dim.shape[0] < 2 or dim.dtype.kind not in 'uif':
        return None, label
    step = float(dim[1] - dim[0])
    return (abs(step) if np.isfinite(step) and step else None), label


def _prismatic(h5: h5py.File) -> tuple[float | None, float | None]:
    """(beam energy eV, probe semiangle mrad) of a Prismatic file."""
    params = h5.get(PRISMATIC)
    if not isinstance(params, h5py.Group):
        return None, None
    energy = _positive(params.attrs.get('E'))
    return (energy * 1e3 if energy else None,
            _positive(params.attrs.get('sa')))


def _positive(value) -> float | None:
    try:
        number = float(np.asarray(value).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return None
    return number if np.isfinite(number) and number > 0 else None
