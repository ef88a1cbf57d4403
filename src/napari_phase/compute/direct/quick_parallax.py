"""Parallax quick phase: the tilt-corrected bright field for given
aberrations, from bright-field spectra computed once.

The virtual image of bright-field pixel k is the specimen seen through a
displaced position ``g(k) = ∇χ(k)/2π`` (Å, detector frame; see
``aberrations.py``): each image is moved by ``detector_to_scan(g)``
(``alignment.shifted_sum``, Fourier ramps on the cached spectra), the
images are averaged and the CTF is corrected (``aberrations.ctf_correct``:
sign of sin χ, odd aberrations' phase). Nothing is fitted: the
aberrations, rotation and transpose are given, so a change of any of them
costs one shifted sum and one small FFT. The images are those of
:func:`napari_phase.parallax` (``bright_field.py``) without its
upsampling, so the phase is on the scan grid.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..aberrations import ctf_correct, even_odd
from ..alignment import shifted_sum
from ..backend import (
    ProgressCallback,
    device_xp,
    fft_of,
    is_cupy,
    to_numpy,
    xp_of,
)
from ..bright_field import (
    FIT_RADIUS,
    PHASE_SCALE,
    bright_field_images,
    bright_field_pixels,
)
from ..datacube import DataCube
from ..geometry import detector_to_scan
from ..reduce import run_steps
from .polynomial import chi_coefficients, gradient
from .prepared import PreparedPhase


class ParallaxPhase(PreparedPhase):
    """The parallax quick phase of a prepared cube (see the module doc);
    the same interface as :class:`~.sideband.DirectPhase`. Thread-safe."""

    name = 'parallax quick phase'
    phase_scale = PHASE_SCALE

    def __init__(self, cube, theta, spectra, padding, parameters, xp):
        super().__init__(cube.calibration, cube.scan_shape, parameters)
        self.k = theta / self.wavelength  # Å⁻¹, detector frame
        radius = np.hypot(*theta.T)  # pixels come from the centre outward
        self._inner = int(np.count_nonzero(radius <= FIT_RADIUS * radius[-1]))
        self.padding = tuple(padding)
        self.xp = xp
        self._spectra = spectra

    def shifts(self, aberrations=None, rotation_deg=None, transpose=None):
        """Each bright-field image's displacement (N, 2), scan px, scan
        frame: ``detector_to_scan(∇χ(k)/2π) / scan_step``."""
        aberrations, rotation, transpose = self.settings(
            aberrations, rotation_deg, transpose
        )
        coefficients = chi_coefficients(aberrations, self.wavelength)
        g = gradient(coefficients, self.k) / (2 * np.pi)
        return detector_to_scan(g.T, rotation, transpose).T / self.scan_step

    def aligned_spectrum(self, aberrations=None, rotation_deg=None,
                         transpose=None):
        """Real FFT of the mean aligned bright-field image (DC set to
        0)."""
        shifts = self.shifts(aberrations, rotation_deg, transpose)
        width = self.scan_shape[1] + self.padding[1]
        spectrum = shifted_sum(self._spectra, shifts, width) / len(shifts)
        spectrum[0, 0] = 0
        return spectrum

    def phase(self, aberrations=None, rotation_deg=None, transpose=None):
        """CTF-corrected phase (Rx, Ry) radians (a lower bound: the
        bright-field contrast is 2φ|sin χ|), numpy float32, scan grid."""
        aberrations, rotation, transpose = self.settings(
            aberrations, rotation_deg, transpose
        )
        spectrum = self.aligned_spectrum(aberrations, rotation, transpose)
        shape = tuple(n + p for n, p in zip(self.scan_shape, self.padding))
        aligned = fft_of(self.xp).irfft2(spectrum, s=shape)
        even, _ = even_odd(aberrations)
        phase = ctf_correct(
            aligned, self.scan_step, self.wavelength, aberrations, rotation,
            transpose, flip=any(even.values()),
        )
        x0, y0 = (p // 2 for p in self.padding)
        nx, ny = self.scan_shape
        return to_numpy(phase[x0 : x0 + nx, y0 : y0 + ny])

    def score(self, aberrations=None, rotation_deg=None, transpose=None):
        """Contrast power of the aligned image of the inner pixels
        (``parallax.FIT_RADIUS`` of the disk: the aperture-edge pixels'
        images are not pure parallax images and pull C1 up by tens of %),
        largest when the shifts undo the parallax."""
        shifts = self.shifts(aberrations, rotation_deg, transpose)
        inner = slice(0, self._inner)
        width = self.scan_shape[1] + self.padding[1]
        spectrum = shifted_sum(self._spectra[inner], shifts[inner], width)
        spectrum[0, 0] = 0
        spectrum /= self._inner
        return float(to_numpy((abs(spectrum) ** 2).sum()))


def prepare_parallax_phase_steps(
    cube: DataCube,
    threshold_intensity: float = 0.6,
    edge_blend: float = 2.0,
    object_padding_px: tuple[int, int] = (4, 4),
    device: str = 'cpu',
) -> Generator[float, None, ParallaxPhase]:
    """Compute the bright-field images' spectra of ``cube`` once (pixels
    of the mean pattern ≥ ``threshold_intensity``·max; ``edge_blend`` and
    ``object_padding_px`` in scan px, as in :func:`napari_phase.parallax`)
    for fast :meth:`ParallaxPhase.phase` updates; a generator of progress
    fractions that returns the :class:`ParallaxPhase` (stop iterating to
    cancel)."""
    if not isinstance(cube, DataCube):
        raise TypeError(
            f'the parallax phase needs a DataCube, not {type(cube).__name__}'
        )
    cal = cube.calibration
    cal.require('scan_step', 'q_pixel_mrad', 'energy',
                purpose='the parallax quick phase')
    padding = tuple(int(p) for p in object_padding_px)
    data = cube.data
    xp = xp_of(data) if is_cupy(data) else device_xp(device)
    mean_pattern = to_numpy(cube.mean_and_max_pattern()[0])
    yield 0.3
    bf_pixels, theta = bright_field_pixels(
        mean_pattern, cal, threshold_intensity, cube.source)
    images = bright_field_images(data, bf_pixels, edge_blend, padding, xp)
    yield 0.8
    outward = np.argsort(np.hypot(*theta.T), kind='stable')
    spectra = fft_of(xp).rfft2(images)[xp.asarray(outward)]
    theta = theta[outward]  # images (in raster order) from the centre out
    parameters = {
        'source': cube.source,
        'threshold_intensity': threshold_intensity,
        'edge_blend': edge_blend,
        'object_padding_px': padding,
        'device': device,
        'bright_field_pixels': len(theta),
        'calibration': cal.to_dict(),
    }
    yield 1.0
    return ParallaxPhase(cube, theta, spectra, padding, parameters, xp)


def prepare_parallax_phase(cube: DataCube,
                           progress: ProgressCallback | None = None,
                           **options) -> ParallaxPhase:
    """:func:`prepare_parallax_phase_steps` run to the end (the same
    ``options``); ``progress`` receives its fractions."""
    return run_steps(prepare_parallax_phase_steps(cube, **options), progress)
