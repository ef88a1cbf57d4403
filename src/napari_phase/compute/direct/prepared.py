"""What every prepared quick phase shares: the settings it starts from
(the calibration's aberrations, rotation and transpose when it was
prepared) and the grid of its images (the scan grid: pixel (0, 0) is scan
position (0, 0), one scan step per pixel)."""

from __future__ import annotations

import warnings

from ..calibration import Calibration, CalibrationError
from ..geometry import wrap_degrees


def calibration_settings(cal: Calibration) -> tuple[dict, float | None, bool]:
    """Polar aberrations (C10 = C1 and the calibration's others), rotation
    (degrees, None if unknown) and transpose of ``cal``."""
    c1 = 0.0 if cal.C1 is None else float(cal.C1)
    aberrations = {'C10': c1} | dict(cal.aberrations)
    return aberrations, cal.rotation_deg, bool(cal.transpose)


class PreparedPhase:
    """Base of the prepared quick phases: ``phase(aberrations,
    rotation_deg, transpose)`` with every argument defaulting to the
    calibration's value when the object was prepared."""

    #: What the phase is, in words (for messages), and its radians'
    #: worth (io.layers.phase_scale).
    name = 'quick phase'
    quantitative = False
    phase_scale = ''

    def __init__(self, cal: Calibration, scan_shape, parameters: dict):
        self.aberrations, self.rotation_deg, self.transpose = (
            calibration_settings(cal)
        )
        if cal.C1 is None:
            warnings.warn(
                'the calibration has no C1: the direct phase assumes C1 = 0 '
                '(in focus) until it is given',
                RuntimeWarning,
                stacklevel=3,
            )
        self.scan_shape = tuple(scan_shape)
        self.scan_step = float(cal.scan_step)
        self.wavelength = cal.wavelength
        self.parameters = parameters

    @property
    def pixel_size(self) -> float:
        """Å per image pixel (the scan step)."""
        return self.scan_step

    @property
    def origin(self) -> tuple[float, float]:
        """Position (Å) of image pixel (0, 0): scan position (0, 0)."""
        return (0.0, 0.0)

    def settings(self, aberrations=None, rotation_deg=None, transpose=None):
        """(aberrations, rotation, transpose) with the defaults filled in;
        ``aberrations`` is polar with C10 (= C1), Å and degrees."""
        aberrations = dict(
            self.aberrations if aberrations is None else aberrations
        )
        aberrations.setdefault('C10', 0.0)
        rotation = self.rotation_deg if rotation_deg is None else rotation_deg
        if rotation is None:
            raise CalibrationError(
                f'the {self.name} needs the scan rotation: run DPC or '
                'parallax first, or set Calibration.rotation_deg'
            )
        transpose = self.transpose if transpose is None else transpose
        return aberrations, wrap_degrees(float(rotation)), bool(transpose)
