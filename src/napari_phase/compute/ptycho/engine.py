"""Inner loops of gradient-descent ptychography: probe modes × slices.

ALGORITHMS.md §1.5 (the update equations) and §4.3 (what makes them
fast). Arrays are numpy or cupy (``xp``); nothing here knows which, except
the choice of the patch access strategy (access.patch_access).

Model, per probe position j (K probe modes P_k, S object slices O_s):

- ψ⁰_jk = P_jk, the mode shifted to the position (below); in slice s the
  wave is transmitted, ψ_jk·O_s, and propagated to the next slice by the
  Fresnel kernel (multislice.py); Ψ_jk = FFT of the last exit wave;
- the modes are mutually incoherent (Thibault & Menzel, Nature 494
  (2013)): the pattern is Σ_k |Ψ_jk|², its amplitude the measured √I.

One mini-batch: the Fourier projection Ψ_k·(√I/√Σ_k|Ψ_k|² − 1) gives the
exit-wave residual, which is carried back slice by slice (conj(O_s),
conj(H)); each slice's gradient Σ_k conj(ψ_s,k)·Δψ_k and illumination
Σ_k |ψ_s,k|² are added into object-sized accumulators; then the step
O_s += α·G_s/√(1e-16 + ((1−n)·W_s)² + (n·max W_s)²) (py4DSTEM's
``normalization_min`` n) is applied and the accumulators cleared **only on
the region the batch's patches cover** (its bounding box: batches are
drawn within windows of the scan, batches.py), so a batch costs O(its
patterns), never O(object). The probe modes take the step
Σ_j conj(O_0j)·Δψ⁰_jk, shifted back from each position (one FFT per
pattern), normalised by Σ_j |O_0j|² in the same way.

Frames
------
- The probe is kept **centred** in its N×N window (its centre at pixel
  ``N//2``), so that an object patch is a plain slice
  ``O[x : x + N, y : y + N]``. Centring multiplies the far field by a
  unimodular factor, so ``|Ψ|`` and the real Fourier-projection factor
  are unchanged (the measured amplitudes stay FFT-origin centred).
- Sub-pixel positions shift the probe by a Fourier phase ramp built from
  two 1D factors; the fractional position of the unscattered beam on the
  detector (descan) is a real-space ramp on the entrance wave, folded
  into the shifted probe. Both are exact (no interpolation of data).
- With a fixed probe and fixed positions the shifted probes are the same
  every iteration: those of the first positions, as many as a memory
  budget allows, are cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .access import patch_access
from .multislice import propagate

#: Bytes of one complex wave array per chunk on the CPU (8 patterns of
#: 192² px): small enough to stay in cache, large enough that numpy's
#: per-call overhead does not count.
CPU_CHUNK_BYTES = 8 * 192 * 192 * 8


def separable_ramps(xp, shifts, sign: float, frequencies):
    """exp(sign·2πi·f·s) as a column (B, 1, N, 1) and a row (B, 1, 1, N)
    for shifts ``s`` (B, 2) and 1D ``frequencies`` (N,); the singleton
    second axis broadcasts over probe modes."""
    s = xp.asarray(shifts, dtype=np.float64)
    col = xp.exp(sign * 2j * np.pi * s[:, 0, None] * frequencies)
    row = xp.exp(sign * 2j * np.pi * s[:, 1, None] * frequencies)
    return (
        col.astype(np.complex64)[:, None, :, None],
        row.astype(np.complex64)[:, None, None, :],
    )


def intensity(waves, xp):
    """Σ over the mode axis (1) of |waves|², float32 (B, N, N)."""
    power = waves.real**2
    power += waves.imag**2
    return power[:, 0] if power.shape[1] == 1 else power.sum(axis=1)


def fourier_residual(waves, amplitudes, xp):
    """Fourier projection, in place: ``waves`` (Ψ, (B, K, N, N)) becomes
    ``Ψ·(A/√Σ|Ψ|² − 1)`` (whose IFFT is the exit-wave residual);
    ``amplitudes`` (a scratch copy, (B, N, N)) is overwritten. Returns
    Σ(A − √Σ|Ψ|²)² (a 0-d device array)."""
    if waves.shape[1] == 1:
        magnitude = xp.abs(waves[:, 0])
    else:
        magnitude = xp.sqrt(intensity(waves, xp))
    difference = xp.subtract(amplitudes, magnitude, out=amplitudes)
    flat = difference.ravel()
    error = xp.vdot(flat, flat)
    xp.maximum(magnitude, 1e-12, out=magnitude)
    xp.divide(difference, magnitude, out=difference)
    waves *= difference[:, None]
    return error


def normalised_step(gradient, weight, step: float, minimum: float,
                    peak: float, xp):
    """α·gradient / √(1e-16 + ((1−n)·w)² + (n·peak)²) (py4DSTEM's
    ``normalization_min`` preconditioner, n = ``minimum``; n = 1: the
    uniform step α/peak); ``peak`` is max w over the batch."""
    if minimum == 1:
        return (step / max(peak, 1e-8)) * gradient
    denominator = xp.sqrt(
        1e-16 + ((1 - minimum) * weight) ** 2 + (minimum * peak) ** 2
    )
    return (step / denominator) * gradient


@dataclass
class Geometry:
    """Where each pattern sits: probe centres (J, 2) in object pixels
    (host float64; position correction moves them) and the fractional
    beam centres (J, 2, px) on the detector; ``size`` = N."""

    centres: np.ndarray
    beam: np.ndarray
    size: int

    def corners(self, index) -> np.ndarray:
        """Top-left object pixel of each N×N patch (B, 2) int."""
        whole = np.round(self.centres[index]).astype(np.int64)
        return whole - self.size // 2

    def fractions(self, index) -> np.ndarray:
        """Sub-pixel probe shift (B, 2) px."""
        centres = self.centres[index]
        return centres - np.round(centres)


class Engine:
    """State and one mini-batch update of mixed-state multislice
    ptychography.

    ``amplitudes`` (J, N, N) float32 are FFT-origin centred (device or
    host: host batches are copied over; None when every batch brings its
    own, see :meth:`update`); ``probes`` (K, N, N) complex64 are centred;
    ``obj`` (S, M, M') complex64 is the transmission function of each
    slice (with ``potential`` (S, M, M') float32 when the object type is
    'potential'); ``propagator`` (N, N) is the Fresnel kernel between
    slices (None for one slice).
    """

    def __init__(
        self,
        xp,
        fft,
        amplitudes,
        geometry: Geometry,
        probes,
        obj,
        object_type: str = 'complex',
        propagator=None,
        step_size: float = 0.5,
        normalization_min: float = 1.0,
        chunk: int | None = None,
        cache_count: int = 0,
        access: str | None = None,
    ):
        n = probes.shape[-1]
        self.xp, self.fft, self.size = xp, fft, n
        self.amplitudes = amplitudes
        self.geometry = geometry
        self.probes = xp.asarray(probes, dtype=np.complex64)
        if object_type == 'potential':
            self.potential = xp.asarray(obj, dtype=np.float32)
            self.obj = xp.exp(1j * self.potential).astype(np.complex64)
        else:
            self.potential = None
            self.obj = xp.asarray(obj, dtype=np.complex64)
        self.propagator = propagator
        self.step, self.minimum = step_size, normalization_min
        self.chunk = chunk or (max(1, CPU_CHUNK_BYTES // probes.nbytes)
                               if xp is np else 1 << 30)
        self.access = patch_access(xp, n, access)
        self.k = xp.asarray(np.fft.fftfreq(n))
        self.u = xp.asarray((np.arange(n) - n // 2) / n)
        self.gradient = xp.zeros(self.obj.shape, np.complex64)
        self.weight = xp.zeros(self.obj.shape, np.float32)
        self.cache_count, self.cache = cache_count, None
        self._entrance = None
        self.velocity = xp.zeros_like(self.probes)
        self.previous = self.probes.copy()
        # Set per iteration by the caller (see reconstruct._Run).
        self.fix_probe = True
        self.correct_positions = False
        self.position_step = 1.0
        self.max_position_step = np.inf  # px

    @property
    def num_slices(self) -> int:
        return self.obj.shape[0]

    # -- probes ---------------------------------------------------------
    def shifted_probes(self, index, probe_k):
        """P_jk (B, K, N, N): the modes (``probe_k`` = their FFTs) shifted
        to the fractional positions of patterns ``index``, times their
        beam-centring ramps; from the cache when it holds them."""
        if self.cache is not None and index.max() < len(self.cache):
            return self.cache[self.xp.asarray(index)]
        xp, g = self.xp, self.geometry
        col, row = separable_ramps(xp, g.fractions(index), -1, self.k)
        waves = probe_k[None] * col
        waves *= row
        probes = self.fft.ifft2(waves, overwrite_x=True)
        col, row = separable_ramps(xp, g.beam[index], 1, self.u)
        probes *= col
        probes *= row
        return probes

    def _usable_cache(self):
        """The cache when probe and positions are fixed (built on first
        use); dropped for good once either may change."""
        if not self.fix_probe or self.correct_positions:
            self.cache, self.cache_count = None, 0
        elif self.cache is None and self.cache_count:
            count = self.cache_count
            cache = self.xp.empty((count, *self.probes.shape), np.complex64)
            probe_k = self.fft.fft2(self.probes)
            for start in range(0, count, self.chunk):
                index = np.arange(start, min(count, start + self.chunk))
                cache[start : start + len(index)] = self.shifted_probes(
                    index, probe_k)
            self.cache = cache
        return self.cache

    # -- one mini-batch ------------------------------------------------
    def update(self, batch: np.ndarray, amplitudes=None):
        """One gradient step on the patterns ``batch`` (host int array);
        returns Σ(A − |Ψ|)² over the batch (0-d device array).
        ``amplitudes``: the batch's own (B, N, N), in batch order (a batch
        streamed from lazy data); default ``self.amplitudes[batch]``."""
        xp = self.xp
        cache = self._usable_cache()
        self._entrance = None
        probe_terms = None if self.fix_probe else [
            xp.zeros_like(self.probes),
            xp.zeros(self.probes.shape[1:], np.float32),
        ]
        shifts = (np.zeros((len(batch), 2)) if self.correct_positions
                  else None)
        probe_k = None
        if cache is None or batch.max() >= len(cache):
            probe_k = self.fft.fft2(self.probes)
        error = xp.zeros((), np.float64)
        for start in range(0, len(batch), self.chunk):
            index = batch[start : start + self.chunk]
            measured = (
                self.amplitudes[index] if amplitudes is None
                else amplitudes[start : start + self.chunk]
            )
            moves = None if shifts is None else shifts[start:][:len(index)]
            error = error + self._chunk(index, xp.asarray(measured),
                                        probe_k, probe_terms, moves)
        self._update_object(self._region(batch))
        if probe_terms is not None:
            gradient = self.fft.ifft2(probe_terms[0], overwrite_x=True)
            weight = probe_terms[1]
            self.probes += normalised_step(
                gradient, weight, self.step, self.minimum,
                float(weight.max()), xp)
        if shifts is not None:
            self._move(batch, shifts)
        return error

    def _region(self, batch):
        """The object region (two slices) the batch's patches cover."""
        corners = self.geometry.corners(batch)
        low, high = corners.min(axis=0), corners.max(axis=0) + self.size
        return slice(int(low[0]), int(high[0])), slice(int(low[1]),
                                                       int(high[1]))

    def _chunk(self, index, measured, probe_k, probe_terms, moves):
        xp, fft, access = self.xp, self.fft, self.access
        corners = self.geometry.corners(index)
        probes = self.shifted_probes(index, probe_k)
        patches = self._patches(corners)
        incident, far = self.forward(probes, patches,
                                     reuse=probe_terms is None)
        if moves is not None:
            moves[:] = self._position_steps(probes, corners, far, measured)
        amplitudes = xp.array(measured, copy=True)
        error = fourier_residual(far, amplitudes, xp)
        delta = fft.ifft2(far, overwrite_x=True)
        for s in reversed(range(self.num_slices)):
            wave = incident[s]
            access.scatter(self.weight[s], corners, self._illumination(
                wave, s))
            keep = s > 0 or probe_terms is not None
            terms = xp.conjugate(wave, out=None if keep else wave)
            terms = xp.multiply(terms, delta, out=None if keep else delta)
            access.scatter(self.gradient[s], corners,
                           terms[:, 0] if terms.shape[1] == 1
                           else terms.sum(axis=1))
            if keep:
                delta *= xp.conjugate(patches[s])[:, None]
                if s > 0:
                    delta = propagate(delta, xp.conjugate(self.propagator),
                                      fft)
        if probe_terms is not None:
            self._accumulate_probe(index, patches[0], delta, probe_terms)
        return error

    def _patches(self, corners):
        """Object patches (S × (B, N, N)) at ``corners``."""
        xp = self.xp
        shape = (len(corners), self.size, self.size)
        return [self.access.gather(layer, corners,
                                   xp.empty(shape, np.complex64))
                for layer in self.obj]

    def _illumination(self, wave, s):
        """Σ_k |ψ_s,k|² of a chunk, the preconditioner of slice s; for the
        entrance, the modes' Σ_k |P_k|² at whole pixels (the sub-pixel
        shifts, which cannot change the fixed point, are left out: one
        array for the whole chunk)."""
        if s:
            return intensity(wave, self.xp)
        if self._entrance is None:
            self._entrance = intensity(self.probes[None], self.xp)[0]
        return self.xp.broadcast_to(self._entrance, wave[:, 0].shape)

    def forward(self, probes, patches, reuse=False):
        """The waves incident on each slice (S × (B, K, N, N)) and the far
        field Ψ (B, K, N, N) of ``probes`` through ``patches``; ``reuse``:
        the first slice's patches may hold its exit wave (one mode)."""
        incident, wave = [], probes
        for s, patch in enumerate(patches):
            incident.append(wave)
            if reuse and s == 0 and wave.shape[1] == 1:
                exit_wave = self.xp.multiply(wave, patch[:, None],
                                             out=patch[:, None])
            else:
                exit_wave = wave * patch[:, None]
            if s + 1 < len(patches):
                wave = propagate(exit_wave, self.propagator, self.fft)
        return incident, self.fft.fft2(exit_wave, overwrite_x=True)

    def _accumulate_probe(self, index, patches, delta, probe_terms):
        """The probe gradient, in Fourier space: Σ_j of Δψ⁰_jk (already
        times conj(O_0j)) with each pattern's beam ramp and sub-pixel
        shift undone (the exact adjoint of :meth:`shifted_probes`; py4DSTEM
        leaves the shift, which blurs the gradient and slows the probe's
        convergence), and Σ_j |O_0j|²."""
        xp = self.xp
        col, row = separable_ramps(xp, self.geometry.beam[index], -1,
                                   self.u)
        delta *= col
        delta *= row
        spectra = self.fft.fft2(delta, overwrite_x=True)
        col, row = separable_ramps(xp, self.geometry.fractions(index), 1,
                                   self.k)
        spectra *= col
        spectra *= row
        probe_terms[0] += spectra.sum(axis=0)
        probe_terms[1] += intensity(patches[:, None], xp).sum(axis=0)

    def _update_object(self, region):
        """The normalised step on the batch's region, whose accumulators
        are then cleared."""
        xp = self.xp
        for s in range(self.num_slices):
            gradient = self.gradient[s][region]
            weight = self.weight[s][region]
            step = normalised_step(gradient, weight, self.step, self.minimum,
                                   float(weight.max()), xp)
            if self.potential is None:
                self.obj[s][region] += step
            else:
                # O = exp(iV): ∂/∂V of the patch sum is Im(conj(O)·G).
                potential = self.potential[s][region]
                potential += (xp.conjugate(self.obj[s][region]) * step).imag
                self.obj[s][region] = xp.exp(1j * potential)
            gradient[...] = 0
            weight[...] = 0

    def accelerate_probes(self, momentum: float):
        """Heavy-ball momentum on the probe modes, once per iteration (as
        mPIE, Maiden, Johnson & Li, Optica 4 (2017)): v ← η·v + (P − P'),
        P ← P + η·v, with P' the modes at the end of the previous
        iteration and η = ``momentum``. The gradient along the nearly flat
        directions of a wrong defocus is small but steady: momentum
        accumulates it."""
        if momentum and not self.fix_probe:
            self.velocity *= momentum
            self.velocity += self.probes - self.previous
            self.probes += momentum * self.velocity

    def end_iteration(self):
        """Remember the probe modes for the next momentum step."""
        self.previous = self.probes.copy()

    # -- positions -------------------------------------------------------
    def _position_steps(self, probes, corners, far, measured):
        """Per pattern, the shift (B, 2, px) that best explains the
        intensity residual: least squares of ΔI = A² − Σ|Ψ|² against
        ∂I/∂x, ∂I/∂y (py4DSTEM's position correction), the derivatives
        from patches one pixel further along each axis (linearised:
        2·Re Σ_k conj(Ψ_k)·(Ψ_k(x + 1) − Ψ_k)). Unlike py4DSTEM, each
        pixel is weighted by 1/I (Poisson counts) and the normal
        equations get a prior of (1 px)⁻²: a pattern whose intensities
        hardly depend on its position (a probe on empty support) moves
        little, where plain least squares would follow its noise."""
        xp = self.xp
        count = len(corners)
        model = intensity(far, xp)
        weight = (1 / xp.maximum(model, 1)).reshape(count, -1)
        residual = (measured**2 - model).reshape(count, -1)
        slopes = []
        for axis in range(2):
            step = np.zeros(2, np.int64)
            step[axis] = 1
            _, moved = self.forward(probes, self._patches(corners + step))
            moved -= far
            moved *= xp.conjugate(far)
            slopes.append((2 * moved.real.sum(axis=1)).reshape(count, -1))
        dx, dy = slopes
        wx, wy = dx * weight, dy * weight
        terms = ((wx * dx).sum(1), (wx * dy).sum(1), (wy * dy).sum(1),
                 (wx * residual).sum(1), (wy * residual).sum(1))
        a, b, c, u, v = (np.asarray(_host(t), np.float64) for t in terms)
        a, c = a + 1, c + 1
        det = a * c - b * b
        return np.stack([(c * u - b * v) / det, (a * v - b * u) / det],
                        axis=1)

    def _move(self, batch, shifts):
        """Apply ``position_step``·shifts (each at most
        ``max_position_step`` px long) to the batch's centres, kept where
        their patches (and the one-pixel derivative) fit the object."""
        shifts = shifts * self.position_step
        length = np.hypot(shifts[:, 0], shifts[:, 1])
        too_far = length > self.max_position_step
        shifts[too_far] *= (self.max_position_step
                            / length[too_far])[:, None]
        centres = self.geometry.centres
        centres[batch] += shifts
        self.clip_positions()

    def clip_positions(self):
        """Keep every patch, and its neighbour one pixel further, inside
        the object."""
        n, shape = self.size, np.array(self.obj.shape[1:])
        np.clip(self.geometry.centres, n // 2, shape - n - 1 + n // 2,
                out=self.geometry.centres)


def _host(array):
    """A device scalar or array as numpy."""
    return array.get() if hasattr(array, 'get') else np.asarray(array)


def intensity_centre(probes, xp) -> np.ndarray:
    """Centre of mass of Σ_k|P_k|² (px, array axes −2 and −1) of
    ``probes`` (…, N, N), host floats."""
    weight = xp.abs(probes) ** 2
    weight = weight.reshape(-1, *weight.shape[-2:]).sum(axis=0)
    total = float(weight.sum())
    x = xp.arange(weight.shape[0])
    y = xp.arange(weight.shape[1])
    return np.array([
        float((weight.sum(axis=1) * x).sum()) / total,
        float((weight.sum(axis=0) * y).sum()) / total,
    ])
