"""Preparing and running a reconstruction: :func:`ptychography_iter`.

The forward model is the simulator's (compute/simulate.py), extended by
probe modes and slices (engine.py); each pattern's beam is brought to the
FFT origin: the whole-pixel part of the descan fit (CoM, 'plane') by
rolling the pattern, the fractional part as an exact real-space ramp in
the model (no interpolation of the counts).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from ..backend import (
    ProgressCallback,
    available_memory,
    device_xp,
    fft_of,
    to_numpy,
)
from ..com import center_of_mass
from ..datacube import DataCube
from ..reduce import run_steps
from . import constraints
from .batches import HeldBatches, StreamedBatches, centred_amplitudes
from .engine import CPU_CHUNK_BYTES, Engine, Geometry, intensity_centre
from .initial_probe import initial_modes, initial_probe
from .memory import fit_in_memory
from .multislice import fresnel_propagator
from .parameters import checked_parameters
from .positions import (
    affine_fit,
    crop_to_scan_frame,
    from_scan_frame,
    object_grid,
    to_scan_frame,
)
from .result import PtychoResult, PtychoStep

#: The settings of one run, recorded in ``parameters['runs']``.
RUN_SETTINGS = (
    'defocus', 'rotation_deg', 'transpose', 'aberrations', 'num_iter',
    'step_size', 'max_batch_size', 'fix_probe', 'fix_probe_iterations',
    'probe_momentum', 'normalization_min', 'num_probes', 'num_slices',
    'slice_thickness', 'object_type', 'object_positivity', 'amplitude_max',
    'probe_centring', 'probe_aperture', 'gaussian_sigma', 'q_lowpass',
    'q_highpass', 'butterworth_order', 'tv_weight', 'kz_regularization',
    'position_correction', 'position_correction_start', 'position_step',
    'max_position_update', 'position_affine', 'object_padding_px',
    'vacuum_probe', 'seed',
)


def ptychography(cube: DataCube, vacuum_probe=None, **kwargs) -> PtychoResult:
    """Reconstruct ``cube``: see :func:`ptychography_iter` for the
    parameters; runs all iterations and returns the result."""
    return run_steps(ptychography_iter(cube, vacuum_probe, **kwargs))


def ptychography_iter(
    cube: DataCube,
    vacuum_probe=None,
    *,
    defocus: float | None = None,
    rotation_deg: float | None = None,
    transpose: bool | None = None,
    aberrations: dict | None = None,
    num_iter: int = 64,
    step_size: float = 0.5,
    max_batch_size: int = 512,
    fix_probe: bool = False,
    fix_probe_iterations: int = 0,
    probe_momentum: float = 0.8,
    normalization_min: float = 1.0,
    num_probes: int | None = None,
    num_slices: int | None = None,
    slice_thickness: float | None = None,
    object_type: str | None = None,
    object_positivity: bool = True,
    amplitude_max: float = 1.0,
    probe_centring: bool = True,
    probe_aperture: str | None = None,
    gaussian_sigma: float = 0.0,
    q_lowpass: float | None = None,
    q_highpass: float | None = None,
    butterworth_order: float = 2.0,
    tv_weight: float = 0.0,
    kz_regularization: float = 0.0,
    position_correction: bool = False,
    position_correction_start: int = 0,
    position_step: float = 1.0,
    max_position_update: float = 0.5,
    position_affine: bool = False,
    object_padding_px: tuple[int, int] | None = None,
    device: str = 'cpu',
    storage: str | None = None,
    seed: int | None = None,
    continue_from: PtychoResult | None = None,
    progress: ProgressCallback | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[PtychoStep]:
    """Prepare a reconstruction and return a generator of
    :class:`PtychoStep`, one per iteration; its return value
    (``StopIteration.value``) is the :class:`PtychoResult`.

    Data and geometry: ``cube`` (Rx, Ry, Qx, Qy) numpy/dask/cupy with a
    calibration giving scan_step (Å), q_pixel_mrad, energy (eV) and,
    without a vacuum probe, semiangle (mrad). ``vacuum_probe`` (Qx, Qy)
    intensity. ``defocus`` (Å, default −calibration.C1),
    ``rotation_deg``/``transpose`` (default: the calibration's, py4DSTEM
    convention), ``aberrations`` (polar, Å and degrees; default the
    calibration's) define the probe and positions.

    Iterations: ``num_iter`` iterations of mini-batches of at most
    ``max_batch_size`` nearby patterns (batches.py) in a seeded random
    order; ``step_size`` α, ``normalization_min`` n (1: uniform step, 0:
    per-pixel normalisation). ``fix_probe`` keeps the initial probe;
    ``fix_probe_iterations`` keeps it for that many iterations, then
    updates it, with heavy-ball momentum ``probe_momentum`` η once per
    iteration (0: plain gradient descent; engine.accelerate_probes).

    Model: ``num_probes`` mixed-state probe modes (default 1),
    initialised from the vacuum probe (initial_probe.initial_modes) and
    kept orthogonal; ``num_slices`` object slices (default 1) spaced by
    ``slice_thickness`` Å (multislice.py); ``object_type`` 'complex'
    (default) or 'potential' (O = exp(iV)).

    Constraints, once per iteration (constraints.py): object amplitude ≤
    ``amplitude_max`` (complex) or V ≥ 0 with ``object_positivity``
    (potential); ``gaussian_sigma`` (Å) Gaussian blur; Butterworth
    ``q_lowpass``/``q_highpass`` (Å⁻¹) of order ``butterworth_order``;
    ``tv_weight`` (rad) total-variation denoising; ``kz_regularization``
    (γ, no unit) between slices. Probe (when updated): ``probe_centring``
    (its intensity centre kept where it started); ``probe_aperture``
    'amplitude' (Fourier amplitude fixed to the initial aperture) or
    'support' (zero outside it).

    Positions: ``position_correction`` refines every probe position from
    iteration ``position_correction_start`` on, each update
    ``position_step`` times the least-squares shift and at most
    ``max_position_update`` Å long; ``position_affine`` keeps them an
    affine transform of the scan grid (positions.affine_fit). A common
    shift of all positions and of the object is not constrained (it
    changes no pattern): ``positions`` and ``object`` move together.

    ``continue_from``: a previous result of the same cube to continue:
    its object, probe modes (and momentum), positions and iteration count
    (the batch order of iteration i depends only on ``seed`` and i), so
    that 10 iterations then 6 more, with the same settings, equal 16 in
    one run; the model parameters (defocus, rotation, probe modes,
    slices, …) are its own (given again, they must be equal) and
    ``seed`` defaults to its seed (else 0); the other settings are the
    ones given (or the defaults), so a run may continue differently (a
    free probe, position correction, constraints).

    ``object_padding_px``: margin (px) between the outermost probe centre
    and the object edge, ≥ N//2 (default N//2, and one scan step more
    with position correction). ``device`` 'cpu'/'gpu'
    (falls back to the CPU with a warning). ``storage``: where the
    measured amplitudes live. The device (default for in-memory data) or
    'cpu' (host memory, batches streamed to the GPU) hold all of them,
    computed in one pass; 'lazy' (default for dask data) holds none: each
    mini-batch is read from ``cube.data`` when it is needed (batches.py),
    memory is a few batches, not the cube. ``progress(fraction)`` after
    every batch; ``stop()`` is checked after every batch and ends the run
    (the partial result is returned).
    """
    settings = {key: value for key, value in locals().items()
                if key in RUN_SETTINGS and key != 'vacuum_probe'}
    run = _Run(cube, vacuum_probe, continue_from, settings | {
        'device': device, 'storage': storage})
    return run.iterate(progress, stop)


class _Run:
    """A prepared reconstruction: checked parameters, preprocessed data,
    the engine, and the errors so far."""

    def __init__(self, cube: DataCube, vacuum_probe, previous, params):
        self.cube = cube
        self.params = p = checked_parameters(cube, vacuum_probe, params,
                                             previous)
        self.xp = device_xp(p['device'])
        if self.xp is np:  # asked for, or fallen back to (with a warning)
            p['device'] = 'cpu'
            p['storage'] = 'lazy' if p['storage'] == 'lazy' else 'cpu'
        self.lazy = p['storage'] == 'lazy'
        self.storage_xp = np if p['storage'] in ('cpu', 'lazy') else self.xp
        self.fft = fft_of(self.xp)
        n = cube.detector_shape[0]
        cal = cube.calibration
        self.pixel_size = p['pixel_size'] = 1.0 / (n * cal.q_pixel_inv_A)
        self.nominal, self.object_shape, self.offset = self._grid(n)
        self._fit_in_memory()
        com = center_of_mass(cube.data, descan='plane')
        counts = com.intensity.ravel()
        nan_patterns = ~np.isfinite(counts)
        if nan_patterns.any():
            warnings.warn(
                f'{cube.source}: {int(nan_patterns.sum())} pattern(s) '
                'contain NaN values: they are left out of the '
                'reconstruction.', RuntimeWarning, stacklevel=3,
            )
        active = ~nan_patterns & (np.nan_to_num(counts) > 0)
        if not active.any():
            raise ValueError(f'{cube.source}: no pattern has any counts')
        self.active = np.flatnonzero(active)
        self.mean_intensity = float(counts[active].mean())
        fit = com.fit.reshape(2, -1).T
        beam = fit - np.round(fit)
        shifts = np.round(fit).astype(np.int64)
        if self.lazy:
            amplitudes = None
            self.batches = StreamedBatches(cube.data, shifts, active,
                                           self.batch)
        else:
            amplitudes = centred_amplitudes(cube.data, shifts,
                                            self.storage_xp)
            self.batches = HeldBatches(cube.data, active, self.batch)
        probe = initial_probe(
            None if vacuum_probe is None else to_numpy(vacuum_probe),
            beam[self.active].mean(0), size=n, pixel_size=self.pixel_size,
            wavelength=cal.wavelength, semiangle=cal.semiangle,
            q_pixel_mrad=cal.q_pixel_mrad, defocus=p['defocus'],
            aberrations=p['aberrations'],
            mean_intensity=self.mean_intensity)
        probes = initial_modes(probe, p['num_probes'])
        self.probe_centre = intensity_centre(probes, np)
        aperture = np.sqrt((np.abs(np.fft.fft2(probes)) ** 2).sum(axis=0))
        self.aperture = self.xp.asarray(aperture.astype(np.float32))
        self.support = self.xp.asarray(aperture > 0.05 * aperture.max())
        obj, probes, centres, velocity, self.errors = self._start(
            previous, probes)
        self.first = len(self.errors)  # iterations of the runs continued
        self.runs = ([] if previous is None
                     else list(previous.parameters['runs']))
        self.runs.append({key: p[key] for key in RUN_SETTINGS})
        propagator = None
        if p['num_slices'] > 1:
            propagator = fresnel_propagator(n, self.pixel_size,
                                            cal.wavelength,
                                            p['slice_thickness'], self.xp)
        self.engine = Engine(
            self.xp, self.fft, amplitudes, Geometry(centres, beam, n),
            probes, obj, p['object_type'], propagator, p['step_size'],
            p['normalization_min'], chunk=self.chunk,
            cache_count=self.cached,
        )
        if velocity is not None:
            self.engine.velocity = self.xp.asarray(velocity)
        self.engine.clip_positions()

    # -- preparation -----------------------------------------------------
    def _grid(self, n):
        """Nominal centres, object shape and offset (positions.py); the
        default padding is N//2, plus a scan step (room for corrected
        positions) with position correction."""
        p, cal = self.params, self.cube.calibration
        pad = p['object_padding_px']
        if pad is None:
            room = math.ceil(cal.scan_step / self.pixel_size)
            pad = (n // 2 + room * p['position_correction'],) * 2
        if np.any(np.asarray(pad) < n // 2):
            raise ValueError(
                f'object_padding_px {tuple(pad)} must be at least N//2 = '
                f'{n // 2} px (the probe window must fit in the object)'
            )
        p['object_padding_px'] = tuple(int(v) for v in pad)
        return object_grid(self.cube.scan_shape, cal.scan_step,
                           self.pixel_size, p['rotation_deg'],
                           p['transpose'], np.asarray(pad))

    def _fit_in_memory(self):
        """Chunking, batch and probe caching that fit (memory.py)."""
        p = self.params
        self.chunk, self.batch, self.cached, parts = fit_in_memory(
            count=int(np.prod(self.cube.scan_shape)),
            detector_shape=self.cube.detector_shape,
            object_shape=self.object_shape, max_batch=p['max_batch_size'],
            cpu_chunk_bytes=CPU_CHUNK_BYTES, on_cpu=self.xp is np,
            free=available_memory(self.xp),
            amplitudes_on_device=self.storage_xp is self.xp,
            lazy=self.lazy,
            cache_allowed=p['fix_probe'] or p['fix_probe_iterations'] > 0,
            num_probes=p['num_probes'], num_slices=p['num_slices'],
            position_correction=p['position_correction'],
            source=self.cube.source, device=p['device'])
        self.memory = parts
        p['memory_bytes'] = parts['total']

    def _start(self, previous, probes):
        """Object (S, M, M'), probe modes, centres (J, 2) px, probe
        velocity and errors: new, or those of the result continued."""
        shape = (self.params['num_slices'], *self.object_shape)
        if previous is None:
            empty = (np.zeros if self.params['object_type'] == 'potential'
                     else np.ones)
            return empty(shape), probes, self.nominal.copy(), None, []
        if previous.parameters.get('half_turn_flipped'):
            raise ValueError(
                'continue_from was turned to the other half-turn after it '
                'ran (its phase is shown negated): a run cannot continue it; '
                "reconstruct again from the calibration's pair")
        obj = np.array(previous.object)  # a copy: the result stays as it was
        obj = obj.reshape(-1, *obj.shape[-2:])
        if obj.shape != shape:
            raise ValueError(
                f'continue_from has an object of shape {obj.shape}, this '
                f'scan needs {shape}: it was reconstructed from other data')
        p = self.params
        centres = from_scan_frame(
            np.asarray(previous.positions).reshape(-1, 2), self.offset,
            self.pixel_size, p['rotation_deg'], p['transpose'])
        modes = previous.probe_modes
        modes = np.array(previous.probe[None] if modes is None else modes)
        velocity = previous.probe_velocity
        velocity = None if velocity is None else np.array(velocity)
        return obj, modes, centres, velocity, list(previous.errors)

    # -- running -----------------------------------------------------------
    def iterate(self, progress, stop):
        p = self.params
        for step in range(p['num_iter']):
            iteration = self.first + step
            plan = self.batches.plan(
                np.random.default_rng([p['seed'], iteration]))
            self._configure(iteration)
            error, count = 0.0, self.batches.count(plan)
            for b, batch in enumerate(self.batches.read(plan)):
                error = error + self.engine.update(*batch)
                if progress is not None:
                    progress((step + (b + 1) / count) / p['num_iter'])
                if stop is not None and stop():
                    return self.result()
            self._constrain()
            self.errors.append(
                float(error) / (self.mean_intensity * len(self.active))
            )
            yield PtychoStep(self)
        return self.result()

    def _configure(self, iteration):
        """What the engine updates in this iteration."""
        p, engine = self.params, self.engine
        engine.fix_probe = (p['fix_probe']
                            or iteration < p['fix_probe_iterations'])
        engine.correct_positions = (
            p['position_correction']
            and iteration >= p['position_correction_start'])
        engine.position_step = p['position_step']
        engine.max_position_step = p['max_position_update'] / self.pixel_size

    def _constrain(self):
        """The constraints of the module doc of constraints.py."""
        p, engine, xp, fft = self.params, self.engine, self.xp, self.fft
        potential = engine.potential is not None
        obj = engine.potential if potential else engine.obj
        if p['gaussian_sigma']:
            obj = constraints.gaussian_blur(obj, p['gaussian_sigma'],
                                            self.pixel_size, fft)
        if p['q_lowpass'] or p['q_highpass']:
            obj = constraints.butterworth(
                obj, p['q_lowpass'], p['q_highpass'], p['butterworth_order'],
                self.pixel_size, fft)
        if p['tv_weight']:
            obj = constraints.total_variation(obj, p['tv_weight'], xp)
        if p['kz_regularization'] and p['num_slices'] > 1:
            obj = constraints.kz_regularization(
                obj, p['kz_regularization'], p['slice_thickness'],
                self.pixel_size, fft)
        if potential:
            if p['object_positivity']:
                constraints.positive_potential(obj, xp)
            engine.potential = obj
            engine.obj = xp.exp(1j * obj).astype(np.complex64)
        else:
            engine.obj = constraints.clip_amplitude(obj, p['amplitude_max'],
                                                    xp)
        if not engine.fix_probe:
            engine.accelerate_probes(p['probe_momentum'])
            engine.probes = self._constrained_probes(engine.probes)
        engine.end_iteration()
        if engine.correct_positions and p['position_affine']:
            self._fit_positions()

    def _constrained_probes(self, probes):
        p, xp, fft = self.params, self.xp, self.fft
        if p['probe_centring']:
            probes = constraints.recentre(probes, self.probe_centre, fft, xp)
        if p['probe_aperture'] == 'amplitude':
            probes = constraints.fourier_amplitude(probes, self.aperture,
                                                   fft, xp)
        elif p['probe_aperture'] == 'support':
            probes = constraints.fourier_support(probes, self.support,
                                                 fft, xp)
        return constraints.orthogonalise(probes, xp)

    def _fit_positions(self):
        """The corrected positions replaced by their affine fit to the scan
        grid (positions.affine_fit)."""
        centres = self.engine.geometry.centres
        centres[:], _ = affine_fit(self.nominal, centres, self.active)
        self.engine.clip_positions()

    # -- results -----------------------------------------------------------
    def _object(self) -> np.ndarray:
        engine = self.engine
        obj = engine.potential if engine.potential is not None else engine.obj
        obj = to_numpy(obj)
        return obj[0] if obj.shape[0] == 1 else obj

    def cropped(self) -> np.ndarray:
        """The object resampled into the scan frame (positions.py)."""
        p = self.params
        return crop_to_scan_frame(
            self._object(), self.cube.scan_shape,
            self.cube.calibration.scan_step, self.pixel_size, self.offset,
            p['rotation_deg'], p['transpose'],
        )

    def probe_modes(self) -> np.ndarray:
        """The probe modes (K, N, N), a host copy."""
        return to_numpy(self.engine.probes).copy()

    def positions(self) -> np.ndarray:
        """The probe positions (Rx, Ry, 2), Å, scan frame."""
        p = self.params
        scan = to_scan_frame(self.engine.geometry.centres, self.offset,
                             self.pixel_size, p['rotation_deg'],
                             p['transpose'])
        return scan.reshape(*self.cube.scan_shape, 2)

    def result(self) -> PtychoResult:
        """A snapshot; ``runs`` record the iterations each run did (a run
        stopped early: those done), so that a recipe replays them."""
        runs = [dict(r) for r in self.runs]
        runs[-1]['num_iter'] = len(self.errors) - self.first
        params = self.params | {'iterations_done': len(self.errors),
                                'runs': runs}
        modes = self.probe_modes()
        return PtychoResult(
            object=self._object().copy(), object_cropped=self.cropped(),
            probe=modes[0].copy(), errors=list(self.errors),
            pixel_size=self.pixel_size, parameters=params,
            probe_modes=modes, positions=self.positions(),
            probe_velocity=to_numpy(self.engine.velocity).copy(),
        )
