"""Single-slice ptychography by mini-batch gradient descent.

Equations and conventions: ALGORITHMS.md §1.5 (py4DSTEM 0.14.18's
``SingleslicePtychography``, gradient-descent method); the forward model is
the simulator's (compute/simulate.py):

- the object lives in the **detector frame**: scan position ``p_R``
  (Å) sits at ``p_Q = swap?(R(−θ)·p_R)`` (geometry.scan_to_detector), in
  object pixels of ``Δx = 1/(N·dk)`` Å, at sub-pixel precision;
- the probe is ``IFFT[A(k)·exp(−iχ(k))]`` with ``C10 = −defocus`` (Å) and
  the calibration's other aberrations, ``A`` = √(vacuum probe) or a soft
  aperture of the semiangle, scaled so ``Σ|FFT(P)|²`` = mean pattern
  counts;
- each pattern's beam is brought to the FFT origin: the whole-pixel part
  of the descan fit (CoM, 'plane') by rolling the pattern, the fractional
  part as an exact real-space ramp in the model (no interpolation of the
  counts);
- ``object_cropped`` is the object resampled into the **scan frame** on a
  grid of pixel Δx whose pixel (0, 0) is scan position (0, 0), covering
  the scanned field of view (the grid of ``SimulatedData.true_phase``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import dask
import numpy as np
from scipy import ndimage

from .backend import (
    ProgressCallback,
    available_memory,
    device_xp,
    fft_of,
    is_dask,
    iterate_scan_rows,
    to_numpy,
)
from .com import center_of_mass
from .datacube import DataCube
from .geometry import scan_to_detector
from .halfturn import positive_phase_sign
from .optics import fourier_probe
from .ptycho_kernels import CPU_CHUNK, Engine, Geometry, intensity_centre
from .reduce import run_steps

#: |defocus| above this (Å) is taken for a unit mistake.
MAX_DEFOCUS = 1e5
#: Fraction of the probe intensity near the window edge that means the
#: probe does not fit (warn above the first, refuse above the second).
EDGE_WARN, EDGE_REFUSE = 0.01, 0.1


@dataclass
class PtychoResult:
    """A (possibly partial) ptychographic reconstruction.

    ``object``: detector frame, padded (complex transmission, or the
    real potential V (rad) for object_type 'potential'); ``object_cropped``:
    the same resampled into the scan frame, field of view only, pixel
    ``pixel_size`` Å, pixel (0, 0) at ``origin`` Å from scan position
    (0, 0); ``probe``: complex, real space, centred at pixel N//2 (pixel
    Δx); ``errors``: normalised Fourier error per completed iteration.
    """

    object: np.ndarray
    object_cropped: np.ndarray
    probe: np.ndarray
    errors: list[float]
    pixel_size: float
    origin: tuple[float, float] = (0.0, 0.0)
    parameters: dict = field(default_factory=dict)

    @property
    def phase(self) -> np.ndarray:
        """Phase of ``object_cropped`` (rad)."""
        return _phase(self.object_cropped)

    @property
    def half_turn_check(self) -> str:
        """Whether the phase agrees with the half-turn of (θ, C1) it was
        given (compute/halfturn.py): a negatively skewed phase means the
        calibration's pair is probably (θ + 180°, −C1) away from the truth."""
        sign, _, text = positive_phase_sign(self.phase)
        if sign > 0:
            return f'half-turn consistent ({text})'
        return (
            'the phase is negatively skewed: the calibration\'s rotation '
            'and C1 are probably the other half-turn (θ + 180°, −C1); '
            f'{text}'
        )

    @property
    def amplitude(self) -> np.ndarray:
        """Amplitude of ``object_cropped`` (1 for a potential object)."""
        if np.iscomplexobj(self.object_cropped):
            return np.abs(self.object_cropped)
        return np.ones_like(self.object_cropped)

    @property
    def probe_fourier(self) -> np.ndarray:
        """The probe in Fourier space, centred (fftshift), unnormalised FFT."""
        return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(self.probe)))


def _phase(obj):
    return np.angle(obj) if np.iscomplexobj(obj) else obj


class PtychoStep:
    """What the iterator yields after each iteration: ``iteration`` (count
    done), ``error``, the current cropped ``phase`` (computed on first
    access; pixel ``pixel_size`` Å) and :meth:`result`, a snapshot. Unpacks as
    ``(iteration, error, phase)``."""

    def __init__(self, run: _Run):
        self.iteration = len(run.errors)
        self.error = run.errors[-1]
        self.pixel_size = run.pixel_size
        self._run = run

    @cached_property
    def phase(self) -> np.ndarray:
        return _phase(self._run.cropped())

    def result(self) -> PtychoResult:
        return self._run.result()

    def __iter__(self):
        return iter((self.iteration, self.error, self.phase))


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
    normalization_min: float = 1.0,
    object_type: str = 'complex',
    object_positivity: bool = True,
    amplitude_max: float = 1.0,
    object_padding_px: tuple[int, int] | None = None,
    device: str = 'cpu',
    storage: str | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[PtychoStep]:
    """Prepare a reconstruction and return a generator of
    :class:`PtychoStep`, one per iteration; its return value
    (``StopIteration.value``) is the :class:`PtychoResult`.

    ``cube`` (Rx, Ry, Qx, Qy) numpy/dask/cupy with a calibration giving
    scan_step (Å), q_pixel_mrad, energy (eV) and, without a vacuum probe,
    semiangle (mrad). ``vacuum_probe`` (Qx, Qy) intensity. ``defocus`` (Å,
    default −calibration.C1), ``rotation_deg``/``transpose`` (default: the
    calibration's, py4DSTEM convention), ``aberrations`` (polar, Å and
    degrees; default the calibration's) define the probe and positions.
    ``num_iter`` iterations of mini-batches of at most ``max_batch_size``
    patterns in a seeded random order; ``step_size``, ``normalization_min``
    (1: uniform step, 0: per-pixel normalisation); ``fix_probe`` keeps the
    initial probe. ``object_type`` 'complex' (amplitude ≤
    ``amplitude_max``) or 'potential' (O = exp(iV), V ≥ 0 with
    ``object_positivity``). ``object_padding_px``: margin (px) between the
    outermost probe centre and the object edge, ≥ N//2 (default N//2).
    ``device`` 'cpu'/'gpu' (falls back to the CPU with a warning).
    ``storage``: where the measured amplitudes live. The device (default
    for in-memory data) or 'cpu' (host memory, batches streamed to the
    GPU) hold all of them, computed in one pass; 'lazy' (default for dask
    data) holds none: each mini-batch is read from ``cube.data`` when it
    is needed (see :class:`_StreamedBatches`: batches are shuffled groups
    of whole scan blocks inside dask chunks, so every iteration reads the
    data once, chunk by chunk), memory is a few batches, not the cube, and
    the shifted probes are not cached. The batch order differs from the
    held storages' (a random permutation of single patterns), so the
    result differs from theirs by the order of the updates only.
    ``progress(fraction)`` after every batch;
    ``stop()`` is checked after every batch and ends the run (the partial
    result is returned).
    """
    run = _Run(
        cube, vacuum_probe, defocus=defocus, rotation_deg=rotation_deg,
        transpose=transpose, aberrations=aberrations, num_iter=num_iter,
        step_size=step_size, max_batch_size=max_batch_size,
        fix_probe=fix_probe, normalization_min=normalization_min,
        object_type=object_type, object_positivity=object_positivity,
        amplitude_max=amplitude_max, object_padding_px=object_padding_px,
        device=device, storage=storage, seed=seed,
    )
    return run.iterate(progress, stop)


def estimate_memory(
    n_patterns: int,
    detector_shape: tuple[int, int],
    object_shape: tuple[int, int],
    chunk_size: int,
    cache_probes: bool = False,
    amplitudes_on_device: bool = True,
    stored_patterns: int | None = None,
) -> dict[str, int]:
    """Bytes a reconstruction holds on its device, by part, and 'total':
    the amplitudes (float32) of ``stored_patterns`` patterns (default all
    ``n_patterns``; a lazy run holds two batches), the cached shifted probes
    (complex64, fixed probe only), the per-chunk working set (about 8
    complex arrays of a chunk of patterns) and the object with its
    gradient arrays."""
    pixels = int(np.prod(detector_shape))
    stored = n_patterns if stored_patterns is None else stored_patterns
    parts = {
        'amplitudes': stored * pixels * 4 if amplitudes_on_device else 0,
        'probe cache': n_patterns * pixels * 8 if cache_probes else 0,
        'working set': chunk_size * pixels * 8 * 8,
        'object': int(np.prod(object_shape)) * 32,
    }
    return parts | {'total': sum(parts.values())}


def _gigabytes(n: int) -> str:
    return f'{n / 1e9:.2f} GB'


class _Run:
    """A prepared reconstruction: checked parameters, preprocessed data,
    the engine, and the errors so far."""

    def __init__(self, cube: DataCube, vacuum_probe, **params):
        self.cube = cube
        self.params = _checked_parameters(cube, vacuum_probe, params)
        p = self.params
        self.xp = device_xp(p['device'])
        if self.xp is np:  # asked for, or fallen back to (with a warning)
            p['device'] = 'cpu'
            p['storage'] = 'lazy' if p['storage'] == 'lazy' else 'cpu'
        self.lazy = p['storage'] == 'lazy'
        self.storage_xp = np if p['storage'] in ('cpu', 'lazy') else self.xp
        n = cube.detector_shape[0]
        cal = cube.calibration
        self.pixel_size = 1.0 / (n * cal.q_pixel_inv_A)
        p['pixel_size'] = self.pixel_size
        self.centres, self.object_shape, self.offset = self._positions()
        self.batch = self._fit_in_memory()
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
        probe = self._initial_probe(vacuum_probe, beam[self.active].mean(0))
        shifts = np.round(fit).astype(np.int64)
        if self.lazy:
            amplitudes = None
            self.batches = _StreamedBatches(cube.data, shifts, active,
                                            self.batch)
        else:
            amplitudes = _centred_amplitudes(cube.data, shifts,
                                             self.storage_xp)
            self.batches = _HeldBatches(self.active, self.batch)
        self.probe_centre = intensity_centre(probe, np)
        geometry = Geometry.from_centres(self.centres, n, beam)
        self.engine = Engine(
            self.xp, fft_of(self.xp), amplitudes, geometry, probe,
            self.object_shape, p['object_type'], p['step_size'],
            p['normalization_min'], p['fix_probe'], chunk=self.chunk,
            cache_probes=self.cache_probes,
        )
        self.errors: list[float] = []

    # -- preparation -----------------------------------------------------
    def _positions(self):
        """Probe centres (J, 2) in object px, object shape, and the offset
        (px) from detector-frame position/Δx to object pixel."""
        cal, n = self.cube.calibration, self.cube.detector_shape[0]
        rx, ry = self.cube.scan_shape
        ix, iy = np.meshgrid(np.arange(rx), np.arange(ry), indexing='ij')
        p_R = np.stack([ix.ravel(), iy.ravel()]) * cal.scan_step
        p_Q = scan_to_detector(
            p_R, self.params['rotation_deg'], self.params['transpose']
        ).T / self.pixel_size
        pad = np.asarray(self.params['object_padding_px'] or (n // 2,) * 2)
        if np.any(pad < n // 2):
            raise ValueError(
                f'object_padding_px {tuple(pad)} must be at least N//2 = '
                f'{n // 2} px (the probe window must fit in the object)'
            )
        offset = pad - p_Q.min(axis=0)
        centres = p_Q + offset
        shape = tuple(int(v) for v in np.ceil(centres.max(axis=0)) + pad + 1)
        return centres, shape, offset

    def _fit_in_memory(self) -> int:
        """Choose chunking and probe caching so that the run fits; shrink
        the batch on a GPU, or refuse with the numbers."""
        p, xp = self.params, self.xp
        count = int(np.prod(self.cube.scan_shape))
        batch = min(p['max_batch_size'], count)
        on_cpu = xp is np
        free = available_memory(xp)

        def need(chunk, cache):
            return estimate_memory(
                count, self.cube.detector_shape, self.object_shape, chunk,
                cache, self.storage_xp is xp,
                stored_patterns=2 * batch if self.lazy else count,
            )

        chunk = min(batch, CPU_CHUNK) if on_cpu else batch
        cache = (p['fix_probe'] and not self.lazy
                 and need(chunk, True)['total'] < free // 2)
        parts = need(chunk, cache)
        if not on_cpu and parts['total'] > free:
            per_pattern = need(1, False)['working set']
            spare = free - need(0, False)['total']
            chunk = batch = max(0, min(batch, spare // per_pattern))
            if batch:
                warnings.warn(
                    f'max_batch_size reduced from {p["max_batch_size"]} to '
                    f'{batch} to fit in {_gigabytes(free)} of GPU memory.',
                    RuntimeWarning, stacklevel=4,
                )
                parts = need(chunk, False)
        if batch == 0 or parts['total'] > free:
            detail = ', '.join(
                f'{k} {_gigabytes(v)}' for k, v in parts.items()
            )
            hint = ''
            if not self.lazy:
                hint = " Use storage='lazy' (read each batch from the data)"
                hint += '.' if on_cpu else (
                    " or 'cpu' (amplitudes in host memory).")
            raise MemoryError(
                f'{self.cube.source}: ptychography needs about {detail} on '
                f'the {p["device"]} but only {_gigabytes(free)} is free. '
                f'Bin the detector or crop the scan.{hint}'
            )
        self.chunk, self.cache_probes, self.memory = chunk, cache, parts
        p['memory_bytes'] = parts['total']
        return batch

    def _initial_probe(self, vacuum_probe, beam_fraction):
        """Centred real-space probe (N, N) complex64, Σ|FFT|² = mean
        counts; refuses a probe that does not fit its window.

        The aperture (√ vacuum probe, or the semiangle) and χ are sampled
        around the beam's sub-pixel position on the detector (the vacuum
        probe's own, or ``beam_fraction`` of the data), exactly as the
        detector pixels sample them."""
        p, cal = self.params, self.cube.calibration
        n = self.cube.detector_shape[0]
        abers = {'C10': -p['defocus']} | p['aberrations']
        aperture = None
        if vacuum_probe is not None:
            aperture, beam_fraction = _vacuum_aperture(to_numpy(vacuum_probe))
        probe_k = fourier_probe(
            (n, n), self.pixel_size, cal.wavelength, cal.semiangle or 0.0,
            abers, edge_mrad=cal.q_pixel_mrad, aperture=aperture,
            offset_px=tuple(beam_fraction),
        )
        probe = _untilted(probe_k, beam_fraction)
        probe *= math.sqrt(
            self.mean_intensity / (n * n * np.sum(np.abs(probe) ** 2))
        )
        probe = np.fft.fftshift(probe).astype(np.complex64)
        _check_probe_fits(probe, p['defocus'], n * self.pixel_size)
        return probe

    # -- running -----------------------------------------------------------
    def iterate(self, progress, stop):
        p = self.params
        rng = np.random.default_rng(p['seed'])
        for iteration in range(p['num_iter']):
            plan = self.batches.plan(rng)
            error = 0.0
            for b, batch in enumerate(self.batches.read(plan)):
                error = error + self.engine.update(*batch)
                if progress is not None:
                    progress((iteration + (b + 1) / len(plan))
                             / p['num_iter'])
                if stop is not None and stop():
                    return self.result()
            self.engine.constrain(
                p['amplitude_max'], p['object_positivity'],
                self.probe_centre,
            )
            self.errors.append(
                float(error) / (self.mean_intensity * len(self.active))
            )
            yield PtychoStep(self)
        return self.result()

    def cropped(self) -> np.ndarray:
        """The object resampled into the scan frame (see module doc)."""
        engine = self.engine
        obj = engine.potential if engine.potential is not None else engine.obj
        return crop_to_scan_frame(
            to_numpy(obj), self.cube.scan_shape,
            self.cube.calibration.scan_step, self.pixel_size, self.offset,
            self.params['rotation_deg'], self.params['transpose'],
        )

    def result(self) -> PtychoResult:
        engine = self.engine
        obj = engine.potential if engine.potential is not None else engine.obj
        params = self.params | {'iterations_done': len(self.errors)}
        return PtychoResult(
            object=to_numpy(obj).copy(), object_cropped=self.cropped(),
            probe=to_numpy(engine.probe).copy(), errors=list(self.errors),
            pixel_size=self.pixel_size, parameters=params,
        )


def crop_to_scan_frame(obj, scan_shape, scan_step, pixel_size, offset,
                       rotation_deg, transpose) -> np.ndarray:
    """Resample a detector-frame object onto the scan-frame grid of pixel
    ``pixel_size`` Å whose (0, 0) is scan position (0, 0) (cubic spline,
    complex values: no phase wrapping issue)."""
    nx, ny = (
        int(round((n - 1) * scan_step / pixel_size)) + 1 for n in scan_shape
    )
    gx, gy = np.meshgrid(np.arange(nx), np.arange(ny), indexing='ij')
    r = np.stack([gx, gy]).astype(np.float64) * pixel_size
    coords = scan_to_detector(r, rotation_deg, transpose) / pixel_size
    coords += np.asarray(offset)[:, None, None]
    return ndimage.map_coordinates(obj, coords, order=3, mode='nearest')


def _checked_parameters(cube: DataCube, vacuum_probe, params: dict) -> dict:
    """Validate everything before any heavy work; fill calibration values."""
    if not isinstance(cube, DataCube):
        raise TypeError(f'ptychography needs a DataCube, got {type(cube)}')
    cal = cube.calibration
    needed = ['scan_step', 'q_pixel_mrad', 'energy']
    if vacuum_probe is None:
        needed.append('semiangle')
    cal.require(*needed, purpose='ptychography')
    for name, source in (('defocus', 'C1'), ('rotation_deg', 'rotation_deg'),
                         ('transpose', 'transpose')):
        if params[name] is None:
            cal.require(source, purpose=f'ptychography ({name})')
            value = getattr(cal, source)
            params[name] = -value if name == 'defocus' else value
    params['defocus'] = float(params['defocus'])
    params['rotation_deg'] = float(params['rotation_deg'])
    params['transpose'] = bool(params['transpose'])
    if abs(params['defocus']) > MAX_DEFOCUS:
        raise ValueError(
            f'defocus {params["defocus"]:g} Å is implausibly large (> '
            f'{MAX_DEFOCUS:g} Å): is it in nm or m instead of Å?'
        )
    abers = dict(cal.aberrations if params['aberrations'] is None
                 else params['aberrations'])
    if 'C10' in abers:
        raise ValueError('give the defocus as defocus= (Å, = −C10), not as '
                         'aberrations["C10"]')
    params['aberrations'] = abers
    qx, qy = cube.detector_shape
    if qx != qy:
        raise ValueError(
            f'{cube.source}: ptychography needs a square detector, got '
            f'{qx}×{qy}: crop or pad the patterns to a square'
        )
    if vacuum_probe is not None and tuple(vacuum_probe.shape) != (qx, qy):
        raise ValueError(
            f'the vacuum probe has shape {tuple(vacuum_probe.shape)} but '
            f'{cube.source} has {qx}×{qy} detector pixels'
        )
    if params['object_type'] not in ('complex', 'potential'):
        raise ValueError("object_type must be 'complex' or 'potential', "
                         f'not {params["object_type"]!r}')
    if params['storage'] not in (None, 'cpu', 'lazy', params['device']):
        raise ValueError(
            "storage must be None, 'cpu' (keep the amplitudes in host "
            "memory) or 'lazy' (read each batch from the data), not "
            f"{params['storage']!r}"
        )
    for name, low in (('num_iter', 0), ('max_batch_size', 1)):
        if int(params[name]) != params[name] or params[name] < low:
            raise ValueError(f'{name} must be an integer ≥ {low}')
    if not params['step_size'] > 0:
        raise ValueError('step_size must be > 0')
    if not 0 <= params['normalization_min'] <= 1:
        raise ValueError('normalization_min must be in [0, 1]')
    params['storage'] = params['storage'] or (
        'lazy' if is_dask(cube.data) else params['device']
    )
    params['vacuum_probe'] = vacuum_probe is not None
    params['calibration'] = cal.to_dict()
    return params


def _centred_amplitudes(data, shifts, storage_xp):
    """:func:`_centred` amplitudes of every pattern (J, N, N), one pass
    over ``data``; ``shifts`` (J, 2) whole px."""
    rx, ry, qx, qy = data.shape
    out = storage_xp.empty((rx * ry, qx, qy), np.float32)
    for rows, block in iterate_scan_rows(data):
        block = to_numpy(block).reshape(-1, qx, qy)
        mine = slice(rows.start * ry, rows.start * ry + len(block))
        out[mine] = storage_xp.asarray(_centred(block, shifts[mine]))
    return out


def _centred(patterns, shifts):
    """√max(I, 0) float32 (NaN counts as 0) of ``patterns`` (B, N, N), each
    rolled by −``shifts`` (B, 2; whole px, the beam's position) so that
    its beam sits at the FFT origin. A new array."""
    block = np.empty(patterns.shape, np.float32)
    for shift in np.unique(shifts, axis=0):
        pick = np.all(shifts == shift, axis=1)
        mine = slice(None) if pick.all() else pick  # a view, not a copy
        block[mine] = np.roll(patterns[mine], tuple(-shift), axis=(1, 2))
    return np.sqrt(np.fmax(block, 0, out=block), out=block)  # fmax: NaN → 0


class _HeldBatches:
    """Mini-batches of amplitudes held by the engine: each iteration, the
    active patterns in a seeded random order, split into equal batches."""

    def __init__(self, active, batch: int):
        self.active = active
        self.count = math.ceil(len(active) / batch)

    def plan(self, rng) -> list[np.ndarray]:
        return np.array_split(rng.permutation(self.active), self.count)

    def read(self, plan):
        """(pattern indices, None) per batch (the engine has the data)."""
        return ((batch, None) for batch in plan)


class _StreamedBatches:
    """Mini-batches read from the data as they are needed ('lazy' storage).

    The scan is cut into blocks: rectangles of at most ``batch`` positions
    inside one dask chunk (the whole scan for other arrays). Each
    iteration shuffles the blocks (seeded) and packs them, in that order,
    into batches of at most ``batch`` active patterns; a batch's blocks
    are read in one dask computation and become centred amplitudes
    (:func:`_centred`). So an iteration reads every chunk once, and memory
    holds two batches of raw patterns and amplitudes (the one in use and
    the next, read meanwhile)."""

    def __init__(self, data, shifts, active, batch: int):
        self.data, self.shifts, self.batch = data, shifts, batch
        flat = np.arange(active.size).reshape(data.shape[:2])
        self.blocks = []
        for rows, cols in _scan_blocks(data, batch):
            index = flat[rows, cols].ravel()
            keep = active[index]
            if keep.any():
                self.blocks.append((rows, cols, keep, index[keep]))

    def plan(self, rng) -> list[list[tuple]]:
        groups, count = [[]], 0
        for k in rng.permutation(len(self.blocks)):
            size = len(self.blocks[k][3])
            if groups[-1] and count + size > self.batch:
                groups.append([])
                count = 0
            groups[-1].append(self.blocks[k])
            count += size
        return groups

    def read(self, plan):
        """(pattern indices, amplitudes (B, N, N) float32) per batch; the
        next batch is read in a thread while this one is used."""
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self.read_group, plan[0])
            for group in plan[1:]:
                batch, pending = (pending.result(),
                                  pool.submit(self.read_group, group))
                yield batch
            yield pending.result()

    def read_group(self, group):
        qx, qy = self.data.shape[2:]
        blocks = [self.data[rows, cols] for rows, cols, _, _ in group]
        if is_dask(self.data):
            blocks = dask.compute(*blocks)
        patterns = np.concatenate([
            to_numpy(block).reshape(-1, qx, qy)[keep]
            for block, (_, _, keep, _) in zip(blocks, group, strict=True)
        ])
        index = np.concatenate([g[3] for g in group])
        return index, _centred(patterns, self.shifts[index])


def _scan_blocks(data, batch: int) -> list[tuple[slice, slice]]:
    """(rows, cols) rectangles of at most ``batch`` scan positions, each
    inside one dask chunk of ``data`` (the whole scan for other arrays),
    covering the scan."""
    rx, ry = data.shape[:2]
    chunks = data.chunks[:2] if is_dask(data) else ((rx,), (ry,))
    row_chunks, col_chunks = (_spans(sizes) for sizes in chunks)
    blocks = []
    for rows in row_chunks:
        for cols in col_chunks:
            width = min(cols.stop - cols.start, batch)
            height = max(1, batch // width)
            for r in range(rows.start, rows.stop, height):
                for c in range(cols.start, cols.stop, width):
                    blocks.append((slice(r, min(r + height, rows.stop)),
                                   slice(c, min(c + width, cols.stop))))
    return blocks


def _spans(sizes) -> list[slice]:
    """Consecutive slices of the given lengths."""
    ends = np.cumsum(sizes)
    return [slice(int(end - size), int(end))
            for size, end in zip(sizes, ends, strict=True)]


def _vacuum_aperture(intensity):
    """√I of a vacuum probe rolled by the whole-pixel part of its centre
    of mass (corner-centred), and the fractional remainder (px)."""
    if not np.all(np.isfinite(intensity)) or not np.any(intensity > 0):
        raise ValueError('the vacuum probe has no positive counts (or NaN)')
    weight = np.maximum(intensity, 0).astype(np.float64)
    centre = np.array([
        np.average(np.arange(n), weights=weight.sum(axis=1 - axis))
        for axis, n in enumerate(weight.shape)
    ])
    whole = np.round(centre).astype(int)
    aperture = np.sqrt(np.roll(weight, tuple(-whole), axis=(0, 1)))
    return aperture, centre - whole


def _untilted(probe_k, fraction):
    """Real-space, corner-centred probe from a Fourier probe whose beam sits
    ``fraction`` px off the FFT origin: IFFT, then the tilt ramp
    exp(2πi u·d/N) removed (the model puts each pattern's own ramp back)."""
    u = np.fft.fftfreq(probe_k.shape[0])
    ramp = np.exp(-2j * np.pi * (u[:, None] * fraction[0]
                                 + u[None, :] * fraction[1]))
    return np.fft.ifft2(probe_k) * ramp


def _check_probe_fits(probe, defocus, window):
    """Refuse (or warn about) a probe whose intensity reaches the window
    edge: wrong defocus magnitude or too small a window."""
    n = probe.shape[0]
    u = np.abs(np.arange(n) - n // 2)
    edge = np.maximum(u[:, None], u[None, :]) > 0.4 * n
    weight = np.abs(probe) ** 2
    fraction = float(weight[edge].sum() / weight.sum())
    message = (
        f'{100 * fraction:.0f} % of the probe intensity at defocus '
        f'{defocus:g} Å lies near the edge of the {window:.1f} Å '
        'reconstruction window: the probe does not fit. Check the defocus '
        '(Å, = −C1) or use a larger (less binned) detector.'
    )
    if fraction > EDGE_REFUSE:
        raise ValueError(message)
    if fraction > EDGE_WARN:
        warnings.warn(message, RuntimeWarning, stacklevel=4)
