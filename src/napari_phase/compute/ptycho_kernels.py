"""Inner loops of single-slice gradient-descent ptychography.

ALGORITHMS.md §1.5 (the update equations) and §4.3 (what makes them
fast). Arrays are numpy or cupy (``xp``); nothing here knows which, except
the choice of the patch access strategy (:func:`patch_access`).

Frames and conventions
----------------------
- The probe is kept **centred** in its N×N window (its centre at pixel
  ``N//2``), so that an object patch is a plain slice
  ``O[x : x + N, y : y + N]``. Centring multiplies the far field by a
  unimodular factor, so ``|Ψ|`` and the real Fourier-projection factor
  are unchanged (the measured amplitudes stay FFT-origin centred).
- Sub-pixel positions shift the probe by a Fourier phase ramp built from
  two 1D factors; the fractional position of the unscattered beam on the
  detector (descan) is a real-space ramp on the exit wave, folded into the
  shifted probe. Both are exact (no interpolation of data).
- With a fixed probe the shifted probes are the same every iteration and
  may be cached (one IFFT per position, once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import next_fast_len

#: Patterns per chunk on the CPU: small enough to stay in cache.
CPU_CHUNK = 8


class SliceAccess:
    """Gather and scatter-add of object patches by one slice per position
    (the CPU kernel: no index arrays, no bincount)."""

    def __init__(self, xp, size: int):
        self.xp, self.size = xp, size

    def gather(self, obj, corners, out):
        n = self.size
        for k, (x, y) in enumerate(corners):
            out[k] = obj[x : x + n, y : y + n]
        return out

    def scatter(self, target, corners, values):
        n = self.size
        for k, (x, y) in enumerate(corners):
            target[x : x + n, y : y + n] += values[k]


class IndexAccess:
    """Gather by fancy indexing and scatter with ``xp.add.at`` (one kernel
    each: the GPU kernel; on complex targets the real and imaginary parts
    are added through a float view)."""

    def __init__(self, xp, size: int):
        self.xp, self.size = xp, size
        self.offsets = xp.arange(size)

    def _index(self, corners):
        c = self.xp.asarray(corners)
        rows = c[:, 0, None, None] + self.offsets[:, None]
        cols = c[:, 1, None, None] + self.offsets[None, :]
        return rows, cols

    def gather(self, obj, corners, out):
        rows, cols = self._index(corners)
        out[...] = obj[rows, cols]
        return out

    def scatter(self, target, corners, values):
        rows, cols = self._index(corners)
        if target.dtype.kind == 'c':
            cols = (2 * cols[..., None] + self.xp.arange(2)).reshape(
                *cols.shape[:-1], -1
            )
            target, values = _float_view(target), _float_view(values)
        self.xp.add.at(target, (rows, cols), values)


def _float_view(array):
    """A complex64 array seen as float32 with real/imag interleaved."""
    array = array if array.flags.c_contiguous else array.copy()
    return array.view(np.float32)


def patch_access(xp, size: int, strategy: str | None = None):
    """'slices' (default with numpy) or 'index' (default otherwise)."""
    strategy = strategy or ('slices' if xp is np else 'index')
    kinds = {'slices': SliceAccess, 'index': IndexAccess}
    if strategy not in kinds:
        raise ValueError(f"patch access must be one of {sorted(kinds)}")
    return kinds[strategy](xp, size)


def separable_ramps(xp, size: int, shifts, sign: float, frequencies):
    """exp(sign·2πi·f·s) as a column (B, N, 1) and a row (B, 1, N) for
    shifts ``s`` (B, 2) and 1D ``frequencies`` (N,)."""
    s = xp.asarray(shifts, dtype=np.float64)
    col = xp.exp(sign * 2j * np.pi * s[:, 0, None] * frequencies)
    row = xp.exp(sign * 2j * np.pi * s[:, 1, None] * frequencies)
    return (
        col.astype(np.complex64)[:, :, None],
        row.astype(np.complex64)[:, None, :],
    )


def fourier_residual(waves, amplitudes, xp):
    """Fourier projection, in place and fused as far as the array module
    allows: ``waves`` (Ψ) becomes ``Ψ·(A/|Ψ| − 1)`` (whose IFFT is the
    exit-wave residual Δψ); ``amplitudes`` (a scratch copy) is overwritten.
    Returns Σ(A − |Ψ|)² (a 0-d device array)."""
    magnitude = xp.abs(waves)
    difference = xp.subtract(amplitudes, magnitude, out=amplitudes)
    flat = difference.ravel()
    error = xp.vdot(flat, flat)
    xp.maximum(magnitude, 1e-12, out=magnitude)
    xp.divide(difference, magnitude, out=difference)
    waves *= difference
    return error


def normalised_step(gradient, weight, step: float, minimum: float, xp):
    """α·gradient / √(1e-16 + ((1−n)·w)² + (n·max w)²) (py4DSTEM's
    ``normalization_min`` preconditioner; n = 1: uniform 1/max w)."""
    peak = float(weight.max())
    denominator = xp.sqrt(
        1e-16 + ((1 - minimum) * weight) ** 2 + (minimum * peak) ** 2
    )
    return (step / denominator) * gradient


@dataclass
class Geometry:
    """Where each pattern sits: patch corners (int, host), fractional
    probe shifts and fractional beam centres (px, host)."""

    corners: np.ndarray  # (J, 2) top-left of each N×N patch, object px
    fractions: np.ndarray  # (J, 2) sub-pixel probe shift, px
    beam: np.ndarray  # (J, 2) fractional beam centre on the detector, px

    @classmethod
    def from_centres(cls, centres, size: int, beam):
        whole = np.round(centres).astype(np.int64)
        return cls(whole - size // 2, centres - whole, np.asarray(beam))


class Engine:
    """State and one mini-batch update of single-slice ptychography.

    ``amplitudes`` (J, N, N) float32 are FFT-origin centred (device or
    host: host batches are copied over; None when every batch brings its
    own, see :meth:`update`); ``probe`` (N, N) complex64 is
    centred; ``obj`` (M, M) complex64 is the transmission function (with
    ``potential`` (M, M) float32 when the object type is 'potential').
    """

    def __init__(
        self,
        xp,
        fft,
        amplitudes,
        geometry: Geometry,
        probe,
        object_shape: tuple[int, int],
        object_type: str = 'complex',
        step_size: float = 0.5,
        normalization_min: float = 1.0,
        fix_probe: bool = False,
        chunk: int | None = None,
        cache_probes: bool = False,
        access: str | None = None,
    ):
        n = probe.shape[0]
        self.xp, self.fft, self.size = xp, fft, n
        self.amplitudes = amplitudes
        self.geometry = geometry
        self.probe = xp.asarray(probe, dtype=np.complex64)
        self.object_type = object_type
        self.obj = xp.ones(object_shape, np.complex64)
        self.potential = (
            xp.zeros(object_shape, np.float32)
            if object_type == 'potential' else None
        )
        self.step, self.minimum = step_size, normalization_min
        self.fix_probe = fix_probe
        self.chunk = chunk or (CPU_CHUNK if xp is np else 1 << 30)
        self.access = patch_access(xp, n, access)
        self.k = xp.asarray(np.fft.fftfreq(n))
        self.u = xp.asarray((np.arange(n) - n // 2) / n)
        self.cache = self._shifted_probes_all() if cache_probes else None

    # -- probes ---------------------------------------------------------
    def shifted_probes(self, index, probe_k):
        """P_j: the probe (``probe_k`` = its FFT) shifted by its fractional
        position, times the beam-centring ramp, for patterns ``index``."""
        xp = self.xp
        g = self.geometry
        col, row = separable_ramps(xp, self.size, g.fractions[index], -1,
                                   self.k)
        waves = probe_k[None] * col
        waves *= row
        probes = self.fft.ifft2(waves, overwrite_x=True)
        col, row = separable_ramps(xp, self.size, g.beam[index], 1, self.u)
        probes *= col
        probes *= row
        return probes

    def _shifted_probes_all(self):
        count = len(self.geometry.corners)
        cache = self.xp.empty((count, self.size, self.size), np.complex64)
        probe_k = self.fft.fft2(self.probe)
        for start in range(0, count, self.chunk):
            index = np.arange(start, min(count, start + self.chunk))
            cache[start : start + len(index)] = self.shifted_probes(
                index, probe_k
            )
        return cache

    # -- one mini-batch ------------------------------------------------
    def update(self, batch: np.ndarray, amplitudes=None):
        """One gradient step on the patterns ``batch`` (host int array);
        returns Σ(A − |Ψ|)² over the batch (0-d device array).
        ``amplitudes``: the batch's own (B, N, N), in batch order (a batch
        streamed from lazy data); default ``self.amplitudes[batch]``."""
        xp = self.xp
        gradient = xp.zeros(self.obj.shape, np.complex64)
        illumination = self.illumination(batch)
        probe_terms = None if self.fix_probe else [
            xp.zeros_like(self.probe), xp.zeros(self.probe.shape, np.float32)
        ]
        error = xp.zeros((), np.float64)
        probe_k = None if self.cache is not None else self.fft.fft2(self.probe)
        for start in range(0, len(batch), self.chunk):
            index = batch[start : start + self.chunk]
            measured = (
                self.amplitudes[index] if amplitudes is None
                else amplitudes[start : start + self.chunk]
            )
            error = error + self._chunk(index, measured, probe_k, gradient,
                                        probe_terms)
        self._update_object(gradient, illumination)
        if probe_terms is not None:
            self.probe += normalised_step(
                *probe_terms, self.step, self.minimum, xp
            )
        return error

    def illumination(self, batch):
        """Σ_j |P|² placed at the patterns' whole-pixel corners: the
        object step's preconditioner (its sub-pixel shifts, which cannot
        change the fixed point, are left out), as one FFT convolution of a
        corner histogram on the object grid."""
        xp, fft = self.xp, self.fft
        shape = self.obj.shape
        corners = xp.asarray(self.geometry.corners[batch])
        flat = corners[:, 0] * shape[1] + corners[:, 1]
        counts = xp.bincount(flat, minlength=shape[0] * shape[1])
        padded = tuple(next_fast_len(m, real=True) for m in shape)
        spread = fft.irfft2(
            fft.rfft2(counts.reshape(shape).astype(np.float32), s=padded)
            * fft.rfft2(xp.abs(self.probe) ** 2, s=padded), s=padded,
        )[: shape[0], : shape[1]]
        return xp.maximum(spread, 0).astype(np.float32)

    def _chunk(self, index, measured, probe_k, gradient, probe_terms):
        xp, fft, access = self.xp, self.fft, self.access
        corners = self.geometry.corners[index]
        probes = (
            self.cache[xp.asarray(index)] if probe_k is None
            else self.shifted_probes(index, probe_k)
        )
        patches = access.gather(
            self.obj, corners,
            xp.empty((len(index), self.size, self.size), np.complex64),
        )
        if probe_terms is None:  # the patches are not needed after this
            waves = xp.multiply(probes, patches, out=patches)
        else:
            waves = probes * patches
        waves = fft.fft2(waves, overwrite_x=True)
        amplitudes = xp.array(measured, copy=True)
        error = fourier_residual(waves, amplitudes, xp)
        residual = fft.ifft2(waves, overwrite_x=True)
        if probe_terms is not None:
            self._accumulate_probe(index, patches, residual, probe_terms)
        residual *= xp.conjugate(probes, out=probes)
        access.scatter(gradient, corners, residual)
        return error

    def _accumulate_probe(self, index, patches, residual, probe_terms):
        """Σ conj(O_j)·Δψ_j (beam ramp undone; the sub-pixel shift is not,
        as in py4DSTEM) and Σ|O_j|²."""
        xp = self.xp
        col, row = separable_ramps(
            xp, self.size, self.geometry.beam[index], -1, self.u
        )
        terms = xp.conjugate(patches) * residual
        terms *= col
        terms *= row
        probe_terms[0] += terms.sum(axis=0)
        probe_terms[1] += (xp.abs(patches) ** 2).sum(axis=0)

    def _update_object(self, gradient, illumination):
        xp = self.xp
        if self.potential is None:
            self.obj += normalised_step(
                gradient, illumination, self.step, self.minimum, xp
            )
            return
        # O = exp(iV): ∂/∂V of the patch sum is Im(conj(O)·G), per pixel.
        force = (xp.conjugate(self.obj) * gradient).imag
        self.potential += normalised_step(
            force, illumination, self.step, self.minimum, xp
        ).astype(np.float32)
        self.obj = xp.exp(1j * self.potential).astype(np.complex64)

    # -- once per iteration ------------------------------------------------
    def constrain(self, amplitude_max: float, positivity: bool,
                  probe_centre=None):
        """Object amplitude ≤ amplitude_max (complex) or V ≥ 0 (potential,
        with ``positivity``); the probe's centre of mass back to
        ``probe_centre`` (px, centred frame) when the probe is updated."""
        xp = self.xp
        if self.potential is None:
            magnitude = xp.maximum(xp.abs(self.obj), 1e-12)
            self.obj *= xp.minimum(1.0, amplitude_max / magnitude)
        elif positivity:
            xp.maximum(self.potential, 0, out=self.potential)
            self.obj = xp.exp(1j * self.potential).astype(np.complex64)
        if not self.fix_probe and probe_centre is not None:
            self.probe = self.recentred(self.probe, probe_centre)

    def recentred(self, probe, centre):
        """``probe`` Fourier-shifted so that the CoM of |P|² is ``centre``."""
        xp = self.xp
        shift = np.asarray(centre) - intensity_centre(probe, xp)
        col, row = separable_ramps(xp, self.size, shift[None], -1, self.k)
        waves = self.fft.fft2(probe)[None] * col * row
        return self.fft.ifft2(waves)[0].astype(np.complex64)


def intensity_centre(probe, xp) -> np.ndarray:
    """Centre of mass of |probe|² (px, array axes 0 and 1), host floats."""
    weight = xp.abs(probe) ** 2
    total = float(weight.sum())
    x = xp.arange(probe.shape[0])
    y = xp.arange(probe.shape[1])
    return np.array([
        float((weight.sum(axis=1) * x).sum()) / total,
        float((weight.sum(axis=0) * y).sum()) / total,
    ])
