"""What a reconstruction returns (:class:`PtychoResult`) and yields after
every iteration (:class:`PtychoStep`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from ..aberrations import half_turn
from ..geometry import wrap_degrees
from ..halfturn import HIGH_PASS, Evidence, evidence


@dataclass
class PtychoResult:
    """A (possibly partial) ptychographic reconstruction.

    ``object``: detector frame, padded (complex transmission, or the
    real potential V (rad) for object_type 'potential'), (M, M') for one
    slice and (S, M, M') for a multislice object (slice 0 first, where the
    beam enters); ``object_cropped``: the same resampled into the scan
    frame, field of view only, pixel ``pixel_size`` Å, pixel (0, 0) at
    ``origin`` Å from scan position (0, 0); ``probe``: the dominant probe
    mode, complex, real space, centred at pixel N//2 (pixel Δx);
    ``probe_modes``: all modes (K, N, N), by decreasing intensity (None:
    ``probe`` alone); ``positions``: the probe positions (Rx, Ry, 2) Å in
    the scan frame (corrected ones, if position correction ran; None:
    the nominal grid); ``probe_velocity``: the probe's momentum (K, N, N),
    for a run that continues this one; ``errors``: normalised Fourier
    error per completed iteration, those of the run it continued first.
    ``parameters`` also hold ``runs``, the settings of every run in the
    chain, each with the iterations it did (a recipe replays them).
    """

    object: np.ndarray
    object_cropped: np.ndarray
    probe: np.ndarray
    errors: list[float]
    pixel_size: float
    origin: tuple[float, float] = (0.0, 0.0)
    parameters: dict = field(default_factory=dict)
    probe_modes: np.ndarray | None = None
    positions: np.ndarray | None = None
    probe_velocity: np.ndarray | None = None

    @property
    def phase(self) -> np.ndarray:
        """Phase of ``object_cropped`` (rad); for a multislice object the
        sum of the slices' phases (the projected phase)."""
        return slice_phases(self.object_cropped).sum(axis=0)

    @property
    def slice_phases(self) -> np.ndarray:
        """Phase of each slice (S, X, Y) rad, scan frame (S = 1 for a
        single-slice object)."""
        return slice_phases(self.object_cropped)

    #: Radians of the reconstructed object, reaching the true scale only
    #: as it converges (docs/validation.md).
    quantitative = False
    phase_scale = ('radians of the reconstructed object, approaching the '
                   'true scale as it converges: slope 0.23, 0.43, 0.66 '
                   'after 16, 64, 256 iterations on 60 Å gold, 0.79 after '
                   '64 on a thin crystal')

    @property
    def rotation_deg(self) -> float:
        return self.parameters['rotation_deg']

    @property
    def C1(self) -> float:
        """C1 = −defocus (Å) of the pair used."""
        return -self.parameters['defocus']

    @property
    def half_turn_evidence(self) -> Evidence:
        """The skewness of the phase high-passed at :data:`HIGH_PASS` Å
        (compute/halfturn.py): negative means the pair it was given is
        probably the other half-turn of the truth."""
        return evidence('ptychography', self.phase, self.pixel_size,
                        high_pass=HIGH_PASS)

    def other_half_turn(self) -> PtychoResult:
        """The reconstruction at (θ + 180°, −C1): the conjugate object,
        shown as the negated phase. Only the image changes over: a run
        cannot continue from it (reconstruct from the new pair)."""
        p = self.parameters
        cropped = self.object_cropped
        return replace(
            self,
            object_cropped=(np.conj(cropped) if np.iscomplexobj(cropped)
                            else -cropped),
            parameters=p | {
                'rotation_deg': wrap_degrees(p['rotation_deg'] + 180.0),
                'defocus': -p['defocus'],
                'aberrations': half_turn(p.get('aberrations') or {}),
                'half_turn_flipped': not p.get('half_turn_flipped', False),
            },
            probe_velocity=None,
        )

    @property
    def amplitude(self) -> np.ndarray:
        """Amplitude of ``object_cropped`` (1 for a potential object), the
        product over slices for a multislice object."""
        obj = self.object_cropped
        if not np.iscomplexobj(obj):
            return np.ones(obj.shape[-2:], np.float32)
        return np.abs(obj.reshape(-1, *obj.shape[-2:])).prod(axis=0)

    @property
    def probe_fourier(self) -> np.ndarray:
        """The probe in Fourier space, centred (fftshift), unnormalised FFT."""
        return centred_fft(self.probe)

    @property
    def position_corrections(self) -> np.ndarray | None:
        """``positions`` minus the nominal scan grid (Rx, Ry, 2) Å."""
        if self.positions is None:
            return None
        return position_corrections(
            self.positions, self.parameters['calibration']['scan_step'])


def position_corrections(positions, scan_step: float) -> np.ndarray:
    """Probe ``positions`` (Rx, Ry, 2) Å minus the scan grid of
    ``scan_step`` Å (scan frame)."""
    grid = np.indices(positions.shape[:2]).transpose(1, 2, 0)
    return positions - grid * scan_step


def centred_fft(probes) -> np.ndarray:
    """Probe(s) (…, N, N), centred at N//2, in Fourier space with the
    zero frequency at N//2 (fftshift), unnormalised FFT."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(probes, axes=axes)),
                           axes=axes)


def mode_powers(probes) -> np.ndarray:
    """Each mode's share of the total intensity of ``probes`` (K, N, N)."""
    power = (np.abs(probes) ** 2).sum(axis=(-2, -1))
    return power / power.sum()


def slice_phases(obj) -> np.ndarray:
    """Phase (or potential) of each slice of ``obj`` as (S, X, Y)."""
    phase = np.angle(obj) if np.iscomplexobj(obj) else obj
    return phase.reshape(-1, *phase.shape[-2:])


class PtychoStep:
    """What the iterator yields after each iteration: ``iteration`` (count
    done, those of a continued run included), ``error``, the current
    cropped ``phase`` and ``slice_phases`` (computed on first access, one
    crop for both; pixel ``pixel_size`` Å),
    ``probe_modes`` (K, N, N) and ``positions`` (Rx, Ry, 2) Å, scan frame
    (live copies) and :meth:`result`, a snapshot. Unpacks as
    ``(iteration, error, phase)``."""

    def __init__(self, run):
        self.iteration = len(run.errors)
        self.error = run.errors[-1]
        self.pixel_size = run.pixel_size
        self._run = run

    @cached_property
    def slice_phases(self) -> np.ndarray:
        return slice_phases(self._run.cropped())

    @cached_property
    def phase(self) -> np.ndarray:
        return self.slice_phases.sum(axis=0)

    @cached_property
    def probe_modes(self) -> np.ndarray:
        return self._run.probe_modes()

    @cached_property
    def positions(self) -> np.ndarray:
        return self._run.positions()

    def result(self) -> PtychoResult:
        return self._run.result()

    def __iter__(self):
        return iter((self.iteration, self.error, self.phase))
