"""py4DSTEM / emdfile EMD 1.0 files: read and write, with h5py only.

Layout (what emdfile writes and py4DSTEM 0.14 reads)::

    /                       attrs emd_group_type='file', version_major=1,
                            version_minor=0, UUID, authoring_program/user
    /<root>                 emd_group_type='root', python_class='Root'
      metadatabundle/       emd_group_type='metadatabundle'
        calibration/        emd_group_type='metadata', python_class=
                            'Calibration'; one scalar dataset per key, each
                            with attr type in {'number','bool','string',
                            'None', ...}: R_pixel_size, R_pixel_units ('A',
                            'nm', 'pixels'), Q_pixel_size, Q_pixel_units
                            ('mrad', 'A^-1', 'pixels'), qx0_mean, qy0_mean,
                            QR_rotation_degrees, QR_flip, ...
      <array>/              emd_group_type='array', python_class='DataCube'
                            (or 'DiffractionSlice', 'Probe', 'Array')
        data                the array; attr units
        dim0..dimN-1        [start, step] (2 values when linear); attrs
                            name, units

A py4DSTEM ``Probe`` is a stack (probe, kernel) whose last dim is labelled
``'_labels_'``. napari-phase also stores its whole calibration (energy,
C1, aberrations...) as JSON in a ``napari_phase`` metadata group; py4DSTEM
ignores it, and its own calibration fields win when both are present.
"""

from __future__ import annotations

import json
import uuid
import warnings
from numbers import Number

import h5py
import numpy as np

from ..compute.backend import iterate_scan_rows, to_numpy
from ..compute.calibration import Calibration
from ..compute.datacube import DataCube
from . import units
from .checked import CheckedDataset
from .found import Candidate, Found
from .hdf5 import where


def is_emd(h5: h5py.File) -> bool:
    """True for an EMD 1.x file (root attributes)."""
    return (
        h5.attrs.get('emd_group_type') == 'file'
        and h5.attrs.get('version_major') == 1
    )


def array_groups(h5: h5py.File) -> list[h5py.Group]:
    """Every EMD array group (one with a ``data`` dataset)."""
    groups = []

    def visit(name, item):
        if (
            isinstance(item, h5py.Group)
            and item.attrs.get('emd_group_type') in ('array', 'custom_array')
            and isinstance(item.get('data'), h5py.Dataset)
        ):
            groups.append(item)

    h5.visititems(visit)
    return groups


def describe(h5: h5py.File) -> str | None:
    """'datacube' (a 4D array), 'probe' (a 2D pattern) or None."""
    groups = array_groups(h5)
    if any(_rank(g) == 4 for g in groups):
        return 'datacube'
    if any(_rank(g) == 2 for g in groups):
        return 'probe'
    return None


def find_datacube(h5: h5py.File, inner: str | None) -> Found:
    """The DataCube array (``inner``, or the DataCube / largest 4D array)
    and the calibration of its tree."""
    if inner is not None:
        group = _group_at(h5, inner)
    else:
        cubes = [g for g in array_groups(h5) if _rank(g) == 4]
        if not cubes:
            raise ValueError(
                'no 4D DataCube in this EMD file; arrays: '
                + _listing(array_groups(h5))
            )
        group = max(cubes, key=_preference('DataCube'))
    data = group['data']
    return Found([CheckedDataset(data, where(h5, data.name))], data.name,
                 calibration_of(group))


def candidates(h5: h5py.File) -> list[Candidate]:
    """The 4D arrays of the file, the one read by default first."""
    cubes = [g for g in array_groups(h5) if _rank(g) == 4]
    cubes.sort(key=_preference('DataCube'), reverse=True)
    return [Candidate(g.name, tuple(g['data'].shape), str(g['data'].dtype))
            for g in cubes]


def find_probe(h5: h5py.File, inner: str | None):
    """(data dataset, Calibration) of a vacuum probe: ``inner``, or the
    Probe / largest 2D array of the file."""
    if inner is not None:
        group = _group_at(h5, inner)
    else:
        probes = [g for g in array_groups(h5) if _rank(g) == 2]
        if not probes:
            raise ValueError(
                'no 2D diffraction image (vacuum probe) in this EMD file; '
                'arrays: ' + _listing(array_groups(h5))
            )
        group = max(probes, key=_preference('Probe'))
    return group['data'], calibration_of(group)


def probe_slice(group: h5py.Group) -> int:
    """Index of the 'probe' slice of a stacked (labelled) array."""
    labels = [_text(s) for s in group[f'dim{group["data"].ndim - 1}'][()]]
    return labels.index('probe') if 'probe' in labels else 0


def calibration_of(group: h5py.Group) -> Calibration:
    """Calibration of the EMD tree holding ``group``: its root's
    ``calibration`` metadata (+ napari-phase's own record), else the
    array's dim vectors."""
    root = group.file[group.name.split('/')[1]]
    bundle = root.get('metadatabundle', {})
    base = {}
    if 'napari_phase' in bundle:
        base = json.loads(read_metadata(bundle['napari_phase'])['calibration'])
    if 'calibration' in bundle:
        fields = read_metadata(bundle['calibration'])
    else:
        fields = _fields_from_dims(group)
    return Calibration.from_dict(base | from_py4dstem(fields, base))


def from_py4dstem(fields: dict, base: dict) -> dict:
    """Our calibration values from py4DSTEM calibration ``fields``
    (units converted; ``base`` supplies the energy for Å⁻¹)."""
    values = {
        'scan_step': _length_A(fields.get('R_pixel_size'),
                               fields.get('R_pixel_units')),
        'q_pixel_mrad': _angle_mrad(fields.get('Q_pixel_size'),
                                    fields.get('Q_pixel_units'),
                                    base.get('energy')),
        'rotation_deg': _number(fields.get('QR_rotation_degrees')),
        'semiangle': _number(fields.get('convergence_semiangle_mrad')),
        'probe_radius': _number(fields.get('convergence_semiangle_pixels')),
    }
    if isinstance(fields.get('QR_flip'), bool | np.bool_):
        values['transpose'] = bool(fields['QR_flip'])
    centre = [_number(fields.get(k)) for k in ('qx0_mean', 'qy0_mean')]
    if None not in centre:
        values['probe_center'] = tuple(centre)
    return {k: v for k, v in values.items() if v is not None}


def read_metadata(group: h5py.Group) -> dict:
    """The entries of an emdfile Metadata group that are datasets (an
    entry without emdfile's ``type`` tag is read by its value)."""
    values = {}
    for key, item in group.items():
        if not isinstance(item, h5py.Dataset):
            continue
        value = item[()]
        kind = _text(item.attrs.get('type', _kind_of(value)))
        if kind == 'None':
            values[key] = None
        elif kind == 'string':
            values[key] = _text(value)
        elif kind in ('number', 'bool'):
            values[key] = value.item()
        else:
            values[key] = np.asarray(value)
    return values


def write_emd(path, cube: DataCube, name: str = 'datacube') -> None:
    """Write ``cube`` as a py4DSTEM 0.14 DataCube in an EMD 1.0 file
    (overwrites ``path``). Lazy data is written block by block."""
    cal = cube.calibration
    with h5py.File(path, 'w') as h5:
        root = _new_file(h5, f'{name}_root', cal, target=f'/{name}')
        group = _node(root, name, 'array', 'DataCube')
        data = group.create_dataset('data', shape=cube.data.shape,
                                    dtype=cube.data.dtype)
        for rows, block in iterate_scan_rows(cube.data):
            data[rows] = to_numpy(block)
        data.attrs.create('units', 'pixel intensity')
        q0 = cal.probe_center or (0.0, 0.0)
        r_size, r_units = _r_pixel(cal)
        q_size, q_units = _q_pixel(cal)
        dims = [
            ('Rx', 0.0, r_size, r_units), ('Ry', 0.0, r_size, r_units),
            ('Qx', -q0[0], q_size, q_units), ('Qy', -q0[1], q_size, q_units),
        ]
        _write_dims(group, dims)


def write_emd_probe(path, probe, calibration: Calibration,
                    name: str = 'vacuum_probe') -> None:
    """Write a 2D vacuum probe as a py4DSTEM DiffractionSlice, with the
    calibration in its root (overwrites ``path``)."""
    probe = to_numpy(probe)
    if probe.ndim != 2:
        raise ValueError(f'a vacuum probe is 2D, got shape {probe.shape}')
    with h5py.File(path, 'w') as h5:
        root = _new_file(h5, f'{name}_root', calibration, target=None)
        group = _node(root, name, 'array', 'DiffractionSlice')
        group.create_dataset('data', data=probe).attrs.create(
            'units', 'intensity')
        q_size, q_units = _q_pixel(calibration)
        _write_dims(group, [('Qx', 0.0, q_size, q_units),
                            ('Qy', 0.0, q_size, q_units)])


def _new_file(h5, root_name, cal: Calibration, target):
    """EMD header, root group and its calibration metadata."""
    h5.attrs.create('emd_group_type', 'file')
    h5.attrs.create('version_major', 1)
    h5.attrs.create('version_minor', 0)
    h5.attrs.create('UUID', str(uuid.uuid4()))
    h5.attrs.create('authoring_program', 'napari-phase')
    h5.attrs.create('authoring_user', '')
    root = _node(h5, root_name, 'root', 'Root')
    bundle = root.create_group('metadatabundle')
    bundle.attrs.create('emd_group_type', 'metadatabundle')
    _write_metadata(bundle, 'calibration', 'Calibration',
                    to_py4dstem(cal, target))
    _write_metadata(bundle, 'napari_phase', 'Metadata',
                    {'calibration': json.dumps(cal.to_dict())})
    return root


def to_py4dstem(cal: Calibration, target: str | None) -> dict:
    """py4DSTEM calibration fields for ``cal`` (unknown ones left out)."""
    r_size, r_units = _r_pixel(cal)
    q_size, q_units = _q_pixel(cal)
    fields = {
        'R_pixel_size': r_size, 'R_pixel_units': r_units,
        'Q_pixel_size': q_size, 'Q_pixel_units': q_units,
        'QR_rotation_degrees': cal.rotation_deg,
        'QR_flip': cal.transpose,
        'convergence_semiangle_mrad': cal.semiangle,
        'convergence_semiangle_pixels': cal.probe_radius,
    }
    if cal.probe_center is not None:
        fields['qx0_mean'], fields['qy0_mean'] = cal.probe_center
    if target is not None:
        fields['_target_paths'] = [target]
    return {k: v for k, v in fields.items() if v is not None}


def _r_pixel(cal):
    known = cal.scan_step is not None
    return (float(cal.scan_step), 'A') if known else (1.0, 'pixels')


def _q_pixel(cal):
    known = cal.q_pixel_mrad is not None
    return (float(cal.q_pixel_mrad), 'mrad') if known else (1.0, 'pixels')


def _node(parent, name, group_type, python_class):
    group = parent.create_group(name)
    group.attrs.create('emd_group_type', group_type)
    group.attrs.create('python_class', python_class)
    return group


def _write_dims(group, dims):
    for n, (name, start, step, unit) in enumerate(dims):
        vector = np.array([start, start + step])
        dim = group.create_dataset(f'dim{n}', data=vector)
        dim.attrs.create('name', name)
        dim.attrs.create('units', unit)


def _write_metadata(bundle, name, python_class, values: dict):
    """An emdfile Metadata group: one typed dataset per entry."""
    group = bundle.create_group(name)
    group.attrs.create('emd_group_type', 'metadata')
    group.attrs.create('python_class', python_class)
    for key, value in values.items():
        if isinstance(value, str):
            item = group.create_dataset(key, data=value.encode('utf-8'))
            kind = 'string'
        elif isinstance(value, bool):
            item = group.create_dataset(key, data=value, dtype=bool)
            kind = 'bool'
        elif isinstance(value, Number):
            item = group.create_dataset(key, data=value, dtype=type(value))
            kind = 'number'
        else:  # a list of strings
            item = group.create_group(key)
            item.attrs['length'] = len(value)
            for i, text in enumerate(value):
                item.create_dataset(str(i), data=text.encode('utf-8'))
            kind = 'list_of_strings'
        item.attrs['type'] = kind.encode('utf-8')


def _fields_from_dims(group: h5py.Group) -> dict:
    """py4DSTEM-like calibration fields from an array's dim vectors."""
    def step(n):
        dim = group.get(f'dim{n}')
        if dim is None or dim.shape[0] < 2:
            return None, None
        return float(dim[1] - dim[0]), _text(dim.attrs.get('units', ''))

    rank = _rank(group)
    fields = {}
    if rank == 4:
        fields['R_pixel_size'], fields['R_pixel_units'] = step(0)
    fields['Q_pixel_size'], fields['Q_pixel_units'] = step(rank - 2)
    return fields


def _length_A(size, unit):
    if size is None or units.kind(unit) == 'pixels':
        return None
    if units.kind(unit) != 'length':
        warnings.warn(f'R pixel units {unit!r} not understood (expected a '
                      'length such as A or nm): scan step left unknown',
                      UserWarning, stacklevel=6)
        return None
    return units.length_A(size, unit)


def _angle_mrad(size, unit, energy):
    if size is None or units.kind(unit) == 'pixels':
        return None
    value = units.angle_mrad(size, unit, energy)
    if value is None:
        reciprocal = units.kind(unit) == 'reciprocal'
        warnings.warn(
            f'Q pixel size {size} {unit} cannot be converted to mrad'
            + (' without the beam energy' if reciprocal else '')
            + ': detector pixel size left unknown (q_pixel_mrad = q·λ·1000).',
            UserWarning, stacklevel=6,
        )
    return value


def _kind_of(value) -> str:
    if isinstance(value, bytes | str):
        return 'string'
    return 'number' if np.ndim(value) == 0 else 'array'


def _number(value):
    return float(value) if isinstance(value, Number | np.number) else None


def _text(value) -> str:
    return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def is_stack(group: h5py.Group) -> bool:
    """True for a labelled stack of arrays (e.g. a py4DSTEM Probe)."""
    last = group.get(f'dim{group["data"].ndim - 1}')
    return last is not None and _text(last.attrs.get('name', '')) == '_labels_'


def _rank(group: h5py.Group) -> int:
    """Rank of an EMD array (a labelled stack counts one axis less)."""
    return group['data'].ndim - is_stack(group)


def _preference(python_class: str):
    """Sort key: the named py4DSTEM class first, then the largest."""
    def key(group):
        named = _text(group.attrs.get('python_class', '')) == python_class
        return (named, group['data'].size)

    return key


def _group_at(h5: h5py.File, inner: str) -> h5py.Group:
    """The array group at ``inner`` (its ``data`` dataset also works)."""
    item = h5.get(inner)
    if isinstance(item, h5py.Dataset) and item.name.endswith('/data'):
        item = item.parent
    if not isinstance(item, h5py.Group) or 'data' not in item:
        raise ValueError(
            f'dataset {inner}: not an EMD array in this file; arrays: '
            + _listing(array_groups(h5))
        )
    return item


def _listing(groups) -> str:
    return ', '.join(
        f'{g.name} ({_text(g.attrs.get("python_class", "?"))}, '
        f'{g["data"].shape})' for g in groups
    ) or 'none'
