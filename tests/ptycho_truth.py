"""Hand-written forward models: the truth the ptychography tests check.

Independent of the engine's code (compute/ptycho): a plain loop over
probe positions with numpy FFTs, the Fresnel propagator written out,
rotation 0 (the detector frame is the scan frame). The specimens are the
simulator's analytic phases (compute/simulate.make_specimen); what is
simulated here and not by ``simulate``: several layers with free space
between them (a thick specimen), a partially coherent source (the
incoherent sum of the patterns of shifted probes) and probe positions off
the scan grid.
"""

from __future__ import annotations

import numpy as np

from napari_phase import Calibration, DataCube
from napari_phase.compute.calibration import electron_wavelength
from napari_phase.compute.optics import fourier_probe
from napari_phase.compute.simulate import Specimen, make_specimen

ENERGY = 300e3
SEMIANGLE = 22.6
#: Extent (Å) of the default 20×20 scan of 2.39 Å steps.
EXTENT = (19 * 2.39, 19 * 2.39)


def layer(extent, seed, n_particles=4, particle_phase=0.6, pixel=0.25):
    """An analytic phase layer (simulate.Specimen) over ``extent`` Å."""
    return make_specimen(extent, 20.0, pixel, n_particles,
                         np.random.default_rng(seed), particle_phase)


def atoms(extent, seed, count=60, radius=0.8, phase=0.5):
    """A layer of ``count`` small round 'atoms' (radius Å, peak phase
    rad) at random places in ``extent`` Å, nothing between them: detail
    finer than the probe's incoherent blur."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1, 0.9, (count, 2)) * np.asarray(extent)
    particles = np.column_stack([centres, np.full(count, radius),
                                 np.full(count, phase)])
    return Specimen(particles, np.zeros((2, 2)), (0.0, 0.0), 1e3)


def scan(layers, scan_shape=(20, 20), step=2.39, *, detector=64,
         probe_radius_px=20, C1=200.0, thickness=0.0, position_errors=None,
         source=(((0.0, 0.0), 1.0),), dose=1e5, seed=0):
    """A DataCube of the ``layers`` (Specimens, beam entering the first),
    ``thickness`` Å apart; probe positions = the scan grid plus
    ``position_errors`` (J, 2) Å; ``source``: ((offset Å, weight), ...)
    of a partially coherent source. Patterns centred at N/2, ``dose``
    e/Å² (Poisson, seeded; None: noise-free, 10⁶ e/Å²)."""
    n = detector
    wavelength = electron_wavelength(ENERGY)
    q_pixel = SEMIANGLE / probe_radius_px
    dx = 1.0 / (n * q_pixel * 1e-3 / wavelength)
    k = np.fft.fftfreq(n, dx)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    probe_k = fourier_probe((n, n), dx, wavelength, SEMIANGLE,
                            {'C10': C1}, edge_mrad=q_pixel)
    propagator = np.exp(-1j * np.pi * wavelength * thickness * k2)
    margin = n
    extent = [(s - 1) * step for s in scan_shape]
    shape = [int(np.ceil(e / dx)) + 2 * margin for e in extent]
    x = (np.arange(shape[0])[:, None] - margin) * dx
    y = (np.arange(shape[1])[None, :] - margin) * dx
    objects = [np.exp(1j * specimen.phase_at(x, y)) for specimen in layers]
    grid = np.stack(np.meshgrid(*map(np.arange, scan_shape),
                                indexing='ij'), -1).reshape(-1, 2) * step
    positions = grid + (0 if position_errors is None else position_errors)
    u = np.fft.fftfreq(n, 1 / n).astype(int)
    f = np.fft.fftfreq(n)
    patterns = np.zeros((len(grid), n, n))
    for j, p in enumerate(positions):
        for offset, weight in source:
            centre = (p + offset) / dx + margin
            whole = np.round(centre).astype(int)
            fx, fy = centre - whole
            ramp = np.exp(-2j * np.pi * (f[:, None] * fx + f[None, :] * fy))
            wave = np.fft.ifft2(probe_k * ramp)
            for s, obj in enumerate(objects):
                if s:
                    wave = np.fft.ifft2(np.fft.fft2(wave) * propagator)
                wave = wave * obj[whole[0] + u[:, None], whole[1] + u]
            patterns[j] += weight * np.abs(np.fft.fft2(wave)) ** 2
    counts = (dose or 1e6) * step**2
    patterns *= counts / patterns.sum(axis=(1, 2)).mean()
    if dose is not None:
        patterns = np.random.default_rng(seed).poisson(patterns)
    data = np.fft.fftshift(patterns, axes=(1, 2)).astype(np.float32)
    calibration = Calibration(scan_step=step, q_pixel_mrad=q_pixel,
                              energy=ENERGY, semiangle=SEMIANGLE, C1=C1,
                              rotation_deg=0.0, transpose=False)
    return DataCube(data.reshape(*scan_shape, n, n), calibration)


def phase_of(layers, shape, pixel):
    """Σ of the layers' phases on the scan-frame grid of a result (pixel
    ``pixel`` Å, (0, 0) at scan position (0, 0))."""
    x = np.arange(shape[0])[:, None] * pixel
    y = np.arange(shape[1])[None, :] * pixel
    return sum(specimen.phase_at(x, y) for specimen in layers)


def correlation(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])
