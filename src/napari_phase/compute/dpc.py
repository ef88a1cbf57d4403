"""Differential phase contrast: CoM → rotation → half-turn → phase.

For a thin specimen the centre of mass of each diffraction pattern is
``c = ∇(φ ∗ |P|²) / 2π`` (Å⁻¹, cycles): the gradient of the phase blurred
by the probe intensity (ALGORITHMS.md §1.3). We

1. measure the CoM (masked) in one pass and subtract the descan fit;
2. find the scan rotation θ and transpose, ``c_R = R(θ)·swap?(c_Q)``
   (geometry.detector_to_scan), as the field with the least curl energy
   (its non-gradient part, weighted by each frequency's signal to noise:
   rotation.noise_weight), an exact minimum for both transposes, on the
   detector region (whole, bright field, dark field) whose CoM decides
   the transpose most clearly; a toss between the transposes, or a CoM
   much stronger along one direction than across it (an astigmatic
   probe), is warned of;
3. resolve θ versus θ + 180° (the curl cannot tell them apart) with the
   shared positivity criterion (compute/halfturn.py) applied to the phase
   of the **full-detector** CoM, which equals ∇φ/2π whatever the
   aberrations, so the kept θ is the geometric one that parallax and
   ptychography need. A mask (e.g. the bright-field disk with a defocused
   probe) may invert the CoM contrast: the displayed phase is then
   sign-flipped and the result says so, θ stays geometric;
4. integrate ``2π·c`` (rad/Å) into a phase (radians) by Fourier (Poisson)
   integration on a padded grid, refined iteratively on the scanned region.

py4DSTEM 0.14.18 reports φ/2π ("cycles"); we report radians.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from .backend import ProgressCallback, fft_of, to_numpy, xp_of
from .calibration import Calibration, CalibrationError
from .com import centers_of_mass
from .datacube import DataCube
from .detectors import adf_mask, bf_mask
from .geometry import detector_to_scan, wrap_degrees
from .halfturn import Evidence, evidence, user_choice
from .rotation import (
    ANISOTROPIC,
    TOSS_CLARITY,
    RotationCurve,
    anisotropy,
    best_rotation,
    noise_weight,
    rotation_curve,
    transpose_clarity,
)

#: Largest |forced rotation| accepted (degrees).
MAX_FORCED_ROTATION = 360.0
#: Detector regions whose CoM the rotation may be fit on (fit_region
#: 'auto': the one with the clearest transpose). On the independent suite
#: (docs/validation.md) no one region is right on every specimen: the
#: dark field is on gold at overfocus, low dose and the holey film, the
#: bright field on gold at underfocus. The kept right fits have clarity
#: 2.3–15; no fit with the wrong transpose or > 5° off had more than 1.55
#: (a toss between the transposes), but for astigmatism comparable to the
#: defocus, where the masked CoMs can favour the transpose with
#: |C1| > |A1| clearly and wrongly (docs/conventions.md); the CoM's
#: anisotropy (rotation.ANISOTROPIC) says so, and DPC warns.
FIT_REGIONS = ('whole detector', 'bright field', 'dark field')


@dataclass
class DPCResult:
    """What :func:`dpc` found; every array is numpy, in the scan frame."""

    phase: np.ndarray  # (Rx, Ry) radians, median 0, physical sign
    com: np.ndarray  # (2, Rx, Ry) mrad, (masked) CoM rotated by θ
    rotation_deg: float  # geometric θ: c_R = R(θ)·swap?(c_Q)
    transpose: bool
    rotation_curve: RotationCurve  # of the region the rotation is fit on
    rotation_region: str  # that region: FIT_REGIONS or 'mask'
    transpose_clarity: float  # its two transposes' least curl ratio (≥ 1)
    com_anisotropy: float  # whole-detector or dark-field CoM (≥ 1)
    half_turn_evidence: Evidence  # for the returned θ (full-detector phase)
    mask_sign: int  # −1 when the mask inverts the contrast
    contrast: str  # what the mask did to the contrast ('' without mask)
    empty_patterns: int  # patterns with no counts in the mask
    pixel_size: float  # Å (the scan step)
    wavelength: float  # Å
    iterations: int  # integration iterations of the displayed phase
    error: float  # its final NMSE of the gradient fit
    parameters: dict = field(default_factory=dict)  # every input

    #: The phase is in radians but not on the true scale (measured on the
    #: independent suite, docs/validation.md).
    quantitative = False
    phase_scale = ('not on the true scale: the CoM is that of the '
                   'probe-blurred phase and a mask keeps part of it (slope '
                   '2.3–4.2 with the bright-field mask on 60 Å gold at '
                   '400 Å defocus, about 1 with the whole detector on '
                   'carbon)')

    @property
    def doubts(self) -> list[str]:
        """Why the fitted transpose may be wrong (nothing when given)."""
        if self.parameters.get('transpose') is not None:
            return []
        return _doubts(self.transpose_clarity, self.rotation_region,
                       self.com_anisotropy)

    @property
    def half_turn(self) -> str:
        """How θ vs θ + 180° was chosen."""
        return self.half_turn_evidence.describe()

    def other_half_turn(self) -> DPCResult:
        """The result at θ + 180°: CoM and phase negated."""
        e = self.half_turn_evidence
        return replace(
            self, phase=-self.phase, com=-self.com,
            rotation_deg=wrap_degrees(self.rotation_deg + 180.0),
            half_turn_evidence=Evidence(e.source, -e.skewness, e.z))

    def calibration_update(self) -> dict:
        """The fitted rotation and transpose, for the calibration."""
        return {'rotation_deg': float(self.rotation_deg),
                'transpose': bool(self.transpose)}

    @property
    def com_inv_A(self) -> np.ndarray:
        """The CoM in Å⁻¹ (cycles), scan frame."""
        return self.com * 1e-3 / self.wavelength


def dpc(
    cube: DataCube,
    mask='bf',
    rotation_deg: float | None = None,
    transpose: bool | None = None,
    flip_half_turn: bool | None = None,
    fit_region: str = 'auto',
    descan: str = 'plane',
    padding_factor: float = 2.0,
    max_iter: int = 64,
    step_size: float = 1.0,
    tolerance: float = 1e-3,
    progress: ProgressCallback | None = None,
) -> DPCResult:
    """DPC phase (radians) of ``cube``; the cube is not modified.

    ``mask`` (Qx, Qy) weights the detector for the rotation fit and the
    displayed phase: 'bf' the bright-field disk + 2 px (the whole detector
    while the probe is not calibrated), None the whole detector.
    ``rotation_deg`` / ``transpose`` force the scan
    rotation (degrees, |θ| ≤ 360, taken as the geometric angle) and the
    transpose; None fits them. ``flip_half_turn``: None chooses θ vs
    θ + 180° by phase positivity (unless the rotation is forced); False /
    True force the fitted (or forced) angle / that angle + 180°.
    ``fit_region``: the detector region whose CoM the rotation is fit on,
    'auto' (of FIT_REGIONS, the one that decides the transpose most
    clearly; the whole detector while the probe is not calibrated), one
    of FIT_REGIONS, or 'mask' (``mask``'s region).
    ``descan``: 'plane', 'constant' or 'none'. Integration: grid padded by
    ``padding_factor``, at most ``max_iter`` gradient steps of
    ``step_size`` (1 = one exact Fourier integration of the residual),
    stopping when the NMSE improves by less than ``tolerance`` (relative).
    Unlike py4DSTEM (φ/2π) the phase is in radians.
    """
    cal = cube.calibration
    cal.require('scan_step', 'q_pixel_mrad', 'energy', purpose='DPC')
    _check_forced(rotation_deg, transpose, flip_half_turn)
    if not (padding_factor >= 1 and step_size > 0 and max_iter >= 0):
        raise ValueError(
            'DPC needs padding_factor ≥ 1, step_size > 0 and max_iter ≥ 0; '
            f'got {padding_factor}, {step_size} and {max_iter}'
        )
    report = progress or (lambda fraction: None)
    regions, shown_name = _regions(cube, mask, fit_region)
    mask = regions[shown_name]
    coms = dict(zip(regions, centers_of_mass(
        cube.data, list(regions.values()), descan,
        lambda f: report(0.8 * f))))
    to_inv_A = cal.q_pixel_inv_A
    full = coms['whole detector'].shift * to_inv_A
    shown = coms[shown_name].shift * to_inv_A

    region, com_fit, weight, clarity = _fit_region(
        coms, fit_region, shown_name, to_inv_A)
    curve = rotation_curve(com_fit, weight=weight)
    fitted, swap = best_rotation(com_fit, rotation_deg, transpose, weight)
    integrate = _integrator(
        cal.scan_step, padding_factor, max_iter, step_size, tolerance
    )
    full_phase, iterations, error = integrate(
        detector_to_scan(full, fitted, swap)
    )
    report(0.9)
    rotation, sign, found = _half_turn(
        full_phase, fitted, rotation_deg, flip_half_turn
    )
    full_phase = sign * full_phase

    com = detector_to_scan(shown, rotation, swap)
    if mask is None:
        phase, mask_sign, contrast = full_phase, 1, ''
    else:
        phase, iterations, error = integrate(com)
        mask_sign, contrast = _mask_contrast(phase, full_phase)
        phase = mask_sign * phase
    report(1.0)
    result = DPCResult(
        phase=phase - np.median(phase),
        com=com / to_inv_A * cal.q_pixel_mrad,
        rotation_deg=rotation,
        transpose=swap,
        rotation_curve=curve,
        rotation_region=region,
        transpose_clarity=clarity,
        com_anisotropy=_com_anisotropy(coms),
        half_turn_evidence=found,
        mask_sign=mask_sign,
        contrast=contrast,
        empty_patterns=coms[shown_name].empty,
        pixel_size=cal.scan_step,
        wavelength=cal.wavelength,
        iterations=iterations,
        error=error,
        parameters=dict(
            source=cube.source,
            mask=describe_mask(mask),
            rotation_deg=rotation_deg,
            transpose=transpose if transpose is None else bool(transpose),
            flip_half_turn=flip_half_turn,
            fit_region=fit_region,
            descan=descan,
            padding_factor=padding_factor,
            max_iter=max_iter,
            step_size=step_size,
            tolerance=tolerance,
            calibration=_calibration_used(cal),
        ),
    )
    if result.doubts:
        warnings.warn(
            f'{cube.source}: {"; ".join(result.doubts)}: its rotation and '
            'transpose may be wrong: take them from parallax (it follows in '
            'the pipeline) or give them', stacklevel=2)
    return result


def _check_forced(rotation_deg, transpose, flip_half_turn) -> None:
    if rotation_deg is not None and not (
        np.isfinite(rotation_deg)
        and abs(rotation_deg) <= MAX_FORCED_ROTATION
    ):
        raise ValueError(
            f'forced rotation {rotation_deg}° is out of range: give an '
            f'angle in degrees between −{MAX_FORCED_ROTATION:g} and '
            f'{MAX_FORCED_ROTATION:g}'
        )
    for name, value in (('transpose', transpose),
                        ('flip_half_turn', flip_half_turn)):
        if value is not None and not isinstance(value, bool | np.bool_):
            raise TypeError(f'{name} must be True, False or None, not '
                            f'{value!r}')


def describe_mask(mask) -> str:
    """A short, JSON-safe description of a detector mask."""
    if mask is None:
        return 'whole detector'
    weight = to_numpy(mask).astype(np.float64)
    return (f'{int(np.count_nonzero(weight))} of {weight.size} detector '
            f'pixels (weight sum {weight.sum():.6g})')


def _calibration_used(cal: Calibration) -> dict:
    return {name: getattr(cal, name)
            for name in ('scan_step', 'q_pixel_mrad', 'energy')}


# --- the half-turn -------------------------------------------------------


def _half_turn(full_phase, fitted, forced_rotation, flip):
    """(rotation, sign, evidence): ``sign·full_phase`` is the phase at
    ``rotation`` (θ + 180° negates the CoM and the phase); the evidence is
    for that rotation. A forced rotation or half-turn is the user's."""
    found = evidence('DPC', full_phase)
    if flip is None and forced_rotation is None:
        sign = 1 if found.keeps else -1
        return (wrap_degrees(fitted + 90.0 * (1 - sign)), sign,
                Evidence('DPC', sign * found.skewness, found.z))
    sign = -1 if flip else 1
    return wrap_degrees(fitted + 180.0 * bool(flip)), sign, user_choice()


def _mask(mask, cube):
    """The detector weights that ``mask`` names (see :func:`dpc`)."""
    if not isinstance(mask, str):
        return mask
    if mask != 'bf':
        raise ValueError(f"mask must be 'bf', None or an array, not {mask!r}")
    if cube.calibration.missing('probe_center', 'probe_radius'):
        return None
    return bf_mask(cube.calibration, cube.detector_shape)


def _regions(cube, mask, fit_region) -> tuple[dict, str]:
    """Detector weights by name (the whole detector; the bright and dark
    fields once the probe is calibrated; 'mask', a given array) and the
    name of the shown one (``mask``: see :func:`dpc`)."""
    if fit_region not in ('auto', 'mask', *FIT_REGIONS):
        raise ValueError(
            f"fit_region must be 'auto', 'mask' or one of {FIT_REGIONS}, "
            f'not {fit_region!r}')
    regions = {'whole detector': None}
    if not cube.calibration.missing('probe_center', 'probe_radius'):
        shape = cube.detector_shape
        regions['bright field'] = bf_mask(cube.calibration, shape)
        regions['dark field'] = adf_mask(cube.calibration, shape)
    if fit_region in FIT_REGIONS and fit_region not in regions:
        raise CalibrationError(
            f'DPC cannot fit the rotation on the {fit_region}: the probe '
            'centre and radius are not calibrated')
    if mask is None:
        return regions, 'whole detector'
    if isinstance(mask, str):
        _mask(mask, cube)  # checks the name
        return regions, ('bright field' if 'bright field' in regions
                         else 'whole detector')
    regions['mask'] = mask
    return regions, 'mask'


def _fit_region(coms, fit_region, shown, to_inv_A):
    """(name, CoM (Å⁻¹), noise weight, transpose clarity) of the region
    the rotation is fit on; 'auto' takes the clearest of FIT_REGIONS that
    has counts in every pattern (a dark field over vacuum has none)."""
    if fit_region == 'mask':
        fit_region = shown
    names = [fit_region] if fit_region != 'auto' else [
        name for name in FIT_REGIONS if name in coms
        and (coms[name].empty == 0 or name == 'whole detector')]
    fits = []
    for name in names:
        com = coms[name].shift * to_inv_A
        valid = np.isfinite(coms[name].variance)
        noise = coms[name].variance[valid].mean() / 2 * to_inv_A**2
        weight = noise_weight(com, noise)
        fits.append((transpose_clarity(com, weight), name, com, weight))
    clarity, name, com, weight = max(fits, key=lambda fit: fit[0])
    return name, com, weight, clarity


def _com_anisotropy(coms) -> float:
    """The larger anisotropy of the whole-detector and dark-field CoMs,
    over the patterns with counts, of the regions that have counts in
    most patterns (a dark field over a hole has none)."""
    return max((anisotropy(com.shift, np.isfinite(com.variance))
                for name, com in coms.items()
                if name in ('whole detector', 'dark field')
                and com.empty < com.variance.size / 2), default=1.0)


def _doubts(clarity, region, spread) -> list[str]:
    """Why the fitted transpose may be wrong: a toss between the two, or
    a CoM field much stronger along one direction (docs/conventions.md)."""
    doubts = []
    if clarity < TOSS_CLARITY:
        doubts.append(f'DPC cannot tell the transpose (clarity {clarity:.2f} '
                      f'on the {region}, below {TOSS_CLARITY:g})')
    if spread >= ANISOTROPIC:
        doubts.append(
            f'DPC\'s CoM is ×{spread:.2f} stronger along one direction than '
            f'across it (from ×{ANISOTROPIC:g}: an astigmatic probe or a '
            'crystal lattice), where the least curl can take the wrong '
            'transpose clearly')
    return doubts


def _mask_contrast(masked_phase, full_phase) -> tuple[int, str]:
    """Sign that makes the masked phase match the full-detector one."""
    r = np.corrcoef(masked_phase.ravel(), full_phase.ravel())[0, 1]
    if not np.isfinite(r):
        return 1, 'the masked and full-detector phases cannot be compared'
    if r < 0:
        return -1, (f'the mask inverts the contrast (r = {r:+.2f} with the '
                    'full-detector phase): the displayed phase is negated')
    return 1, (f'the mask keeps the contrast (r = {r:+.2f} with the '
               'full-detector phase)')


# --- integration -----------------------------------------------------------


def _integrator(step, padding_factor, max_iter, step_size, tolerance):
    def integrate(com_inv_A):
        return integrate_gradient(
            2 * np.pi * com_inv_A, step, padding_factor, max_iter,
            step_size, tolerance,
        )

    return integrate


def integrate_gradient(
    gradient,
    pixel_size: float,
    padding_factor: float = 2.0,
    max_iter: int = 64,
    step_size: float = 1.0,
    tolerance: float = 1e-3,
):
    """φ whose gradient best fits ``gradient`` (2, Rx, Ry) on the scan.

    ``gradient`` in rad/Å, ``pixel_size`` in Å; returns ``(φ (Rx, Ry)
    rad, iterations, NMSE)``. Preconditioned gradient descent on
    ‖∇φ − g‖² over the scanned region of a grid padded by
    ``padding_factor`` (the field outside is free, so there are no
    periodic artefacts): each step adds ``step_size`` × the Fourier
    (Poisson) integral of the residual. A step that raises the error is
    undone and halved; the loop stops when the relative NMSE gain falls
    below ``tolerance``. numpy or cupy, as ``gradient``.
    """
    xp = xp_of(gradient)
    fft = fft_of(xp)
    rx, ry = gradient.shape[1:]
    shape = (max(rx, round(rx * padding_factor)),
             max(ry, round(ry * padding_factor)))
    d_x, d_y = _derivative_operators(shape, pixel_size, xp)
    norm = xp.abs(d_x) ** 2 + xp.abs(d_y) ** 2
    norm[norm == 0] = np.inf
    target = xp.zeros((2, *shape))
    target[:, :rx, :ry] = gradient
    scale = float(xp.sum(target**2)) or 1.0

    def residual(spectrum):
        fit = fft.irfft2(xp.stack([d_x * spectrum, d_y * spectrum]), s=shape)
        res = target - fit
        res[:, rx:] = 0
        res[:, :, ry:] = 0
        return res, float(xp.sum(res**2)) / scale

    def descent(res):
        res_k = fft.rfft2(res)
        return (xp.conj(d_x) * res_k[0] + xp.conj(d_y) * res_k[1]) / norm

    spectrum = xp.zeros(d_x.shape[:1] + d_y.shape[1:], dtype=complex)
    res, error = residual(spectrum)
    direction, step, iterations = descent(res), step_size, 0
    while iterations < max_iter and error > 0:
        iterations += 1
        trial = spectrum + step * direction
        trial_res, trial_error = residual(trial)
        if trial_error > error:
            step /= 2
            continue
        gain = (error - trial_error) / error
        spectrum, res, error = trial, trial_res, trial_error
        if gain < tolerance:
            break
        direction = descent(res)
    phase = fft.irfft2(spectrum, s=shape)[:rx, :ry]
    return phase, iterations, error


def _derivative_operators(shape, pixel_size, xp):
    """2πi·k for ∂/∂x (column) and ∂/∂y (rfft row), Nyquist zeroed so
    that the derivative of a real field stays real."""
    kx = xp.fft.fftfreq(shape[0], pixel_size)
    ky = xp.fft.rfftfreq(shape[1], pixel_size)
    if shape[0] % 2 == 0:
        kx[shape[0] // 2] = 0
    if shape[1] % 2 == 0:
        ky[-1] = 0
    return 2j * np.pi * kx[:, None], 2j * np.pi * ky[None, :]
