"""The half-turn: one decision per dataset, shared by every method.

Rotation and C1 are fixed by the data only up to a half-turn: (θ, C1) and
(θ + 180°, −C1, every C_mn negated) explain the same CoM fields, parallax
shifts and far-field intensities, with the phase sign flipped
(docs/conventions.md). A thin specimen's phase is a projected potential:
≥ 0 on atoms and particles, so once its slowly varying part is removed its
histogram has a long **positive** tail. Each method measures the skewness
of its phase at its own pair and its standard error, from the number of
independent pixels (:class:`Evidence`); the most convincing evidence
decides (:func:`outranks`), and the shared calibration records the pair,
who decided and how surely (:func:`record`). A method whose own evidence
loses follows the calibration's pair (:func:`differs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from .aberrations import half_turn
from .backend import to_numpy
from .geometry import wrap_degrees

#: Evidence counts as confident from this many standard errors of the
#: skewness: the small independent suite's wrong-signed phases never came
#: within 2 of it (docs/validation.md).
CONFIDENT = 3.0
#: Sources whose confident evidence overrides any other method's: the
#: user, and ptychography's high-passed phase (the most reliable signal).
DECISIVE = ('user', 'ptychography')
#: Gaussian high-pass (Å) of a high-resolution phase (ptychography,
#: direct) before its skewness: what is left are atoms and particles, not
#: vacuum holes or thickness ramps.
HIGH_PASS = 2.0


@dataclass(frozen=True)
class Evidence:
    """What a phase image says about its pair: ``skewness`` > 0 keeps the
    pair, < 0 asks for the other half-turn; ``z`` is its size in standard
    errors (∞ for the user)."""

    source: str
    skewness: float
    z: float

    @property
    def keeps(self) -> bool:
        return self.skewness >= 0

    @property
    def confident(self) -> bool:
        return self.z >= CONFIDENT

    def describe(self) -> str:
        if self.source == 'user':
            return 'user: chosen by the user'
        sureness = 'confident' if self.confident else 'UNCERTAIN'
        return (f'{self.source}: phase skewness {self.skewness:+.2f} '
                f'({self.z:.1f} standard errors, {sureness})')


def user_choice(keep: bool = True) -> Evidence:
    """The user's decision: keep the pair (or take the other one)."""
    return Evidence('user', 1.0 if keep else -1.0, math.inf)


def evidence(source: str, phase, pixel_size: float | None = None,
             high_pass: float | None = None, margin: int = 0) -> Evidence:
    """Skewness of ``phase`` and its size in standard errors. The phase is
    first high-passed (Gaussian, ``high_pass`` Å over ``pixel_size`` Å per
    pixel) when both are given, and ``margin`` px are cut off each edge."""
    image = to_numpy(phase).astype(np.float64)
    if high_pass and pixel_size:
        image = image - gaussian_filter(image, high_pass / pixel_size)
    if margin:
        image = image[margin:-margin, margin:-margin]
    values = image - image[np.isfinite(image)].mean()
    values[~np.isfinite(values)] = 0.0
    skew = skewness(values)
    error = math.sqrt(6.0 / independent_pixels(values))
    return Evidence(source, skew, abs(skew) / error)


def skewness(image, mask=None) -> float:
    """Sample skewness of the finite pixels of ``image`` (within
    ``mask``); 0 for a flat image."""
    values = to_numpy(image).astype(np.float64)
    if mask is not None:
        values = values[to_numpy(mask).astype(bool)]
    values = values[np.isfinite(values)].ravel()
    spread = values.std()
    if values.size < 3 or spread == 0:
        return 0.0
    return float(np.mean((values - values.mean()) ** 3) / spread**3)


def independent_pixels(values: np.ndarray) -> float:
    """N / Σρ²: the number of independent pixels of a correlated image
    (ρ its normalised autocorrelation, summed over lags up to 1/8 of the
    image, beyond which a sample autocorrelation is noise)."""
    shape = [2 * n for n in values.shape]
    spectrum = np.abs(np.fft.fft2(values, s=shape)) ** 2
    rho = np.fft.ifft2(spectrum).real
    rho /= rho[0, 0]
    lags = np.meshgrid(*(np.abs(np.fft.fftfreq(n, 1 / n)) for n in shape),
                       indexing='ij')
    near = (lags[0] <= values.shape[0] / 8) & (lags[1] <= values.shape[1] / 8)
    return values.size / max(float(np.sum(rho[near] ** 2)), 1.0)


def outranks(new: Evidence, current: Evidence | None) -> bool:
    """Whether ``new`` evidence should decide over the ``current``
    decision: the user always; then confident decisive sources, then the
    larger z."""
    if current is None or new.source == 'user':
        return True
    if current.source == 'user':
        return False

    def rank(e: Evidence):
        return (e.confident and e.source in DECISIVE, e.z)

    return rank(new) > rank(current)


def current(cal) -> Evidence | None:
    """The calibration's decision as evidence for its own pair."""
    if cal.half_turn_source is None or cal.rotation_deg is None:
        return None
    z = cal.half_turn_confidence
    return Evidence(cal.half_turn_source, 1.0,
                    math.inf if z is None else z)


def record(chosen: Evidence, flipped: bool = False) -> dict:
    """Calibration fields for a decision by ``chosen`` evidence (that was
    measured at the pair now ``flipped`` or not)."""
    skew = -chosen.skewness if flipped else chosen.skewness
    kept = Evidence(chosen.source, skew, chosen.z)
    z = None if math.isinf(chosen.z) else round(chosen.z, 2)
    return {'half_turn': kept.describe(), 'half_turn_source': chosen.source,
            'half_turn_confidence': z}


def differs(rotation_deg: float, reference_deg: float | None) -> bool:
    """Whether ``rotation_deg`` is the other half-turn of the reference
    (more than 90° away)."""
    if reference_deg is None or rotation_deg is None:
        return False
    return abs(wrap_degrees(rotation_deg - reference_deg)) > 90.0


def other_pair(cal) -> dict:
    """Calibration fields of the other half-turn of ``cal``'s pair:
    θ + 180°, −C1 and every C_mn negated (transpose unchanged)."""
    values = {'aberrations': half_turn(cal.aberrations or {})}
    if cal.rotation_deg is not None:
        values['rotation_deg'] = wrap_degrees(cal.rotation_deg + 180.0)
    if cal.C1 is not None:
        values['C1'] = -cal.C1
    return values


def choose(cal, keep: bool = True) -> None:
    """The user's decision: keep ``cal``'s pair or take the other."""
    if not keep:
        cal.update(**other_pair(cal))
    cal.update(**record(user_choice()))


def adopt(cal, result):
    """``result`` (a method's, with ``half_turn_evidence``,
    ``rotation_deg`` and ``other_half_turn()``) at the dataset's one
    half-turn: its own evidence decides when it outranks the calibration's
    decision (which then records it and, if needed, turns its pair over);
    otherwise the result follows the calibration's pair."""
    own = result.half_turn_evidence
    if own is None or result.rotation_deg is None:
        return result
    if outranks(own, current(cal)):
        if not own.keeps:
            result = result.other_half_turn()
        if differs(result.rotation_deg, cal.rotation_deg):
            cal.update(**other_pair(cal))
        cal.update(**record(own, flipped=not own.keeps))
    elif differs(result.rotation_deg, cal.rotation_deg):
        result = result.other_half_turn()
    return result


def settled(cal) -> bool:
    """Whether the calibration's half-turn is decided with confidence."""
    decision = current(cal)
    return decision is not None and decision.confident


def adopted(cal, result, write_pair: bool = False):
    """:func:`adopt` without touching ``cal``: the result and the
    calibration fields to set (with the result's own pair when
    ``write_pair``), so that a worker thread can decide and the UI thread
    apply."""
    trial = cal.copy()
    result = adopt(trial, result)
    if write_pair:
        trial.update(**result.calibration_update())
    before = cal.to_dict()
    return result, {name: value for name, value in trial.to_dict().items()
                    if value != before[name]}
