"""Saving results with the parameters that made them, and reading them back.

A results file is HDF5 with the root attribute ``napari_phase_results``
(format version). Each result image is a group ``layers/<index>`` holding
``data`` and, as attributes, its layer type, its layer attributes (name,
scale and translate in Å, units, colormap, …) and its napari-phase
metadata (the full parameter record, calibration, source) as JSON.
Reading gives back the same napari layer-data tuples.

Writes are atomic: a temporary file in the target directory, renamed over
the target only once complete; an existing file is only replaced with
``force=True``.

napari's "Save layers" with this plugin (:func:`write_layers`) writes 2D
results as above, and a datacube or vacuum-probe layer, saved on its own,
as EMD 1.0 (the scan as (Rx, Ry, Qx, Qy) with its calibration, not the
display order), which the reader and ``napari-phase run`` read back as
the same cube.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from ..compute.backend import to_numpy
from ..compute.calibration import Calibration

#: Root attribute that marks a napari-phase results file (format version).
MARKER = 'napari_phase_results'
FORMAT_VERSION = 1
META = 'napari_phase'
LAYER_TYPES = ('image', 'labels')
#: Layer attributes kept in the file (others are display state).
KEPT_ATTRS = (
    'name', 'scale', 'translate', 'units', 'axis_labels', 'colormap',
    'contrast_limits', 'gamma', 'blending', 'opacity', 'visible',
)


class ResultsError(ValueError):
    """Results cannot be saved or read (says which file and why)."""


def save_results(path, results, force: bool = False,
                 recipe: dict | None = None) -> Path:
    """Write ``results`` (napari layer-data tuples ``(data, attrs, type)``,
    or objects with ``.layer_data()`` returning them) to the HDF5 file
    ``path``, atomically, with the ``recipe`` that made them (if given).
    An existing ``path`` is replaced only with ``force=True``. Returns the
    path written."""
    layers = as_layer_tuples(results)
    with atomic_target(path, force) as temporary, \
            h5py.File(temporary, 'w') as file:
        file.attrs[MARKER] = FORMAT_VERSION
        if recipe is not None:
            file.attrs['recipe'] = json.dumps(encode(recipe))
        group = file.create_group('layers')
        for index, layer in enumerate(layers):
            _write_layer(group.create_group(f'{index:03d}'), *layer)
    return Path(path)


@contextmanager
def atomic_target(path, force: bool = False):
    """A temporary file name in ``path``'s directory to write to: it
    replaces ``path`` when the block ends, and is removed if the block
    raises (or is interrupted), so ``path`` is never left half-written.
    An existing ``path`` is replaced only with ``force=True``."""
    path = Path(path)
    _check_target(path, force)
    try:
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f'.{path.name}.', suffix='.part'
        )
    except OSError as error:
        raise ResultsError(
            f'Cannot write in directory {str(path.parent)!r}: '
            f'{error.strerror}'
        ) from None
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp made it 0o600
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def saved_recipe(path) -> dict | None:
    """The recipe stored with the results in ``path`` (None if none)."""
    with h5py.File(path, 'r') as file:
        text = file.attrs.get('recipe')
    return None if text is None else decode(json.loads(text))


def load_results(path) -> list[tuple]:
    """The layer-data tuples saved in a results file, in saved order."""
    path = Path(path)
    if not is_results_file(path):
        raise ResultsError(f'{str(path)!r} is not a napari-phase results file')
    with h5py.File(path, 'r') as file:
        groups = file['layers']
        return [_read_layer(groups[key]) for key in sorted(groups)]


def is_results_file(path) -> bool:
    """True for an HDF5 file written by :func:`save_results` (never
    raises)."""
    try:
        with h5py.File(path, 'r') as file:
            return MARKER in file.attrs
    except (OSError, TypeError, ValueError):
        return False


def results_reader(path):
    """napari reader branch: a function reading ``path`` as results, or
    ``None`` when it is no results file."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    return load_results if is_results_file(path) else None


def write_layers(path: str, layers: list) -> list[str]:
    """npe2 writer for image layers (napari asked before overwriting): a
    datacube or vacuum-probe layer alone as EMD 1.0, 2D results as a
    results file; anything else is refused with a message."""
    from .emd import write_emd, write_emd_probe

    special = [(layer, layer[1].get('metadata', {}).get(META, {}))
               for layer in layers if np.ndim(layer[0]) == 4]
    special = [(layer, found) for layer, found in special
               if found.get('datacube') is not None
               or found.get('probe') is not None]
    if special:
        (_, attrs, _), found = special[0]
        what = 'a datacube' if found.get('datacube') is not None \
            else 'a vacuum probe'
        if len(layers) > 1:
            raise ResultsError(
                f'Layer {attrs["name"]!r} is {what}: save it on its own '
                '(select only it, then File > Save Selected Layers) to write '
                'it as EMD 1.0.')
        with atomic_target(path, force=True) as temporary:
            if found.get('datacube') is not None:
                write_emd(temporary, found['datacube'])
            else:
                write_emd_probe(temporary, found['probe'],
                                found['calibration'])
        return [str(path)]
    flat = [attrs['name'] for data, attrs, _ in layers if np.ndim(data) != 2]
    if flat:
        raise ResultsError(
            f'Layer(s) {", ".join(map(repr, flat))} are not 2D images: '
            'napari-phase saves 2D results, or a datacube layer on its own.')
    return [str(save_results(path, layers, force=True))]


def as_layer_tuples(results) -> list[tuple]:
    """Normalise ``results``: one or several layer-data tuples, or result
    objects with ``.layer_data()`` (a tuple or a list of them), such as a
    :class:`~napari_phase.pipeline.PipelineResult`."""
    if isinstance(results, tuple) and _is_layer_tuple(results) or hasattr(
        results, 'layer_data'
    ):
        results = [results]
    layers = []
    for item in results:
        if hasattr(item, 'layer_data'):
            layers.extend(as_layer_tuples(item.layer_data()))
        elif _is_layer_tuple(item):
            data, attrs, *kind = item
            layers.append((data, dict(attrs), kind[0] if kind else 'image'))
        else:
            raise ResultsError(
                f'cannot save {type(item).__name__}: expected a layer-data '
                'tuple (data, attrs, type) or a napari-phase result'
            )
    if not layers:
        raise ResultsError('no results to save')
    return layers


def _is_layer_tuple(item) -> bool:
    return (isinstance(item, tuple) and 2 <= len(item) <= 3
            and isinstance(item[1], dict))


def _check_target(path: Path, force: bool) -> None:
    if not path.parent.is_dir():
        raise ResultsError(
            f'Cannot write {str(path)!r}: directory {str(path.parent)!r} '
            'does not exist'
        )
    if path.is_dir():
        raise ResultsError(f'Cannot write {str(path)!r}: it is a directory')
    if path.exists() and not force:
        raise ResultsError(
            f'{str(path)!r} exists: not overwritten (use force=True, or '
            '--force on the command line)'
        )


def _write_layer(group, data, attrs, layer_type):
    name = attrs.get('name', group.name)
    if layer_type not in LAYER_TYPES:
        raise ResultsError(
            f'layer {name!r}: cannot save a {layer_type} layer as a result '
            f'(only {", ".join(LAYER_TYPES)})'
        )
    group.create_dataset('data', data=to_numpy(data), compression='gzip')
    group.attrs['layer_type'] = layer_type
    kept = {key: attrs[key] for key in KEPT_ATTRS if key in attrs}
    if 'units' in kept and kept['units'] is not None:
        kept['units'] = [str(unit) for unit in np.ravel(kept['units'])]
    if not isinstance(kept.get('colormap', ''), str):
        kept.pop('colormap')
    group.attrs['attrs'] = json.dumps(encode(kept))
    meta = attrs.get('metadata', {}).get(META, {})
    group.attrs['metadata'] = json.dumps(encode(_saveable(meta)))


def _read_layer(group) -> tuple:
    attrs = decode(json.loads(group.attrs['attrs']))
    meta = decode(json.loads(group.attrs['metadata']))
    attrs['metadata'] = {META: meta}
    return group['data'][()], attrs, str(group.attrs['layer_type'])


def _saveable(meta: dict) -> dict:
    """napari-phase metadata without live objects: a datacube is
    replaced by its source (the file it came from)."""
    meta = dict(meta)
    cube = meta.pop('datacube', None)
    if cube is not None:
        meta.setdefault('source', cube.source)
        meta.setdefault('calibration', cube.calibration)
    return meta


def encode(value):
    """JSON-safe form of a parameter record that :func:`decode` inverts
    exactly (tuples, numpy arrays and scalars, Calibration)."""
    if isinstance(value, dict):
        bad = [key for key in value if not isinstance(key, str)]
        if bad:
            raise ResultsError(f'parameter keys must be strings, got {bad}')
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return {'__tuple__': [encode(item) for item in value]}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, Calibration):
        return {'__calibration__': encode(value.to_dict())}
    if isinstance(value, np.ndarray):
        return {'__array__': encode(value.tolist()), 'dtype': str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise ResultsError(
        f'cannot save a parameter of type {type(value).__name__}: {value!r}'
    )


def decode(value):
    """Inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if '__tuple__' in value:
        return tuple(decode(item) for item in value['__tuple__'])
    if '__calibration__' in value:
        return Calibration.from_dict(decode(value['__calibration__']))
    if '__array__' in value:
        return np.asarray(decode(value['__array__']), dtype=value['dtype'])
    return {key: decode(item) for key, item in value.items()}
