"""The calibration that every step reads and writes (see docs/conventions.md).

One :class:`Calibration` object travels with a :class:`DataCube`; widgets
share it (it is evented: ``calibration.events.C1.connect(...)``) instead of
copying numbers from one to another. ``None`` means "not known yet".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from psygnal import evented

#: Planck constant × speed of light (eV·Å) and electron rest energy (eV).
HC_EV_A = 12398.419843320026
ELECTRON_REST_EV = 510998.95


class CalibrationError(ValueError):
    """A computation needs calibration values that are missing or invalid."""


def electron_wavelength(energy_ev: float) -> float:
    """Relativistic electron wavelength (Å) for a beam energy in eV."""
    if not energy_ev > 0:
        raise CalibrationError(f'beam energy must be > 0 eV, got {energy_ev}')
    return HC_EV_A / math.sqrt(energy_ev * (energy_ev + 2 * ELECTRON_REST_EV))


#: What each field means, with its unit: used in messages and docs.
FIELD_HELP = {
    'scan_step': 'scan step (Å)',
    'q_pixel_mrad': 'detector pixel size (mrad)',
    'energy': 'beam energy (eV)',
    'semiangle': 'probe convergence semiangle (mrad)',
    'probe_center': 'probe centre on the detector (px, axis 0 and 1)',
    'probe_radius': 'probe (bright-field disk) radius (px)',
    'rotation_deg': 'scan rotation Q→R (degrees)',
    'transpose': 'scan/detector transpose (bool)',
    'C1': 'C1 = −defocus (Å)',
    'aberrations': 'higher aberrations, polar (Å, degrees)',
    'half_turn': 'how the 180° ambiguity of rotation and C1 was resolved',
    'half_turn_source': 'the method (or the user) that resolved it',
    'half_turn_confidence': 'its evidence in standard errors (None: user)',
}

#: Values offered when a field is missing (the user is told which were used).
DEFAULTS = {
    'scan_step': 1.0,
    'q_pixel_mrad': 1.0,
    'energy': 300e3,
    'semiangle': 20.0,
}


@evented
@dataclass
class Calibration:
    """Physical calibration of a 4D-STEM scan. ``None`` = unknown.

    Conventions follow py4DSTEM 0.14.18 (docs/conventions.md): x is array
    axis 0, y is axis 1, in scan (R) and detector (Q) space alike; a CoM
    vector in the detector frame maps to the scan frame as
    ``c_R = R(rotation)·swap?(c_Q)``; ``C1 = −defocus`` (Å), positive C1
    meaning overfocus.
    """

    scan_step: float | None = None
    q_pixel_mrad: float | None = None
    energy: float | None = None
    semiangle: float | None = None
    probe_center: tuple[float, float] | None = None
    probe_radius: float | None = None
    rotation_deg: float | None = None
    transpose: bool | None = None
    C1: float | None = None
    aberrations: dict[str, float] = field(default_factory=dict)
    half_turn: str | None = None
    half_turn_source: str | None = None
    half_turn_confidence: float | None = None

    @property
    def wavelength(self) -> float:
        """Electron wavelength (Å)."""
        self.require('energy')
        return electron_wavelength(self.energy)

    @property
    def q_pixel_inv_A(self) -> float:
        """Detector pixel size in Å⁻¹ (cycles, numpy fftfreq convention)."""
        self.require('q_pixel_mrad', 'energy')
        return self.q_pixel_mrad * 1e-3 / self.wavelength

    def missing(self, *names: str) -> list[str]:
        """The fields among ``names`` that are still unknown."""
        return [n for n in names if getattr(self, n) is None]

    def require(self, *names: str, purpose: str = '') -> None:
        """Raise :class:`CalibrationError` naming any unknown field."""
        absent = self.missing(*names)
        if absent:
            what = ', '.join(FIELD_HELP[n] for n in absent)
            for_ = f' for {purpose}' if purpose else ''
            raise CalibrationError(
                f'Calibration is missing {what}{for_}. Set it in the probe '
                f'calibration widget (or Calibration.{absent[0]}).'
            )

    def with_defaults(self) -> tuple[Calibration, list[str]]:
        """A copy with :data:`DEFAULTS` filled in, and the fields filled."""
        filled = [n for n in DEFAULTS if getattr(self, n) is None]
        values = self.to_dict() | {n: DEFAULTS[n] for n in filled}
        return Calibration.from_dict(values), filled

    def copy(self) -> Calibration:
        return Calibration.from_dict(self.to_dict())

    def update(self, **values) -> None:
        """Set several fields; unknown names raise ``TypeError``."""
        for name, value in self._checked(values).items():
            setattr(self, name, value)

    def to_dict(self) -> dict:
        """Plain JSON-safe dict (tuples become lists)."""
        d = asdict(self)
        if d['probe_center'] is not None:
            d['probe_center'] = [float(v) for v in d['probe_center']]
        d['aberrations'] = dict(d['aberrations'])
        return d

    @classmethod
    def from_dict(cls, values: dict) -> Calibration:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        return cls(**cls._checked(values))

    @classmethod
    def _checked(cls, values: dict) -> dict:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TypeError(
                f'unknown calibration field(s) {sorted(unknown)}; '
                f'known: {sorted(known)}'
            )
        values = dict(values)
        if values.get('probe_center') is not None:
            values['probe_center'] = tuple(
                float(v) for v in values['probe_center']
            )
        if values.get('aberrations') is None:
            values.pop('aberrations', None)
        return values
