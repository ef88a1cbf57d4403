"""The recipe: every parameter of a session, to replay it headlessly.

A recipe is a plain, versioned dict, written as YAML or JSON::

    napari_phase_recipe: 1
    seed: 0
    device: cpu
    calibration: {scan_step: 2.39 Å, semiangle: 22.6 mrad, energy: 300 kV}
    steps:
      calibrate: {thresh_upper: 0.7}
      virtual: {}    # BF and ADF; or drawn ones: {detectors: [...]}
      dpc: {mask: threshold, mask_threshold: 0.8}
      parallax: {...}
      direct: {method: ssb}
      ptychography: {num_iter: 16, ...}

A step that is present runs (in the order of :data:`STEP_ORDER`). Values
are numbers in the unit the key states (Å, mrad, degrees, px, eV) or
strings with a unit (``"40 nm"``, ``"-15 deg"``, ``"300 kV"``) converted
to it; unknown keys, unknown steps and a unit of the wrong kind raise
:class:`RecipeError` naming the key.

Detectors drawn in the window are written with their geometry: a list of
shapes ``{type: ellipse | rectangle | polygon, role: add | subtract,
vertices: [[qx, qy], ...]}`` in detector pixels (an ellipse by the four
corners of its bounding box), as ``virtual: {detectors: [{name: BF,
shapes: [...]}, ...]}`` and as the DPC mask ``{mask: detector,
mask_shapes: [...]}``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

#: Format version written in ``napari_phase_recipe``.
VERSION = 1
STEP_ORDER = ('calibrate', 'virtual', 'dpc', 'parallax', 'direct',
              'ptychography')


class RecipeError(ValueError):
    """A recipe that cannot be run as written (says which key and why)."""


#: Units by kind: factor to the canonical unit (first entry).
UNITS = {
    'length': {'Å': 1.0, 'A': 1.0, 'angstrom': 1.0, 'nm': 10.0,
               'pm': 0.01},
    'angle': {'deg': 1.0, '°': 1.0, 'degrees': 1.0, 'rad': 180 / math.pi,
              'mrad': 0.18 / math.pi},
    'detector angle': {'mrad': 1.0, 'rad': 1000.0},
    'pixels': {'px': 1.0, 'pixels': 1.0},
    'energy': {'eV': 1.0, 'keV': 1e3, 'kV': 1e3, 'V': 1.0},
    'spatial frequency': {'1/Å': 1.0, '1/A': 1.0, '1/nm': 0.1},
}
CANONICAL = {kind: next(iter(units)) for kind, units in UNITS.items()}


#: The type of a switch that may also carry a number (False, True or 3).
BOOL_OR_INT = (bool, int)


@dataclass(frozen=True)
class Param:
    """One recipe key: its type, its unit kind (or None) and the values
    allowed (for strings). ``None`` is always allowed (= default / fit)."""

    type: type = float
    unit: str | None = None
    choices: tuple = ()
    pair: bool = False  # two values (e.g. a centre in px)
    items: str | None = None  # a list of mappings of this step's keys
    check: object = None  # a function (value, key) -> checked value


def _p(unit=None, type=float, **kw):
    return Param(type, unit, **kw)


SHAPE_TYPES = ('ellipse', 'rectangle', 'polygon')


def _mappings(value, key: str, keys: tuple, what: str):
    """``(where, item)`` for each mapping of the list ``value`` (keys
    among ``keys``), or :class:`RecipeError` naming ``key``."""
    if not isinstance(value, list | tuple) or not value:
        raise RecipeError(f'{key}: expected a list of {what}, got {value!r}')
    for index, item in enumerate(value):
        where = f'{key}[{index}]'
        if not isinstance(item, dict):
            raise RecipeError(f'{where}: expected a mapping with '
                              f'{", ".join(keys)}, got {item!r}')
        _no_unknown(item, set(keys), where)
        yield where, item


def _shapes(value, key: str) -> list[dict]:
    """A drawn detector's shapes, checked, vertices as floats (px)."""
    checked = []
    for where, shape in _mappings(value, key, ('type', 'role', 'vertices'),
                                  'shapes'):
        kind = _scalar(Param(str, choices=SHAPE_TYPES), shape.get('type'),
                       f'{where}.type')
        role = _scalar(Param(str, choices=('add', 'subtract')),
                       shape.get('role', 'add'), f'{where}.role')
        vertices = shape.get('vertices')
        if not isinstance(vertices, list | tuple) or len(vertices) < 2:
            raise RecipeError(f'{where}.vertices: expected a list of [qx, '
                              f'qy] points (px), got {vertices!r}')
        points = [_value(Param(pair=True), point, f'{where}.vertices')
                  for point in vertices]
        checked.append({'type': kind, 'role': role, 'vertices': points})
    return checked


def _detectors(value, key: str) -> list[dict]:
    """Drawn detectors: names and shapes, checked."""
    return [{'name': _scalar(Param(str), detector.get('name'),
                             f'{where}.name'),
             'shapes': _shapes(detector.get('shapes'), f'{where}.shapes')}
            for where, detector in _mappings(value, key, ('name', 'shapes'),
                                             'detectors')]


#: What each step accepts (the pipeline's keyword arguments).
SCHEMA = {
    'calibration': {
        'scan_step': _p('length'),
        'q_pixel_mrad': _p('detector angle'),
        'energy': _p('energy'),
        'semiangle': _p('detector angle'),
        'probe_center': _p('pixels', pair=True),
        'probe_radius': _p('pixels'),
        'rotation_deg': _p('angle'),
        'transpose': _p(type=bool),
        'C1': _p('length'),
    },
    'calibrate': {
        'pattern': _p(type=str, choices=('vacuum_probe', 'mean')),
        'thresh_lower': _p(),
        'thresh_upper': _p(),
        'n': _p(type=int),
    },
    'virtual': {
        'detectors': _p(type=list, check=_detectors),
    },
    'dpc': {
        'mask': _p(type=str, choices=('none', 'bf', 'threshold',
                                      'detector')),
        'mask_threshold': _p(),
        'mask_shapes': _p(type=list, check=_shapes),
        'rotation_deg': _p('angle'),
        'transpose': _p(type=bool),
        'flip_half_turn': _p(type=bool),
        'fit_region': _p(type=str, choices=('auto', 'mask',
                                            'whole detector', 'bright field',
                                            'dark field')),
        'descan': _p(type=str, choices=('plane', 'constant', 'none')),
        'padding_factor': _p(),
        'max_iter': _p(type=int),
        'step_size': _p(),
        'tolerance': _p(),
    },
    'parallax': {
        'threshold_intensity': _p(),
        'edge_blend': _p('pixels'),
        'object_padding_px': _p('pixels', type=int, pair=True),
        'max_alignment_bin': _p('pixels', type=int),
        'min_alignment_bin': _p('pixels', type=int),
        'num_iter_at_min_bin': _p(type=int),
        'cross_correlation_upsample': _p(type=int),
        'regularize_shifts': _p(type=BOOL_OR_INT),
        'upsample_factor': _p(),
        'kde_sigma_px': _p('pixels'),
        'fit_max_order': _p(type=int),
        'defocus_sign': _p(type=int),
        'rotation_deg': _p('angle'),
        'transpose': _p(type=bool),
        'ctf_info_limit': _p('spatial frequency'),
    },
    'direct': {
        'method': _p(type=str, choices=('ssb', 'obf')),
        'vacuum_probe': _p(type=bool),
        'C1': _p('length'),
        'rotation_deg': _p('angle'),
        'transpose': _p(type=bool),
        'edge_blend': _p('pixels'),
        'object_padding_px': _p('pixels', type=int, pair=True),
    },
    'ptychography': {
        'vacuum_probe': _p(type=bool),
        'defocus': _p('length'),
        'rotation_deg': _p('angle'),
        'transpose': _p(type=bool),
        'num_iter': _p(type=int),
        'step_size': _p(),
        'max_batch_size': _p(type=int),
        'fix_probe': _p(type=bool),
        'fix_probe_iterations': _p(type=int),
        'probe_momentum': _p(),
        'normalization_min': _p(),
        'num_probes': _p(type=int),
        'num_slices': _p(type=int),
        'slice_thickness': _p('length'),
        'object_type': _p(type=str, choices=('complex', 'potential')),
        'object_positivity': _p(type=bool),
        'amplitude_max': _p(),
        'probe_centring': _p(type=bool),
        'probe_aperture': _p(type=str, choices=('amplitude', 'support')),
        'gaussian_sigma': _p('length'),
        'q_lowpass': _p('spatial frequency'),
        'q_highpass': _p('spatial frequency'),
        'butterworth_order': _p(),
        'tv_weight': _p(),
        'kz_regularization': _p(),
        'position_correction': _p(type=bool),
        'position_correction_start': _p(type=int),
        'position_step': _p(),
        'max_position_update': _p('length'),
        'position_affine': _p(type=bool),
        'object_padding_px': _p('pixels', type=int, pair=True),
        # Runs that continued this one (Continue), each from the previous
        # result, with their own settings (the model stays the first's).
        'continued': _p(type=list, items='ptychography'),
    },
}
TOP_LEVEL = {
    'napari_phase_recipe': _p(type=int),
    'seed': _p(type=int),
    'device': _p(type=str, choices=('cpu', 'gpu')),
    'source': _p(type=str),
}


def new_recipe(steps: dict | None = None, **top) -> dict:
    """A validated recipe from ``steps`` ({step: {key: value}}) and
    top-level keys (seed, device, calibration, source)."""
    recipe = {'napari_phase_recipe': VERSION} | top
    recipe['steps'] = steps or {}
    return validate(recipe)


def seed_recipe(ptycho_iterations: int = 64, seed: int = 0) -> dict:
    """The reference (py4DSTEM tutorial) workflow: probe fit (thresh_upper
    0.7), virtual BF/ADF, DPC with the mean pattern > 0.8·max as mask,
    parallax (threshold 0.6, edge blend 2, padding 4 px, bins down to 8,
    6 iterations there), ptychography from the vacuum probe with the
    parallax calibration (step 0.5, batches of 512, fixed probe)."""
    return new_recipe({
        'calibrate': {'thresh_upper': 0.7},
        'virtual': {},
        'dpc': {'mask': 'threshold', 'mask_threshold': 0.8},
        'parallax': {'threshold_intensity': 0.6, 'edge_blend': 2,
                     'object_padding_px': [4, 4], 'min_alignment_bin': 8,
                     'num_iter_at_min_bin': 6},
        'ptychography': {'num_iter': ptycho_iterations, 'step_size': 0.5,
                         'max_batch_size': 512, 'fix_probe': True},
    }, seed=seed)


#: A parameter only each method records: how a result's step is known
#: when its parameters carry no ``method``.
STEP_MARKERS = {'dpc': 'descan', 'parallax': 'threshold_intensity',
                'ptychography': 'num_iter'}
#: Calibration fields a session's recipe fixes (the rest is fitted again).
INPUT_CALIBRATION = ('scan_step', 'q_pixel_mrad', 'energy', 'semiangle',
                     'probe_center', 'probe_radius')


def step_of(parameters: dict) -> str | None:
    """The recipe step that made a result with these ``parameters``."""
    method = parameters.get('method')
    if method in SCHEMA:
        return method
    if method in SCHEMA['direct']['method'].choices:
        return 'direct'
    return next((step for step, key in STEP_MARKERS.items()
                 if key in parameters), None)


def recipe_from_parameters(
    records: list[dict], calibration: dict, device: str | None = None
) -> dict:
    """The recipe that replays a session: ``records`` are the parameter
    records of its results (``layer.metadata['napari_phase']
    ['parameters']``), ``calibration`` the dataset's calibration (its
    input fields, probe fit included, are written as given, so the replay
    starts from the same calibration). A result whose step cannot be
    replayed raises :class:`RecipeError`."""
    steps, seeds = {'virtual': {}}, set()
    detectors = [_detector(parameters) for parameters in records
                 if step_of(parameters) == 'virtual']
    if detectors:
        steps['virtual'] = {'detectors': detectors}
    for parameters in records:
        step = step_of(parameters)
        if step in (None, 'virtual'):
            continue
        replayed = parameters.get('recipe') or _replayable(step, parameters)
        if steps.get(step, replayed) != replayed:
            raise RecipeError(f'two {step} results with different '
                              'parameters: export one of them')
        steps[step] = replayed
        if 'seed' in parameters:
            seeds.add(int(parameters['seed']))
    if len(seeds) > 1:
        raise RecipeError(f'results made with different seeds {sorted(seeds)}')
    fixed = {key: _plain(calibration[key]) for key in INPUT_CALIBRATION
             if calibration.get(key) is not None}
    top = {'calibration': fixed, 'seed': seeds.pop() if seeds else 0}
    if device:
        top['device'] = device
    return new_recipe(steps, **top)


def _detector(parameters: dict) -> dict:
    """A virtual image's detector, as the recipe draws it again."""
    if not parameters.get('shapes'):
        name = parameters.get('detector')
        raise RecipeError(f'the virtual detector {name!r} was recorded '
                          'without its shapes')
    return {'name': parameters['detector'],
            'shapes': _plain(parameters['shapes'])}


def _replayable(step: str, parameters: dict) -> dict:
    """The recipe step that makes the same result again: the recorded
    inputs (``iterations_done`` when a run was stopped early; a continued
    ptychography as its first run and the ``continued`` ones)."""
    if step == 'ptychography' and len(parameters.get('runs', ())) > 1:
        first, *later = (_replayable(step, run)
                         for run in parameters['runs'])
        if 'iterations_done' in parameters:  # the last run was stopped
            before = sum(run['num_iter'] for run in [first, *later[:-1]])
            later[-1]['num_iter'] = int(parameters['iterations_done'])
            later[-1]['num_iter'] -= before
        return first | {'continued': [
            {key: value for key, value in run.items()
             if key not in CONTINUED_MODEL} for run in later]}
    values = {key: _plain(parameters[key]) for key in SCHEMA[step]
              if key in parameters}
    if step == 'dpc':
        values.update(_dpc_mask(parameters))
    if step == 'ptychography' and 'iterations_done' in parameters:
        values['num_iter'] = int(parameters['iterations_done'])
    return values


#: What a continued ptychography run takes from the first (its model):
#: left out of the recipe's ``continued`` entries.
CONTINUED_MODEL = ('vacuum_probe', 'defocus', 'rotation_deg', 'transpose',
                   'num_probes', 'num_slices', 'slice_thickness',
                   'object_type', 'object_padding_px')


def _dpc_mask(parameters: dict) -> dict:
    mask = parameters.get('mask')
    if mask in (None, 'whole detector', 'none'):
        return {'mask': 'none'}
    if mask in ('bf', 'threshold'):
        return {'mask': mask}
    if mask == 'detector' and parameters.get('mask_shapes'):
        return {'mask': 'detector',
                'mask_shapes': _plain(parameters['mask_shapes'])}
    if 'mask_threshold' in parameters:
        return {'mask': 'threshold'}
    raise RecipeError(
        f'the DPC mask ({mask}) was recorded without its shapes and cannot '
        'be written in a recipe: use the whole detector, the BF disk, a '
        'threshold or a detector drawn in the virtual detector tool'
    )


def _plain(value):
    """Tuples, arrays and numpy values as plain lists and numbers."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if hasattr(value, 'tolist'):
        return value.tolist()
    return value.item() if hasattr(value, 'item') else value


def validate(recipe: dict) -> dict:
    """A checked copy of ``recipe`` with every value in its canonical unit
    (numbers), keys in :data:`SCHEMA`; raise :class:`RecipeError`."""
    if not isinstance(recipe, dict):
        raise RecipeError(
            f'a recipe is a mapping, got {type(recipe).__name__}'
        )
    version = recipe.get('napari_phase_recipe')
    if version != VERSION:
        raise RecipeError(
            f'not a napari-phase recipe of version {VERSION} '
            f'(napari_phase_recipe: {version!r})'
        )
    allowed = set(TOP_LEVEL) | {'calibration', 'steps'}
    _no_unknown(recipe, allowed, 'the recipe')
    checked = {key: _value(TOP_LEVEL[key], value, key)
               for key, value in recipe.items() if key in TOP_LEVEL}
    checked['calibration'] = _section(
        'calibration', recipe.get('calibration') or {}
    )
    steps = recipe.get('steps') or {}
    if not isinstance(steps, dict):
        raise RecipeError('steps must be a mapping {step: {key: value}}')
    _no_unknown(steps, set(STEP_ORDER), 'steps')
    checked['steps'] = {
        step: _section(step, steps[step] or {})
        for step in STEP_ORDER if step in steps
    }
    return checked


def _section(name: str, values) -> dict:
    if not isinstance(values, dict):
        raise RecipeError(f'{name}: expected a mapping of parameters, got '
                          f'{values!r}')
    schema = SCHEMA[name]
    _no_unknown(values, set(schema), name)
    return {key: _value(schema[key], value, f'{name}.{key}')
            for key, value in values.items()}


def _item(step: str, values, key: str) -> dict:
    """One mapping of a list of ``step`` settings (no nested lists)."""
    if isinstance(values, dict) and 'continued' in values:
        raise RecipeError(f'{key}: a continued run cannot itself hold '
                          "'continued' runs: list them all in one list")
    try:
        return _section(step, values)
    except RecipeError as error:
        raise RecipeError(f'{key}: {error}') from None


def _no_unknown(values: dict, known: set, where: str) -> None:
    unknown = sorted(set(values) - known, key=str)
    if unknown:
        raise RecipeError(
            f'{where}: unknown key(s) {", ".join(map(str, unknown))}; '
            f'known: {", ".join(sorted(known)) or "none"}'
        )


def _value(param: Param, value, key: str):
    if value is None:
        return None
    if param.pair:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise RecipeError(f'{key}: expected two values, got {value!r}')
        return [_scalar(param, item, key) for item in value]
    return _scalar(param, value, key)


def _scalar(param: Param, value, key: str):
    if param.type is BOOL_OR_INT and isinstance(value, bool):
        return value
    if param.type is bool:
        if not isinstance(value, bool):
            raise RecipeError(f'{key}: expected true or false, got {value!r}')
        return value
    if param.type is str:
        if not isinstance(value, str) or (
            param.choices and value not in param.choices
        ):
            expected = (f'one of {", ".join(param.choices)}'
                        if param.choices else 'a text')
            raise RecipeError(f'{key}: expected {expected}, got {value!r}')
        return value
    if param.check is not None:
        return param.check(value, key)
    if param.type is list:
        if not isinstance(value, list | tuple):
            raise RecipeError(f'{key}: expected a list, got {value!r}')
        if param.items:
            return [_item(param.items, item, f'{key}[{k}]')
                    for k, item in enumerate(value)]
        return list(value)
    number = _number(param.unit, value, key)
    if param.type in (int, BOOL_OR_INT):
        if number != int(number):
            raise RecipeError(f'{key}: expected a whole number, got {value!r}')
        return int(number)
    return number


_QUANTITY = re.compile(r'^\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*(\S*)\s*$')


def _number(unit_kind: str | None, value, key: str) -> float:
    """``value`` (a number, or a string "number unit") in the canonical
    unit of ``unit_kind``."""
    if isinstance(value, bool):
        raise RecipeError(f'{key}: expected a number, got {value!r}')
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    if match is None:
        raise RecipeError(f'{key}: expected a number, got {value!r}')
    number, unit = float(match[1]), match[2]
    if not unit:
        return number
    if unit_kind is None:
        raise RecipeError(f'{key}: takes a plain number, not {value!r}')
    factors = UNITS[unit_kind]
    if unit not in factors:
        wrong = next((k for k, u in UNITS.items() if unit in u), None)
        what = _a(wrong) if wrong else 'an unknown unit'
        raise RecipeError(
            f'{key}: {value!r} is {what}; expected {_a(unit_kind)} in '
            f'{CANONICAL[unit_kind]} (or {", ".join(list(factors)[1:])})'
        )
    return number * factors[unit]


def _a(noun: str) -> str:
    return f'an {noun}' if noun[0] in 'aeiou' else f'a {noun}'


def read_recipe(path) -> dict:
    """A validated recipe from a .yaml/.yml or .json file, or the recipe
    saved with results in an .h5 file (to replay them)."""
    path = Path(path)
    if path.suffix.lower() in ('.h5', '.hdf5'):
        from .io.results import is_results_file, saved_recipe

        values = saved_recipe(path) if is_results_file(path) else None
        if values is None:
            raise RecipeError(f'{str(path)!r} holds no napari-phase recipe')
        return validate(values)
    try:
        text = path.read_text()
    except OSError as error:
        raise RecipeError(f'cannot read recipe {str(path)!r}: '
                          f'{error.strerror}') from None
    try:
        if path.suffix.lower() == '.json':
            values = json.loads(text)
        else:
            values = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise RecipeError(f'{str(path)!r} is not valid: {error}') from None
    try:
        return validate(values)
    except RecipeError as error:
        raise RecipeError(f'{path.name}: {error}') from None


def write_recipe(path, recipe: dict, force: bool = False) -> Path:
    """Write a validated ``recipe`` as YAML (.yaml/.yml) or JSON (.json),
    atomically; an existing file is replaced only with ``force=True``."""
    from .io.results import atomic_target

    path = Path(path)
    recipe = validate(recipe)
    if path.suffix.lower() == '.json':
        text = json.dumps(recipe, indent=2) + '\n'
    elif path.suffix.lower() in ('.yaml', '.yml'):
        text = yaml.safe_dump(recipe, sort_keys=False)
    else:
        raise RecipeError(f'{str(path)!r}: a recipe is .yaml, .yml or .json')
    with atomic_target(path, force) as temporary:
        Path(temporary).write_text(text)
    return path
