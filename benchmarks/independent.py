"""Independent validation data: 4D-STEM scans simulated by abTEM multislice.

Nothing here uses napari-phase's forward model (``compute/simulate.py``,
``optics``, ``geometry``): the scan geometry is written out below from its
definition (docs/conventions.md), and abTEM (1.0.11) does the physics —
atoms, potentials, a probe with aberrations, multislice, the far field.
abTEM is imported only inside the functions that simulate; reading the
stored data needs h5py and napari-phase's reader only.

Geometry (``scan_positions``): scan position ``(i, j)`` is
``p_R = (i, j)·step`` in the scan frame; in the detector frame it is
``p_Q = swap?(R(−θ)·p_R)``. abTEM's specimen frame A has the orientation
of its diffraction patterns (:func:`check_orientation`, run before every
simulation: a phase gradient along +x moves the CoM towards larger
indices along axis 0 by ∇φ/2π, zero frequency at index n//2), and
the detector is A with its axes swapped when ``transpose``: ``Q =
swap?(A)``. So the probe goes to ``p_A = swap?(p_Q) = R(−θ)·p_R`` (plus an
offset that centres the scan on the specimen) and every pattern is
transposed when ``transpose`` — exact, no interpolation. Aberration
azimuths are given in the detector frame (as our calibration holds them)
and mirrored for abTEM when transposed: ``φ_A = 90° − φ_Q``; abTEM takes
radians and ``C10 = C1 = −defocus``, ``χ = (2π/λ) Σ C_mn α^(m+1)/(m+1)
cos(n(φ − φ_mn))``, ``φ = atan2(k_y, k_x)``, ``Ψ = A·exp(−iχ)``
(``abtem/transfer.py``): the same polar convention as ours.

Detector: each pattern is simulated on a fine grid (``binning`` × finer in
angle than the detector: the wave lives in a cell ``binning`` × larger than
the detector's real-space window) and the fine pixels are summed into
detector pixels, as a pixel integrates its area. Only the atoms near a
tile of ``TILE``×``TILE`` probe positions are simulated at a time, in a
cell of ``binning`` detector windows: every probe stays ≥ half a window
from the cell edge, where the cropped (periodically wrapped) specimen is
cut. abTEM's anti-aliasing cutoff (2/3 of the Nyquist angle) lies at
4/3 of the detector's half-width: only the outer corners of the detector
stay dark. Static potential (no frozen phonons: thermal diffuse
scattering matters little to the phase at these angles and would
multiply the cost), infinite projection, Lobato parametrisation, 2 Å
slices. Intensities are scaled to ``dose·step²`` electrons per pattern
(the part abTEM scatters beyond its cutoff is lost, as it would be outside
the detector) and Poisson-sampled with a seeded generator.

Truth (:class:`Truth`): the projected phase ``σ·∫V dz`` of the same atoms
(abTEM's potential, one slice), Gaussian-filtered (σ = half the truth
pixel) and sampled on the scan frame, pixel (0, 0) at scan position (0, 0)
(like ``SimulatedData.true_phase``); the probe intensity at the entrance
surface on the same grid (the point-spread of full-detector DPC); θ,
transpose, C1 and the other aberrations (detector frame, Å, degrees), the
dose and the calibration.

Files (:func:`write`, :func:`load`): one HDF5 file per dataset, read by
``napari_phase.read_datacube`` / ``read_probe`` as a generic HDF5 file
without calibration (as the seed's file): ``/datacube`` (uint16 counts,
Blosc/Zstd-compressed), ``/vacuum_probe`` (expected counts, float32) and
``/truth`` (arrays and a JSON attribute).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

HERE = Path(__file__).resolve().parent
SMALL_DIR = HERE.parent / 'tests' / 'data' / 'independent'
CACHE_DIR = HERE / '.build' / 'independent'
#: Probe positions simulated together (per side of a square tile).
TILE = 8
#: Fine (simulation) pixels per detector pixel, per axis.
BINNING = 2
#: Real-space grid points per detector pixel and binning (abTEM's cutoff
#: at 2/3 of Nyquist then lies at 4/3 of the detector half-width).
OVERSAMPLING = 2
#: Truth grid: pixel = scan step / this.
TRUTH_UPSAMPLING = 4
CARBON_DENSITY = 0.1003  # atoms/Å³ (2.0 g/cm³)
CARBON_MIN_DISTANCE = 1.3  # Å
GOLD_LATTICE = 4.078  # Å
SRTIO3_LATTICE = 3.905  # Å


@dataclass(frozen=True)
class Spec:
    """What to simulate. Lengths Å, angles degrees (aberration azimuths in
    the detector frame), energy eV, semiangle mrad, dose e/Å²."""

    name: str
    specimen: str  # 'gold_on_carbon', 'holey_carbon' or 'srtio3'
    description: str
    rotation_deg: float = -15.0
    transpose: bool = False
    C1: float = 400.0
    aberrations: dict = field(default_factory=dict)  # C12, phi12, …
    dose: float = 1e4
    seed: int = 0
    scan_shape: tuple[int, int] = (24, 24)
    detector: int = 96
    probe_radius_px: float = 30.0  # sets the detector pixel (mrad)
    scan_step: float = 2.39
    energy: float = 300e3
    semiangle: float = 22.6
    slice_thickness: float = 2.0
    beam_offset: tuple[int, int] = (0, 1)  # fine px: sub-pixel beam centre
    carbon_thickness: float = 35.0
    particles: int = 3  # gold particles (gold_on_carbon)
    hole_fraction: float = 0.3  # of the scored area (holey_carbon)
    unit_cells: int = 8  # along the beam (srtio3)

    @property
    def wavelength(self) -> float:
        """Relativistic electron wavelength (Å)."""
        hc, rest = 12398.419843320026, 510998.95
        e = self.energy
        return hc / math.sqrt(e * (e + 2 * rest))

    @property
    def q_pixel_mrad(self) -> float:
        return self.semiangle / self.probe_radius_px

    @property
    def window(self) -> float:
        """Real-space window of the detector, 1/(detector pixel), Å."""
        return self.wavelength / (self.q_pixel_mrad * 1e-3)

    def seed_sized(self) -> Spec:
        """The same at the seed's size: 48×48 scan, 192² detector, the
        probe radius the benchmark's simulator uses (22 % of the width)."""
        return replace(self, scan_shape=(48, 48), detector=192,
                       probe_radius_px=0.22 * 192,
                       particles=2 * self.particles)


SPECS = {spec.name: spec for spec in (
    Spec('gold_carbon', 'gold_on_carbon',
         'gold particles (16–24 Å) on 35 Å amorphous carbon, the seed '
         'geometry: θ = −15°, C1 = +400 Å (overfocus)'),
    Spec('gold_carbon_T_under', 'gold_on_carbon',
         'gold on carbon (another specimen), transposed detector, '
         'θ = +37.3°, underfocus C1 = −400 Å',
         rotation_deg=37.3, transpose=True, C1=-400.0, seed=1),
    Spec('gold_carbon_astig', 'gold_on_carbon',
         'gold on carbon, astigmatism larger than the defocus: C1 = +50 Å, '
         'C12 = 100 Å at 30°, θ = −15°',
         C1=50.0, aberrations={'C12': 100.0, 'phi12': 30.0}, seed=2),
    Spec('gold_carbon_low_dose', 'gold_on_carbon',
         'the gold_carbon specimen and geometry at 500 e/Å²',
         dose=500.0),
    Spec('holey_carbon', 'holey_carbon',
         '40 Å amorphous carbon with a round hole over 30 % of the scored '
         'area (phase histogram negatively skewed), θ = +121.7°, '
         'C1 = +400 Å',
         rotation_deg=121.7, carbon_thickness=40.0, seed=3),
    Spec('gold_carbon_astig_T', 'gold_on_carbon',
         'gold on carbon, transposed detector, astigmatism twice the '
         'defocus: C1 = +130 Å, C12 = 260 Å at −40°, θ = +70°',
         rotation_deg=70.0, transpose=True, C1=130.0,
         aberrations={'C12': 260.0, 'phi12': -40.0}, seed=5),
    Spec('holey_carbon_astig', 'holey_carbon',
         'holey film, astigmatism larger than the defocus: underfocus '
         'C1 = −150 Å, C12 = 200 Å at 75°, θ = −60°',
         rotation_deg=-60.0, C1=-150.0,
         aberrations={'C12': 200.0, 'phi12': 75.0}, carbon_thickness=40.0,
         seed=6),
    Spec('srtio3_001', 'srtio3',
         'SrTiO3 [001], 8 unit cells (31 Å), crystal edge with vacuum '
         'beyond, transposed detector, θ = −15°, underfocus C1 = −300 Å',
         transpose=True, C1=-300.0, seed=4),
)}


@dataclass
class Truth:
    """What a dataset is, exactly. ``phase`` (rad) and ``probe_intensity``
    (sums to 1, centred) are on the scan frame with ``phase_pixel`` Å
    pixels; ``phase[0, 0]`` is at scan position (0, 0). Aberrations are
    polar (Å, degrees) in the detector frame; ``C1`` = C10 = −defocus."""

    name: str
    specimen: str
    description: str
    rotation_deg: float
    transpose: bool
    C1: float
    aberrations: dict
    dose: float  # e/Å²
    counts_per_pattern: float  # dose·step², before the lost fraction
    scan_step: float  # Å
    q_pixel_mrad: float
    energy: float  # eV
    semiangle: float  # mrad
    probe_center: tuple[float, float]  # detector px (axis 0, axis 1)
    probe_radius_px: float  # semiangle / q_pixel
    thickness: float  # Å
    phase_pixel: float  # Å
    extra: dict  # specimen details, simulation settings, versions
    phase: np.ndarray = field(repr=False, default=None)
    probe_intensity: np.ndarray = field(repr=False, default=None)

    @property
    def C1_mid_specimen(self) -> float:
        """C1 at half the thickness (Å). ``C1`` holds at the entrance
        surface (abTEM's reference plane) and grows by the depth as the
        wave goes down (checked on the data: parallax shifts are
        |C1| + t/2 overfocused, |C1| − t/2 underfocused), so a method that
        averages over the specimen measures about this."""
        return self.C1 + self.thickness / 2

    def metadata(self) -> dict:
        values = asdict(self)
        del values['phase'], values['probe_intensity']
        return values


class Loaded(NamedTuple):
    """A dataset as the seed user starts: the datacube (calibrated with
    what a user knows: scan step, energy, semiangle), the vacuum probe and
    the truth."""

    cube: object
    probe: np.ndarray
    truth: Truth


# --- geometry, written out from docs/conventions.md ----------------------


def scan_positions(scan_shape, step, rotation_deg, transpose):
    """Probe positions (Å): ``p_R`` (N, 2) in the scan frame and ``p_Q``
    (N, 2) in the detector frame, scan order (row-major over (i, j))."""
    i, j = np.meshgrid(*map(np.arange, scan_shape), indexing='ij')
    p_R = np.stack([i.ravel(), j.ravel()], axis=1) * step
    return p_R, to_detector(p_R, rotation_deg, transpose)


def to_detector(points_R, rotation_deg, transpose):
    """``p_Q = swap?(R(−θ)·p_R)`` for scan-frame points (N, 2), with
    ``R(t) = [[cos t, −sin t], [sin t, cos t]]`` acting on (x, y)."""
    t = math.radians(-rotation_deg)
    x = math.cos(t) * points_R[:, 0] - math.sin(t) * points_R[:, 1]
    y = math.sin(t) * points_R[:, 0] + math.cos(t) * points_R[:, 1]
    return np.stack([y, x] if transpose else [x, y], axis=1)


def specimen_frame(p_Q, transpose):
    """abTEM's frame A from the detector frame: Q = swap?(A)."""
    return p_Q[:, ::-1] if transpose else p_Q


def abtem_aberrations(spec: Spec) -> dict:
    """The probe's aberrations for abTEM: C10 = C1, azimuths in radians
    in frame A (mirrored, 90° − φ, when the detector is transposed)."""
    values = {'C10': spec.C1}
    for key, value in spec.aberrations.items():
        if key.startswith('phi'):
            angle = 90.0 - value if spec.transpose else value
            values[key] = math.radians(angle)
        else:
            values[key] = value
    return values


# --- specimens ---------------------------------------------------------------


def carbon_film(extent, z0, thickness, rng):
    """Amorphous carbon (Å, (N, 3)): uniform random atoms at 2.0 g/cm³, no
    two closer than CARBON_MIN_DISTANCE (the later of a close pair
    removed, then thinned back to the density)."""
    from scipy.spatial import cKDTree

    volume = extent[0] * extent[1] * thickness
    target = round(CARBON_DENSITY * volume)
    points = rng.uniform(0, 1, (int(target * 1.25), 3)) * (
        extent[0], extent[1], thickness)
    pairs = cKDTree(points).query_pairs(CARBON_MIN_DISTANCE,
                                        output_type='ndarray')
    keep = np.ones(len(points), bool)
    keep[pairs.max(axis=1)] = False
    points = points[keep]
    points = points[rng.permutation(len(points))[:target]]
    return points + (0.0, 0.0, z0)


def gold_particle(diameter, rng):
    """A truncated-octahedral gold cluster (ase) of about ``diameter`` Å,
    randomly oriented, centred at the origin."""
    from ase.cluster import Octahedron

    length = max(3, round(diameter / (GOLD_LATTICE / math.sqrt(2))) + 1)
    cluster = Octahedron('Au', length, cutoff=max(1, length // 3),
                         latticeconstant=GOLD_LATTICE)
    cluster.rotate(rng.uniform(0, 360), 'z')
    cluster.rotate(rng.uniform(0, 180), 'x')
    cluster.rotate(rng.uniform(0, 360), 'z')
    positions = cluster.positions - cluster.positions.mean(axis=0)
    return positions


def build_specimen(spec: Spec, world, to_world, rng):
    """Atoms (symbols, positions (N, 3) Å in frame A) filling ``world``
    (Å, x and y), and details for the truth. ``to_world`` maps scan-frame
    points (N, 2) Å to frame A."""
    fov = (np.asarray(spec.scan_shape) - 1) * spec.scan_step
    if spec.specimen == 'srtio3':
        return _srtio3(spec, world, to_world)
    carbon = carbon_film(world, 0.0, spec.carbon_thickness, rng)
    details = {'carbon_thickness_A': spec.carbon_thickness,
               'carbon_density_atoms_per_A3': CARBON_DENSITY}
    if spec.specimen == 'holey_carbon':
        # one round hole over hole_fraction of the scored area (the scan
        # without its 10 % borders)
        radius = math.sqrt(spec.hole_fraction * 0.64 * fov[0] * fov[1]
                           / math.pi)
        centre_R = np.array([0.45, 0.55]) * fov
        centre = to_world(centre_R[None])[0]
        outside = np.hypot(*(carbon[:, :2] - centre).T) > radius
        carbon = carbon[outside]
        details |= {'hole_centre_scan_A': centre_R.tolist(),
                    'hole_radius_A': radius}
        return ['C'] * len(carbon), carbon, details
    golds, placed = [], []
    diameters = rng.uniform(16, 24, spec.particles)
    for diameter in diameters:
        for _ in range(200):  # not overlapping, inside the field of view
            centre_R = rng.uniform(0.2, 0.8, 2) * fov
            if all(np.hypot(*(centre_R - c)) > (diameter + d) / 2 + 3
                   for c, d in placed):
                break
        placed.append((centre_R, diameter))
        atoms = gold_particle(diameter, rng)
        lift = spec.carbon_thickness + 2.0 - atoms[:, 2].min()
        centre = to_world(centre_R[None])[0]
        golds.append(atoms + (centre[0], centre[1], lift))
    gold = np.concatenate(golds)
    details |= {'particles_scan_A': [
        {'centre': c.tolist(), 'diameter': float(d)} for c, d in placed]}
    return (['C'] * len(carbon) + ['Au'] * len(gold),
            np.concatenate([carbon, gold]), details)


def _srtio3(spec: Spec, world, to_world):
    """SrTiO3 in [001] zone axis, cubic cell axes along frame A's x, y,
    ending at a straight edge (vacuum beyond) that crosses the scan at
    20° to its first axis, the crystal on about 55 % of the scored area:
    a crystal edge, where people image, gives the non-periodic contrast
    that alignment needs."""
    a = SRTIO3_LATTICE
    basis = {'Sr': [(0, 0, 0)], 'Ti': [(0.5, 0.5, 0.5)],
             'O': [(0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]}
    cells = [math.ceil(w / a) for w in world] + [spec.unit_cells]
    grid = np.stack(np.meshgrid(*map(np.arange, cells), indexing='ij'),
                    axis=-1).reshape(-1, 3)
    symbols, positions = [], []
    for symbol, sites in basis.items():
        for site in sites:
            positions.append((grid + site) * a)
            symbols += [symbol] * len(grid)
    positions = np.concatenate(positions)
    fov = (np.asarray(spec.scan_shape) - 1) * spec.scan_step
    point_R = np.array([0.45, 0.5]) * fov
    normal_R = np.array([math.cos(math.radians(20)),
                         math.sin(math.radians(20))])
    point, ahead = to_world(np.stack([point_R, point_R + normal_R]))
    crystal = (positions[:, :2] - point) @ (ahead - point) > 0
    details = {'lattice_A': a, 'zone_axis': [0, 0, 1],
               'unit_cells_along_beam': spec.unit_cells,
               'cell_axes': 'along the specimen frame A (x = axis 0 of '
                            'the untransposed detector)',
               'edge_point_scan_A': point_R.tolist(),
               'edge_normal_scan': normal_R.tolist()}
    return ([sym for sym, keep in zip(symbols, crystal) if keep],
            positions[crystal], details)


# --- simulation -------------------------------------------------------------


def simulate(spec: Spec, workers: int = 2, progress=print):
    """Counts (Rx, Ry, Q, Q) uint16, vacuum probe (Q, Q) float32 (expected
    counts) and :class:`Truth` of ``spec`` (see the module doc)."""
    import abtem
    from ase import Atoms

    from napari_phase.compute.halfturn import skewness

    abtem.config.set({'diagnostics.progress_bar': False, 'fftw.threads': 1})
    check_orientation(spec.energy)
    rng = np.random.default_rng(spec.seed)
    b, nq = BINNING, spec.detector
    cell = b * spec.window  # Å: the simulation cell of one tile
    gpts = OVERSAMPLING * nq * b

    _, p_Q = scan_positions(spec.scan_shape, spec.scan_step,
                            spec.rotation_deg, spec.transpose)
    p_A = specimen_frame(p_Q, spec.transpose)
    low = p_A.min(axis=0) - cell / 2 - 1.0  # the world: every tile's cell
    world = tuple(p_A.max(axis=0) + cell / 2 + 1.0 - low)
    p_A = p_A - low

    def to_world(points_R):
        return _to_specimen(points_R, spec) - low

    symbols, positions, details = build_specimen(spec, world, to_world, rng)
    thickness = float(positions[:, 2].max() + 2.0)
    atoms = Atoms(symbols, positions=positions,
                  cell=[world[0], world[1], thickness], pbc=True)

    probe = abtem.Probe(energy=spec.energy, semiangle_cutoff=spec.semiangle,
                        **abtem_aberrations(spec))
    crop = [gpts // 2 - b * nq // 2 + s for s in spec.beam_offset]
    patterns = np.empty((len(p_A), nq, nq), np.float32)
    tiles = list(_tiles(spec.scan_shape))
    for n, tile in enumerate(tiles):
        centre = (p_A[tile].min(axis=0) + p_A[tile].max(axis=0)) / 2
        corner = centre - cell / 2
        inside = np.all((positions[:, :2] >= corner)
                        & (positions[:, :2] < corner + cell), axis=1)
        local = Atoms([symbols[k] for k in np.flatnonzero(inside)],
                      positions=positions[inside] - (*corner, 0.0),
                      cell=[cell, cell, thickness], pbc=True)
        potential = abtem.Potential(
            local, gpts=(gpts, gpts), slice_thickness=spec.slice_thickness,
            projection='infinite', parametrization='lobato')
        waves = probe.multislice(
            potential, scan=abtem.CustomScan(p_A[tile] - corner),
            detectors=abtem.PixelatedDetector(max_angle='full'))
        fine = waves.compute(scheduler='threads', num_workers=workers)
        patterns[tile] = _binned(fine.array, crop, b, nq)
        progress(f'{spec.name}: tile {n + 1}/{len(tiles)}')

    empty = abtem.Potential(Atoms(cell=[cell, cell, thickness], pbc=True),
                            gpts=(gpts, gpts),
                            slice_thickness=spec.slice_thickness)
    vacuum = probe.multislice(
        empty, scan=abtem.CustomScan([[cell / 2, cell / 2]]),
        detectors=abtem.PixelatedDetector(max_angle='full'))
    vacuum = _binned(vacuum.compute(scheduler='synchronous').array, crop,
                     b, nq)[0]
    counts = spec.dose * spec.scan_step**2
    expected = patterns * counts
    if spec.transpose:  # the detector's axes swapped: Q = swap(A)
        expected = expected.swapaxes(-1, -2)
        vacuum = vacuum.T
    data = rng.poisson(expected)
    if data.max() > np.iinfo(np.uint16).max:
        raise ValueError(f'{spec.name}: counts overflow uint16')
    data = data.astype(np.uint16).reshape(*spec.scan_shape, nq, nq)

    centre_A = [(gpts // 2 - c - (b - 1) / 2) / b for c in crop]
    centre_Q = centre_A[::-1] if spec.transpose else centre_A
    truth_phase, pixel = _true_phase(abtem, atoms, spec, low)
    cut = round(0.1 * truth_phase.shape[0])  # 10 % borders, as scored
    details |= {
        'binning': b, 'simulation_cell_A': cell, 'gpts': gpts,
        'real_space_sampling_A': cell / gpts,
        'antialias_cutoff_mrad': 2 / 3 * gpts / 2 / cell * spec.wavelength
        * 1e3,
        'slice_thickness_A': spec.slice_thickness, 'tile': TILE,
        'frozen_phonons': False, 'projection': 'infinite',
        'parametrization': 'lobato', 'abtem': abtem.__version__,
        'mean_lost_fraction': float(1 - patterns.sum(axis=(1, 2)).mean()),
        'phase_skewness_inner': skewness(truth_phase[cut:-cut, cut:-cut]),
        'aberrations_specimen_frame': {
            k: (math.degrees(v) if k.startswith('phi') else v)
            for k, v in abtem_aberrations(spec).items()},
        'generator': source_hash(),
    }
    truth = Truth(
        name=spec.name, specimen=spec.specimen,
        description=spec.description, rotation_deg=spec.rotation_deg,
        transpose=spec.transpose, C1=spec.C1,
        aberrations=dict(spec.aberrations), dose=spec.dose,
        counts_per_pattern=counts, scan_step=spec.scan_step,
        q_pixel_mrad=spec.q_pixel_mrad, energy=spec.energy,
        semiangle=spec.semiangle, probe_center=tuple(centre_Q),
        probe_radius_px=spec.probe_radius_px, thickness=thickness,
        phase_pixel=pixel, extra=details, phase=truth_phase,
        probe_intensity=_probe_intensity(abtem, spec, pixel),
    )
    return data, (vacuum * counts).astype(np.float32), truth


def _to_specimen(points_R, spec):
    """Frame A (Å, before the world offset) of scan-frame points."""
    return specimen_frame(
        to_detector(points_R, spec.rotation_deg, spec.transpose),
        spec.transpose)


def check_orientation(energy: float = 300e3) -> None:
    """Raise unless abTEM's diffraction patterns have the orientation this
    module relies on: a smooth phase bump at +x (+y) of a focused probe
    pulls the CoM towards larger indices along axis 0 (1), by ∇φ/2π, with
    zero frequency at index n//2 (hand-computed: σ·dV/dr of a Gaussian
    bump, a few per cent of blur allowed)."""
    import abtem
    from abtem.core.energy import energy2sigma

    shape, sampling, width, height = (240, 200), 0.25, 6.0, 50.0
    x, y = (np.arange(n)[:, None] * sampling for n in shape)
    bump = height * np.exp(-((x - 30) ** 2 + (y.T - 20) ** 2)
                           / (2 * width**2))
    potential = abtem.PotentialArray(bump[None].astype(np.float32),
                                     slice_thickness=1.0, sampling=sampling)
    positions = np.array([[30.0 - width, 20.0], [30.0, 20.0 - width]])
    patterns = abtem.Probe(energy=energy, semiangle_cutoff=22.6).multislice(
        potential, scan=abtem.CustomScan(positions),
        detectors=abtem.PixelatedDetector(max_angle='full'),
    ).compute(scheduler='synchronous').array
    slope = energy2sigma(energy) * height / width * math.exp(-0.5)
    for axis, pattern in enumerate(patterns):
        index = np.arange(shape[axis]) - shape[axis] // 2
        other = 1 - axis
        com = (pattern.sum(axis=other) * index).sum() / pattern.sum()
        expected = slope / (2 * math.pi) * shape[axis] * sampling  # px
        if not 0.9 < com / expected < 1.05:
            raise RuntimeError(
                f'abTEM {abtem.__version__}: a phase gradient along axis '
                f'{axis} moved the CoM by {com:.4f} px, expected '
                f'{expected:.4f}: its pattern orientation changed')


def _tiles(scan_shape):
    """Flat indices of the probe positions, TILE × TILE at a time."""
    index = np.arange(scan_shape[0] * scan_shape[1]).reshape(scan_shape)
    for i in range(0, scan_shape[0], TILE):
        for j in range(0, scan_shape[1], TILE):
            yield index[i:i + TILE, j:j + TILE].ravel()


def _binned(fine, crop, b, nq):
    """Sum ``b`` × ``b`` fine pixels into each detector pixel; the
    detector starts at fine pixel ``crop`` (per axis)."""
    window = fine[:, crop[0]:crop[0] + b * nq, crop[1]:crop[1] + b * nq]
    return window.reshape(len(fine), nq, b, nq, b).sum(axis=(2, 4))


def _scan_grid(spec, pixel):
    """Scan-frame points (2, nx, ny) Å of the truth grid."""
    n = [round((s - 1) * spec.scan_step / pixel) + 1
         for s in spec.scan_shape]
    x, y = np.meshgrid(np.arange(n[0]) * pixel, np.arange(n[1]) * pixel,
                       indexing='ij')
    return np.stack([x, y])


def _true_phase(abtem, atoms, spec, low):
    """σ·∫V dz on the scan frame (rad), pixel step / TRUTH_UPSAMPLING."""
    from abtem.core.energy import energy2sigma
    from scipy import ndimage

    sampling = 0.15
    potential = abtem.Potential(
        atoms, sampling=sampling, slice_thickness=atoms.cell[2, 2],
        projection='infinite', parametrization='lobato').build().compute()
    projected = potential.array.sum(axis=0) * energy2sigma(spec.energy)
    fine = np.asarray(potential.sampling)
    pixel = spec.scan_step / TRUTH_UPSAMPLING
    blurred = ndimage.gaussian_filter(projected, pixel / 2 / fine,
                                      mode='wrap')
    points = _scan_grid(spec, pixel)
    flat = points.reshape(2, -1).T
    world = _to_specimen(flat, spec) - low
    coords = (world / fine).T
    values = ndimage.map_coordinates(blurred, coords, order=1,
                                     mode='grid-wrap')
    return values.reshape(points.shape[1:]).astype(np.float32), pixel


def _probe_intensity(abtem, spec, pixel):
    """|P|² at the entrance surface on the truth grid (scan frame),
    centred, summing to 1 (DPC's point-spread: the full-detector CoM at
    p is the gradient of φ weighted by |P(r − p)|²)."""
    from scipy import ndimage

    extent = spec.window
    wave = abtem.Probe(
        energy=spec.energy, semiangle_cutoff=spec.semiangle, sampling=0.05,
        extent=(extent, extent), **abtem_aberrations(spec),
    ).build(scan=abtem.CustomScan([[extent / 2, extent / 2]])).compute()
    intensity = np.abs(wave.array[0]) ** 2
    sampling = np.asarray(wave.sampling)
    intensity = ndimage.gaussian_filter(intensity, pixel / 2 / sampling)
    half = int(extent / 2 / pixel)
    offsets = np.arange(-half, half + 1) * pixel
    x, y = np.meshgrid(offsets, offsets, indexing='ij')
    flat = np.stack([x.ravel(), y.ravel()], axis=1)
    local = _to_specimen(flat, spec)
    coords = ((local + extent / 2) / sampling).T
    kernel = ndimage.map_coordinates(intensity, coords, order=1,
                                     mode='constant').reshape(x.shape)
    return (kernel / kernel.sum()).astype(np.float32)


def source_hash() -> str:
    """Hash of this module's source: a change re-simulates the cache."""
    return hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]


# --- files ------------------------------------------------------------------


def write(path, data, vacuum_probe, truth: Truth) -> Path:
    """One HDF5 file: counts (Blosc Zstd with bit shuffle, chunks of the
    whole scan × 16 × 16 detector pixels: neighbouring values then have
    similar means, which compresses Poisson counts best), the vacuum probe
    and the truth."""
    import h5py
    import hdf5plugin

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix('.partial')
    with h5py.File(temporary, 'w') as h5:
        chunks = (*data.shape[:2], *(min(16, n) for n in data.shape[2:]))
        h5.create_dataset('datacube', data=data, chunks=chunks,
                          **hdf5plugin.Blosc(
                              cname='zstd', clevel=9,
                              shuffle=hdf5plugin.Blosc.BITSHUFFLE))
        h5.create_dataset('vacuum_probe', data=vacuum_probe)
        group = h5.create_group('truth')
        group.attrs['json'] = json.dumps(truth.metadata())
        for name in ('phase', 'probe_intensity'):
            group.create_dataset(name, data=getattr(truth, name),
                                 compression='gzip')
    temporary.replace(path)
    return path


def read_truth(path) -> Truth:
    """The :class:`Truth` stored in a dataset file."""
    import h5py

    with h5py.File(path, 'r') as h5:
        group = h5['truth']
        values = json.loads(group.attrs['json'])
        values['probe_center'] = tuple(values['probe_center'])
        return Truth(**values, phase=group['phase'][()],
                     probe_intensity=group['probe_intensity'][()])


def load(name_or_path) -> Loaded:
    """A dataset (a name of :data:`SPECS`: the small one stored under
    tests/data/independent; or a file path), read with napari-phase's
    reader and calibrated with the scan step, energy and semiangle only
    (the detector pixel and beam centre are for the probe fit to find)."""
    from napari_phase import read_datacube, read_probe

    path = Path(name_or_path)
    if path.suffix != '.h5':
        path = SMALL_DIR / f'{name_or_path}.h5'
    truth = read_truth(path)
    with warnings.catch_warnings():  # no calibration in the file: expected
        warnings.filterwarnings('ignore', '.*does not give the',
                                UserWarning)
        cube = read_datacube(f'{path}::/datacube', lazy=False)
        probe, _ = read_probe(f'{path}::/vacuum_probe')
    cube.calibration.update(scan_step=truth.scan_step, energy=truth.energy,
                            semiangle=truth.semiangle)
    return Loaded(cube, probe, truth)


def seed_sized(name: str, cache=CACHE_DIR, workers: int = 2,
               progress=print) -> Path:
    """The seed-sized version of ``name`` (48×48×192²), simulated on first
    use and cached; the key includes this module's source."""
    spec = SPECS[name].seed_sized()
    key = hashlib.sha1((json.dumps(asdict(spec), sort_keys=True)
                        + source_hash()).encode()).hexdigest()[:10]
    path = Path(cache) / f'{name}-48x48x192-{key}.h5'
    if not path.exists():
        write(path, *simulate(spec, workers, progress))
    return path
