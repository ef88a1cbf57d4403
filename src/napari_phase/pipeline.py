"""The headless pipeline: a DataCube (+ vacuum probe) and a recipe in,
every result on one physical grid out.

Steps run in :data:`~napari_phase.recipe.STEP_ORDER` (calibrate → virtual
BF/ADF → DPC → parallax → direct → ptychography), those present in the
recipe and asked for. They share ONE :class:`Calibration`, the cube's: the
probe fit writes the probe centre, radius and Q pixel into it, parallax its
rotation, transpose, C1 and aberrations, and direct ptychography and
ptychography read them from it, as the widgets do.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np

from .compute.backend import to_numpy
from .compute.calibration import Calibration
from .compute.datacube import DataCube
from .compute.detectors import (
    adf_mask,
    bf_mask,
    ellipse_mask,
    polygon_mask,
    virtual_images,
)
from .compute.direct import (
    direct_ptychography_steps,
    prepare_direct,
    refine_aberrations,
)
from .compute.dpc import dpc
from .compute.geometry import wrap_half_turn
from .compute.halfturn import adopt, differs, settled
from .compute.parallax import parallax_steps
from .compute.probe import fit_probe, q_pixel_from_semiangle
from .compute.ptycho import ptychography_iter
from .compute.reduce import run_steps
from .compute.score import quality
from .io.layers import phase_scale, real_space_layer
from .recipe import STEP_ORDER, RecipeError, validate

PTYCHO_DEFAULT_ITERATIONS = inspect.signature(
    ptychography_iter).parameters['num_iter'].default

#: Method names accepted on the command line → recipe steps.
METHODS = {'dpc': 'dpc', 'parallax': 'parallax', 'direct': 'direct',
           'ptycho': 'ptychography', 'ptychography': 'ptychography'}


@dataclass(frozen=True)
class Progress:
    """``fraction`` (0–1) of ``step`` done."""

    step: str
    fraction: float


@dataclass
class PipelineResult:
    """What a run made: the method results by step, the real-space layers
    (napari layer-data tuples, Å grid) and the calibration they used."""

    calibration: Calibration
    results: dict = field(default_factory=dict)
    layers: list = field(default_factory=list)
    recipe: dict = field(default_factory=dict)

    def layer_data(self) -> list:
        """The layers, for :func:`napari_phase.save_results`."""
        return self.layers



def steps_to_run(recipe: dict, methods=None) -> list[str]:
    """The recipe's steps, restricted to ``methods`` (names of
    :data:`METHODS`; calibration and virtual images always run)."""
    steps = list(recipe['steps'])
    if methods is None:
        return steps
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise RecipeError(f'unknown method(s) {", ".join(unknown)}; choose '
                          'from dpc, parallax, direct, ptycho')
    wanted = {METHODS[m] for m in methods} | {'calibrate', 'virtual'}
    missing = sorted(wanted - set(steps) - {'calibrate', 'virtual'})
    if missing:
        raise RecipeError(f'the recipe has no {", ".join(missing)} step')
    return [step for step in steps if step in wanted]


def pipeline(
    cube: DataCube, recipe: dict, probe=None, methods=None
) -> Generator[Progress, None, PipelineResult]:
    """Run ``recipe`` on ``cube`` step by step: yields :class:`Progress`,
    returns a :class:`PipelineResult`. Stop iterating to cancel."""
    recipe = validate(recipe)
    steps = steps_to_run(recipe, methods)
    cal = cube.calibration
    cal.update(**{key: value for key, value in recipe['calibration'].items()
                  if value is not None})
    run = PipelineResult(cal, recipe=recipe)
    context = {'cube': cube, 'probe': probe, 'recipe': recipe, 'run': run}
    for step in STEP_ORDER:
        if step in steps:
            yield Progress(step, 0.0)
            running = STEPS[step](recipe['steps'][step], **context)
            if inspect.isgenerator(running):  # reports its own progress
                yield from running
            yield Progress(step, 1.0)
    _show(run, cube.source)
    return run


def run_pipeline(
    cube: DataCube,
    recipe: dict,
    probe=None,
    methods=None,
    progress: Callable[[Progress], None] | None = None,
) -> PipelineResult:
    """:func:`pipeline` run to the end; ``progress`` gets every
    :class:`Progress`."""
    return run_steps(pipeline(cube, recipe, probe, methods), progress)


def _fractions(step: str, generator):
    """Progress of a method's own generator of fractions; its result."""
    while True:
        try:
            fraction = next(generator)
        except StopIteration as done:
            return done.value
        yield Progress(step, float(fraction))


def _calibrate(params, cube, probe, run, **_):
    which = params.get('pattern') or (
        'mean' if probe is None else 'vacuum_probe')
    if which == 'vacuum_probe' and probe is None:
        raise RecipeError('calibrate.pattern is vacuum_probe but no probe '
                          'was given (--probe PROBE.h5)')
    pattern = (probe if which == 'vacuum_probe'
               else cube.mean_and_max_pattern()[0])
    kwargs = {key: value for key, value in params.items()
              if key != 'pattern' and value is not None}
    fit = fit_probe(to_numpy(pattern), **kwargs)
    cal = run.calibration
    cal.require('semiangle', purpose='the detector pixel size')
    cal.update(probe_center=fit.center, probe_radius=fit.radius,
               q_pixel_mrad=q_pixel_from_semiangle(cal.semiangle, fit.radius))
    run.results['calibrate'] = fit


#: Mask of each kind of drawn shape (vertices in detector px).
SHAPE_MASKS = {'ellipse': ellipse_mask, 'rectangle': polygon_mask,
               'polygon': polygon_mask}


def drawn_mask(shapes: list[dict], detector_shape) -> np.ndarray:
    """float32 mask (detector px) of a detector drawn as ``shapes``, each
    ``{'type': 'ellipse' | 'rectangle' | 'polygon', 'role': 'add' |
    'subtract', 'vertices': [[qx, qy], ...]}`` in detector px (napari's
    shape data: an ellipse by its 4 bounding-box corners): the union of
    the 'add' shapes minus the union of the 'subtract' shapes."""
    union = {'add': np.zeros(detector_shape, np.float32),
             'subtract': np.zeros(detector_shape, np.float32)}
    for shape in shapes:
        kind = shape['type']
        if kind not in SHAPE_MASKS:
            raise ValueError(f'a {kind} encloses no area: draw an ellipse, '
                             'rectangle or polygon')
        mask = SHAPE_MASKS[kind](detector_shape, shape['vertices'])
        role = union[shape.get('role', 'add')]
        np.maximum(role, mask, out=role)
    mask = union['add'] * (1 - union['subtract'])
    if not mask.any():
        raise ValueError('the detector covers no pixel (its inner part '
                         'removes everything)')
    return mask


def _virtual(params, cube, run, **_):
    """The drawn detectors of the recipe, else the BF and ADF presets."""
    cal = run.calibration
    shape = cube.detector_shape
    drawn = params.get('detectors')
    if drawn:
        names = [detector['name'] for detector in drawn]
        masks = [drawn_mask(detector['shapes'], shape) for detector in drawn]
        records = [{'shapes': detector['shapes']} for detector in drawn]
    else:
        names = ['BF', 'ADF']
        masks = [bf_mask(cal, shape), adf_mask(cal, shape)]
        records = [{}, {}]
    images = virtual_images(cube, masks)
    run.results['virtual'] = images
    parameters = {'source': cube.source, 'calibration': cal.to_dict()}
    for name, image, record in zip(names, images, records, strict=True):
        run.layers.append(real_space_layer(
            image, f'virtual {name}', cal.scan_step,
            parameters | record | {'detector': name}, colormap='gray'))


def _dpc(params, cube, run, **_):
    kwargs = {k: v for k, v in params.items()
              if k not in ('mask', 'mask_threshold', 'mask_shapes')
              and v is not None}
    cal = run.calibration
    result = adopt(cal, dpc(cube, mask=_dpc_mask(params, cube, cal),
                            **kwargs))
    if cal.rotation_deg is None:
        cal.update(**result.calibration_update())
    run.results['dpc'] = result


def _dpc_mask(params, cube, cal):
    kind = params.get('mask') or 'bf'
    if kind == 'bf':
        return 'bf'
    if kind == 'threshold':
        mean = to_numpy(cube.mean_and_max_pattern()[0])
        return mean > (params.get('mask_threshold') or 0.8) * mean.max()
    if kind == 'detector':
        if not params.get('mask_shapes'):
            raise RecipeError('dpc.mask is detector but dpc.mask_shapes '
                              'gives no shape')
        return drawn_mask(params['mask_shapes'], cube.detector_shape)
    return None


def _parallax(params, cube, probe, recipe, run, **_):
    kwargs = _method_kwargs(params, recipe)
    result = yield from _fractions('parallax', parallax_steps(cube, **kwargs))
    result = adopt(run.calibration, result)
    run.results['parallax'] = result
    run.calibration.update(**result.calibration_update())
    if result.rotation_deg is None and run.calibration.C1 is None:
        _defocus_from_ssb(cube, probe, run, recipe.get('device') or 'cpu')
    _check_dpc_transpose(run, cube.source)


def _check_dpc_transpose(run, source) -> None:
    """Warn when DPC fitted the other transpose than parallax's, which
    the calibration keeps: with astigmatism comparable to the defocus
    the masked CoMs can favour the transpose under which |C1| > |A1|,
    however clear their curl (docs/conventions.md)."""
    shown, kept = run.results.get('dpc'), run.calibration.transpose
    if shown is None or kept is None or shown.transpose == kept:
        return
    warnings.warn(
        f'{source}: DPC fitted transpose {shown.transpose} (clarity '
        f'{shown.transpose_clarity:.2f} on the {shown.rotation_region}); '
        f'the calibration keeps parallax\'s, {kept}: DPC\'s CoM cannot '
        'tell the transpose when the astigmatism is comparable to the '
        'defocus. The DPC phase is shown at its own fit; run DPC again '
        'with the calibration\'s rotation and transpose to see it there',
        stacklevel=2)


#: Half-width (Å) of the C1 search about 0 when parallax finds none: the
#: independent suite's |C1| reach 431 Å; on its small data SSB's score
#: peaks within 3 % of the mid-specimen C1 from this span.
SSB_C1_SPAN = 1000.0
#: Least relative gain in SSB's score for the astigmatism to be kept: on
#: the independent suite +27 % with C12 = 100 Å, ≤ 1.1 % without.
SSB_C12_GAIN = 0.05


def _defocus_from_ssb(cube, probe, run, device) -> None:
    """Stand-in for parallax's C1 when it found none: the C1 (and C12
    where it pays) maximising direct ptychography's SSB score at the
    calibration's rotation and transpose (DPC's), written into the
    calibration; the SSB phase's evidence takes part in the half-turn
    decision like any method's. Nothing when there is no rotation."""
    cal = run.calibration
    if cal.rotation_deg is None:
        return
    vacuum = None if probe is None else to_numpy(probe)
    with warnings.catch_warnings():  # the calibration has no C1, yet
        warnings.simplefilter('ignore', RuntimeWarning)
        prepared = prepare_direct(cube, vacuum_probe=vacuum, device=device)
    defocus = refine_aberrations(prepared, aberrations={'C10': 0.0},
                                 span=SSB_C1_SPAN)
    astigmatic = refine_aberrations(prepared, ('C10', 'C12'),
                                    defocus.aberrations, span=SSB_C1_SPAN)
    found = (astigmatic if astigmatic.score
             > (1 + SSB_C12_GAIN) * defocus.score else defocus)
    result = adopt(cal, prepared.result(found.aberrations))
    cal.update(C1=result.C1, aberrations={
        key: result.aberrations[key] for key in ('C12', 'phi12')
        if key in found.aberrations})
    run.results['C1 from SSB'] = result
    doubts = _dpc_doubts(run)
    warnings.warn(
        f'{cube.source}: parallax found no parallax; C1 = {result.C1:.0f} Å'
        + (f', C12 = {result.aberrations["C12"]:.0f} Å' if 'C12' in
           found.aberrations else '')
        + ' come from refining direct ptychography (SSB) at the '
        f'calibration\'s rotation {cal.rotation_deg:.1f}° and transpose '
        f'{cal.transpose} ({cal.half_turn})'
        + (f'. That rotation and transpose are DPC\'s, in doubt '
           f'({"; ".join(doubts)}), and no method checked them: every '
           'result may be wrong; give the rotation and transpose (the '
           'recipe\'s calibration, or the DPC step\'s forced rotation and '
           'transpose)' if doubts else ''),
        stacklevel=2)


def _dpc_doubts(run) -> list[str]:
    """DPC's doubts about its transpose, when the calibration holds its
    fit (not one the user gave)."""
    shown, cal = run.results.get('dpc'), run.calibration
    if shown is None or shown.transpose != cal.transpose or abs(
            wrap_half_turn(shown.rotation_deg - cal.rotation_deg)) > 1e-6:
        return []
    return shown.doubts


def _direct(params, cube, probe, recipe, run, **_):
    kwargs = _method_kwargs(params, recipe, exclude=('vacuum_probe',))
    if params.get('vacuum_probe', True) and probe is not None:
        kwargs['vacuum_probe'] = to_numpy(probe)
    result = yield from _fractions('direct',
                                   direct_ptychography_steps(cube, **kwargs))
    run.results['direct'] = adopt(run.calibration, result)


def _ptychography(params, cube, probe, recipe, run, **_):
    """The recipe's run, then each of its ``continued`` runs from the
    result before (as the widget's Continue does)."""
    use_probe = params.get('vacuum_probe', True) and probe is not None
    vacuum = to_numpy(probe) if use_probe else None
    runs = [params, *(params.get('continued') or [])]
    total = sum(r.get('num_iter') or PTYCHO_DEFAULT_ITERATIONS for r in runs)
    result = None
    for settings in runs:
        kwargs = _method_kwargs(settings, recipe,
                                exclude=('vacuum_probe', 'continued'))
        if result is None:
            kwargs.setdefault('seed', recipe.get('seed') or 0)
        iterations = ptychography_iter(cube, vacuum, continue_from=result,
                                       **kwargs)
        while True:
            try:
                step = next(iterations)
            except StopIteration as end:
                result = end.value
                break
            # iterations count on through continued runs
            yield Progress('ptychography', step.iteration / max(total, 1))
    run.results['ptychography'] = adopt(run.calibration, result)


def _show(run: PipelineResult, source: str) -> None:
    """The methods' layers, once the half-turn is settled: every result at
    the calibration's pair, DPC's and parallax's contrast matched to the
    high-resolution phase (ptychography, else direct) where there is one;
    an uncertain half-turn shows both candidates and warns."""
    cal, results = run.calibration, run.results
    for step, result in results.items():
        if differs(getattr(result, 'rotation_deg', None), cal.rotation_deg):
            results[step] = result.other_half_turn()
    reference = results.get('ptychography') or results.get('direct')
    uncertain = not settled(cal) and any(step in results for step in LAYERS)
    for step, names in LAYERS.items():
        if step not in results:
            continue
        result = results[step]
        sign, contrast = (_contrast(result, reference, cal.scan_step)
                          if step in ('dpc', 'parallax') else (1, ''))
        for name, image, pixel, origin in names(result):
            layer = real_space_layer(
                sign * np.asarray(to_numpy(image)) if 'phase' in name
                else np.asarray(to_numpy(image)), name, pixel,
                result.parameters | _recorded(result, contrast, source),
                origin, colormap='gray')
            run.layers.append(layer)
            if uncertain and name.endswith('phase'):
                run.layers.append(_other_candidate(layer))
    if uncertain:
        warnings.warn(
            f'{source}: the half-turn is uncertain ({cal.half_turn}): the '
            "'(other half-turn)' layers show the other candidate; choose "
            'with defocus_sign in the parallax step or Calibration > '
            'half-turn in the window', stacklevel=2)


#: Each method's layers: (name, image, pixel size Å, origin Å).
LAYERS = {
    'dpc': lambda r: [('DPC phase', r.phase, r.pixel_size, (0.0, 0.0))],
    'parallax': lambda r: [
        (name, getattr(r, key), r.pixel_size[key], r.origin[key])
        for key, name in (('aligned', 'parallax BF'),
                          ('upsampled', 'parallax upsampled'),
                          ('phase', 'parallax phase'))],
    'direct': lambda r: [('direct phase', r.phase, r.pixel_size, r.origin)],
    'ptychography': lambda r: [
        ('ptychography phase', r.phase, r.pixel_size, r.origin),
        ('ptychography amplitude', r.amplitude, r.pixel_size, r.origin)],
}
#: Largest registration shift (fraction of the field) between two phases
#: of one scan: they share the scan frame, so only small offsets.
SAME_SCAN_SHIFT = 0.03
#: Band-passed correlation below which two phases are not compared.
MIN_CONTRAST_R = 0.5
#: Resolution (scan steps) at which the contrasts are compared.
CONTRAST_STEPS = 4


def _contrast(result, reference, scan_step) -> tuple[int, str]:
    """Sign that shows ``result``'s phase with the contrast of the
    high-resolution ``reference`` phase (compared at CONTRAST_STEPS scan
    steps), and
    what was done."""
    if reference is None:
        return 1, ''
    pixel = (result.pixel_size['phase'] if isinstance(result.pixel_size,
                                                        dict)
             else result.pixel_size)
    r = quality(result.phase, reference.phase, pixel, reference.pixel_size,
                CONTRAST_STEPS * scan_step,
                truth_origin=reference.origin,
                max_shift=SAME_SCAN_SHIFT).correlation
    if abs(r) < MIN_CONTRAST_R:
        return 1, (f'r = {r:+.2f} with the high-resolution phase: too '
                   'weak to compare contrasts')
    if r > 0:
        return 1, f'r = {r:+.2f} with the high-resolution phase'
    return -1, (f'r = {r:+.2f} with the high-resolution phase: shown '
                'negated (strong scatterers and defocus can invert CoM and '
                'bright-field contrast at the right half-turn)')


def _recorded(result, contrast: str, source: str) -> dict:
    """What a layer records beyond the method's parameters."""
    return {'source': source, 'half_turn': getattr(result, 'half_turn', ''),
            'contrast': contrast} | phase_scale(result)


def _other_candidate(layer: tuple) -> tuple:
    """A hidden copy of a phase layer at the other half-turn."""
    data, attrs, kind = layer
    return (-data, attrs | {'name': f'{attrs["name"]} (other half-turn)',
                            'visible': False}, kind)


def _method_kwargs(params, recipe, exclude=()) -> dict:
    """Keyword arguments of a method from its recipe step: unset values
    left to the method's defaults, pairs as tuples, the recipe's device."""
    kwargs = {key: tuple(value) if isinstance(value, list) else value
              for key, value in params.items()
              if value is not None and key not in exclude}
    if recipe.get('device'):
        kwargs.setdefault('device', recipe['device'])
    return kwargs


STEPS = {
    'calibrate': _calibrate,
    'virtual': _virtual,
    'dpc': _dpc,
    'parallax': _parallax,
    'direct': _direct,
    'ptychography': _ptychography,
}
