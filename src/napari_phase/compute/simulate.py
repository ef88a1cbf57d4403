"""A 4D-STEM simulator whose answer is known: the ground truth of the tests.

Physics (single-slice, thin object, py4DSTEM 0.14.18 forward model):

- the specimen is a phase ``φ(x, y) ≥ 0`` (radians) defined analytically in
  the **scan frame** (Å): a few strongly scattering particles (projected
  spheres) on a weak, smooth random support;
- the probe is ``P = IFFT[A(k)·exp(−iχ(k))]`` with a soft aperture of the
  convergence semiangle and the aberrations (``C10 = C1``, Å);
- the object grid lives in the **detector frame**: the probe position of
  scan pixel (i, j), ``p_R = (i, j)·step``, sits at
  ``p_Q = swap?(R(−θ)·p_R)`` (geometry.scan_to_detector), at sub-pixel
  precision (the probe is shifted by a Fourier phase ramp);
- the pattern is ``|FFT(P_j·O_j)|²``, centred on the detector at
  ``N/2 + center_offset`` pixels (a beam tilt: the aperture and χ are
  centred there, exactly, with no interpolation), scaled to ``dose·step²`` electrons per
  pattern, then Poisson-sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .backend import fft_of
from .calibration import Calibration, electron_wavelength
from .datacube import DataCube
from .geometry import detector_to_scan, scan_to_detector
from .optics import fourier_probe


@dataclass
class Specimen:
    """Phase (radians) as a function of scan-frame position (Å)."""

    particles: np.ndarray  # (n, 4): x, y, radius (Å), peak phase (rad)
    support: np.ndarray  # weak support phase on a grid (rad)
    support_origin: tuple[float, float]  # Å, scan frame, of support[0, 0]
    support_pixel: float  # Å

    def phase_at(self, x, y) -> np.ndarray:
        """φ at scan-frame coordinates ``x``, ``y`` (Å, broadcastable)."""
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        coords = [
            (x - self.support_origin[0]) / self.support_pixel,
            (y - self.support_origin[1]) / self.support_pixel,
        ]
        phase = ndimage.map_coordinates(
            self.support, coords, order=1, mode='nearest'
        )
        for px, py, radius, peak in self.particles:
            r2 = ((x - px) ** 2 + (y - py) ** 2) / radius**2
            phase += peak * np.clip(1 - r2, 0, None) ** 1.5
        return phase


@dataclass
class SimulatedData:
    """A simulated scan with its truth."""

    datacube: DataCube
    vacuum_probe: np.ndarray  # (Qx, Qy) intensity, beam at probe_center
    specimen: Specimen
    truth: dict = field(default_factory=dict)

    def true_phase(self, pixel_size: float | None = None) -> np.ndarray:
        """True phase in the scan frame, on a grid whose (0, 0) pixel is
        scan position (0, 0) and whose pixel is ``pixel_size`` Å (default:
        the scan step), covering the scanned field of view."""
        cal = self.datacube.calibration
        pixel_size = pixel_size or cal.scan_step
        nx, ny = (
            int(round((n - 1) * cal.scan_step / pixel_size)) + 1
            for n in self.datacube.scan_shape
        )
        x = np.arange(nx)[:, None] * pixel_size
        y = np.arange(ny)[None, :] * pixel_size
        return self.specimen.phase_at(x, y)


def make_specimen(
    extent: tuple[float, float],
    margin: float,
    pixel: float,
    n_particles: int,
    rng: np.random.Generator,
    particle_phase: float = 0.8,
    support_phase: float = 0.08,
) -> Specimen:
    """Particles inside ``extent`` (Å) and a smooth support, all ≥ 0."""
    lo = np.array([-margin, -margin])
    shape = tuple(int(np.ceil((e + 2 * margin) / pixel)) + 1 for e in extent)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5 / pixel)
    noise /= noise.std() or 1.0
    support = support_phase * np.clip(1 + 0.5 * noise, 0, None)
    radius = rng.uniform(0.06, 0.12, n_particles) * min(extent)
    centres = rng.uniform(0.15, 0.85, (n_particles, 2)) * np.array(extent)
    peak = particle_phase * rng.uniform(0.6, 1.0, n_particles)
    particles = np.column_stack([centres, radius, peak])
    return Specimen(particles, support, tuple(lo), pixel)


def simulate(
    scan_shape: tuple[int, int] = (32, 32),
    detector_shape: tuple[int, int] = (96, 96),
    scan_step: float = 2.39,
    energy: float = 300e3,
    semiangle: float = 22.6,
    probe_radius_px: float | None = None,
    rotation_deg: float = -15.0,
    transpose: bool = False,
    C1: float = 400.0,
    aberrations: dict | None = None,
    center_offset: tuple[float, float] = (0.3, -0.2),
    dose: float | None = 1e4,
    n_particles: int = 4,
    particle_phase: float = 0.8,
    seed: int = 0,
    batch: int = 256,
) -> SimulatedData:
    """Simulate a 4D-STEM scan of a thin phase specimen (see module doc).

    ``probe_radius_px`` sets the detector sampling (default 22 % of the
    detector width): ``q_pixel_mrad = semiangle / probe_radius_px``.
    ``dose`` is in e/Å²; ``None`` gives noise-free intensities.
    """
    rng = np.random.default_rng(seed)
    qx, qy = detector_shape
    probe_radius_px = probe_radius_px or 0.22 * min(qx, qy)
    q_pixel_mrad = semiangle / probe_radius_px
    wavelength = electron_wavelength(energy)
    dk = q_pixel_mrad * 1e-3 / wavelength
    pixel = 1.0 / (min(qx, qy) * dk)  # object pixel (Å), square
    if qx != qy:
        raise ValueError('the simulator needs a square detector')
    abers = {'C10': C1} | (aberrations or {})

    # Probe positions in the detector-frame object grid (pixels).
    ix, iy = np.meshgrid(*map(np.arange, scan_shape), indexing='ij')
    p_R = np.stack([ix, iy]).reshape(2, -1) * scan_step
    p_Q = scan_to_detector(p_R, rotation_deg, transpose) / pixel
    margin = qx // 2 + 2
    offset = margin - p_Q.min(axis=1)
    p_Q = p_Q + offset[:, None]
    object_shape = tuple(int(np.ceil(p_Q[k].max())) + margin for k in (0, 1))

    # Specimen, sampled on the object grid (mapped back to the scan frame).
    extent = tuple((n - 1) * scan_step for n in scan_shape)
    window = qx * pixel
    specimen = make_specimen(
        extent, window, pixel, n_particles, rng, particle_phase
    )
    gx, gy = np.meshgrid(*map(np.arange, object_shape), indexing='ij')
    grid_Q = (np.stack([gx, gy]) - offset[:, None, None]) * pixel
    grid_R = detector_to_scan(grid_Q, rotation_deg, transpose)
    obj = np.exp(1j * specimen.phase_at(grid_R[0], grid_R[1])).astype(
        np.complex64
    )

    probe_k = fourier_probe(
        detector_shape, pixel, wavelength, semiangle, abers,
        edge_mrad=q_pixel_mrad, offset_px=center_offset,
    )
    counts = None if dose is None else dose * scan_step**2
    probe_k *= np.sqrt((counts or 1.0) / np.sum(np.abs(probe_k) ** 2))
    intensities = _far_field(obj, probe_k, p_Q.T, batch).reshape(
        *scan_shape, qx, qy
    )
    vacuum = np.fft.fftshift(np.abs(probe_k) ** 2).astype(np.float32)
    if counts is not None:
        intensities = rng.poisson(intensities).astype(np.float32)

    calibration = Calibration(
        scan_step=scan_step,
        q_pixel_mrad=q_pixel_mrad,
        energy=energy,
        semiangle=semiangle,
    )
    centre = tuple(n // 2 + c for n, c in zip(detector_shape, center_offset))
    truth = dict(
        rotation_deg=rotation_deg,
        transpose=transpose,
        C1=C1,
        aberrations=abers,
        probe_center=centre,
        probe_radius=probe_radius_px,
        q_pixel_mrad=q_pixel_mrad,
        dose=dose,
        counts_per_pattern=counts,
        object_pixel=pixel,
        seed=seed,
    )
    cube = DataCube(intensities, calibration, source='simulated')
    return SimulatedData(cube, vacuum, specimen, truth)


def _far_field(obj, probe_k, positions, batch):
    """|FFT(P_j · O_j)|², fft-shifted, for every position (object pixels,
    fractional)."""
    n0, n1 = probe_k.shape
    fft = fft_of(np)
    f0 = np.fft.fftfreq(n0)
    f1 = np.fft.fftfreq(n1)
    u0 = np.fft.fftfreq(n0, 1 / n0).astype(int)
    u1 = np.fft.fftfreq(n1, 1 / n1).astype(int)
    out = np.empty((len(positions), n0, n1), np.float32)
    for start in range(0, len(positions), batch):
        pos = positions[start : start + batch]
        whole = np.round(pos).astype(int)
        frac = pos - whole
        ramps = np.exp(-2j * np.pi * frac[:, 0, None] * f0)[:, :, None] * (
            np.exp(-2j * np.pi * frac[:, 1, None] * f1)[:, None, :]
        )
        probes = fft.ifft2(probe_k * ramps.astype(np.complex64))
        patches = obj[
            whole[:, 0, None, None] + u0[:, None],
            whole[:, 1, None, None] + u1[None, :],
        ]
        waves = fft.fft2(probes * patches)
        out[start : start + len(pos)] = np.fft.fftshift(
            np.abs(waves) ** 2, axes=(-2, -1)
        )
    return out
