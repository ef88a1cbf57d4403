"""Checking a reconstruction's parameters before any heavy work, filling
them from the calibration or from the run it continues."""

from __future__ import annotations

import numpy as np

from ..backend import is_dask
from ..datacube import DataCube

#: |defocus| above this (Å) is taken for a unit mistake.
MAX_DEFOCUS = 1e5
#: What a continued run takes from the run it continues (the model and
#: its frame); given again, each must be the same.
MODEL = ('defocus', 'rotation_deg', 'transpose', 'aberrations',
         'object_type', 'num_probes', 'num_slices', 'slice_thickness',
         'object_padding_px', 'vacuum_probe')
#: Defaults of the model parameters for a new run.
MODEL_DEFAULTS = {'object_type': 'complex', 'num_probes': 1,
                  'num_slices': 1}
PROBE_APERTURES = (None, 'amplitude', 'support')


def checked_parameters(cube: DataCube, vacuum_probe, params: dict,
                       previous) -> dict:
    """Validate everything; fill calibration values, or the model of
    ``previous`` (a PtychoResult to continue from)."""
    if not isinstance(cube, DataCube):
        raise TypeError(f'ptychography needs a DataCube, got {type(cube)}')
    params['vacuum_probe'] = vacuum_probe is not None
    if previous is not None:
        _take_model(previous, params)
    _check_calibration(cube, vacuum_probe, params)
    for key, value in MODEL_DEFAULTS.items():
        if params[key] is None:
            params[key] = value
    _check_shapes(cube, vacuum_probe)
    _check_choices(params)
    _check_numbers(params)
    params['storage'] = params['storage'] or (
        'lazy' if is_dask(cube.data) else params['device']
    )
    params['calibration'] = cube.calibration.to_dict()
    return params


def _take_model(previous, params):
    """The model parameters of ``previous``, or an error naming the one
    asked differently."""
    if 'iterations_done' not in getattr(previous, 'parameters', {}):
        raise TypeError('continue_from must be a PtychoResult of '
                        'napari_phase.ptychography')
    changes = model_changes(previous.parameters, params)
    if changes:
        key, (before, asked) = next(iter(changes.items()))
        raise ValueError(
            f'continue_from was reconstructed with {key}={before!r}; '
            f'this run asks {asked!r}. A continued run keeps the '
            'model: leave it out, or start a new reconstruction.'
        )
    for key in MODEL:
        if params[key] is None:
            params[key] = previous.parameters.get(key)
    if params['seed'] is None:
        params['seed'] = previous.parameters['seed']


def model_changes(previous: dict, params: dict) -> dict:
    """``{key: (before, asked)}`` for each model parameter (:data:`MODEL`)
    that ``params`` asks differently from ``previous`` (a result's
    parameters); a key left out or None in ``params`` keeps its value
    (``vacuum_probe``, whether a vacuum probe is given, is always
    compared)."""
    changes = {}
    for key in MODEL:
        asked = params.get(key)
        before = previous.get(key)
        if ((asked is not None or key == 'vacuum_probe')
                and not _same(asked, before)):
            changes[key] = (before, asked)
    return changes


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        return (a is not None and b is not None
                and np.array_equal(np.asarray(a), np.asarray(b)))
    return a == b


def _check_calibration(cube, vacuum_probe, params):
    cal = cube.calibration
    needed = ['scan_step', 'q_pixel_mrad', 'energy']
    if vacuum_probe is None:
        needed.append('semiangle')
    cal.require(*needed, purpose='ptychography')
    for name, source in (('defocus', 'C1'), ('rotation_deg', 'rotation_deg'),
                         ('transpose', 'transpose')):
        if params[name] is None:
            cal.require(source, purpose=f'ptychography ({name})')
            value = getattr(cal, source)
            params[name] = -value if name == 'defocus' else value
    params['defocus'] = float(params['defocus'])
    params['rotation_deg'] = float(params['rotation_deg'])
    params['transpose'] = bool(params['transpose'])
    if abs(params['defocus']) > MAX_DEFOCUS:
        raise ValueError(
            f'defocus {params["defocus"]:g} Å is implausibly large (> '
            f'{MAX_DEFOCUS:g} Å): is it in nm or m instead of Å?'
        )
    abers = dict(cal.aberrations if params['aberrations'] is None
                 else params['aberrations'])
    if 'C10' in abers:
        raise ValueError('give the defocus as defocus= (Å, = −C10), not as '
                         'aberrations["C10"]')
    params['aberrations'] = abers


def _check_shapes(cube, vacuum_probe):
    qx, qy = cube.detector_shape
    if qx != qy:
        raise ValueError(
            f'{cube.source}: ptychography needs a square detector, got '
            f'{qx}×{qy}: crop or pad the patterns to a square'
        )
    if vacuum_probe is not None and tuple(vacuum_probe.shape) != (qx, qy):
        raise ValueError(
            f'the vacuum probe has shape {tuple(vacuum_probe.shape)} but '
            f'{cube.source} has {qx}×{qy} detector pixels'
        )


def _check_choices(params):
    if params['object_type'] not in ('complex', 'potential'):
        raise ValueError("object_type must be 'complex' or 'potential', "
                         f'not {params["object_type"]!r}')
    if params['storage'] not in (None, 'cpu', 'lazy', params['device']):
        raise ValueError(
            "storage must be None, 'cpu' (keep the amplitudes in host "
            "memory) or 'lazy' (read each batch from the data), not "
            f"{params['storage']!r}"
        )
    if params['probe_aperture'] not in PROBE_APERTURES:
        raise ValueError(
            "probe_aperture must be None, 'amplitude' (the Fourier "
            "amplitude fixed to the initial aperture) or 'support' (zero "
            f"outside it), not {params['probe_aperture']!r}"
        )


def _check_numbers(params):
    for name, low in (('num_iter', 0), ('max_batch_size', 1),
                      ('num_probes', 1), ('num_slices', 1),
                      ('fix_probe_iterations', 0),
                      ('position_correction_start', 0)):
        if int(params[name]) != params[name] or params[name] < low:
            raise ValueError(f'{name} must be an integer ≥ {low}')
    if params['num_slices'] > 1 and not (params['slice_thickness'] or 0) > 0:
        raise ValueError('a multislice object (num_slices > 1) needs '
                         'slice_thickness > 0 (Å)')
    for name in ('step_size', 'position_step', 'max_position_update'):
        if not params[name] > 0:
            raise ValueError(f'{name} must be > 0')
    for name in ('gaussian_sigma', 'tv_weight', 'kz_regularization',
                 'q_lowpass', 'q_highpass'):
        if params[name] is not None and params[name] < 0:
            raise ValueError(f'{name} must be ≥ 0')
    if not 0 <= params['normalization_min'] <= 1:
        raise ValueError('normalization_min must be in [0, 1]')
    if params['seed'] is None:
        params['seed'] = 0
