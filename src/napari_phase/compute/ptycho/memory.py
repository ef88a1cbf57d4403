"""How much memory a reconstruction holds, and fitting it into a device.

Memory is bounded by the object and a few batches: the amplitudes are
held (once, float32) or streamed two batches at a time, the cache of
shifted probes (fixed probe only) has a budget, and the per-chunk working
set does not depend on the scan size.
"""

from __future__ import annotations

import warnings

import numpy as np

from .batches import streamed_window

#: At most this many bytes (and a quarter of the free memory) of cached
#: shifted probes: the cache saves one inverse FFT per pattern.
PROBE_CACHE_BYTES = 1 << 30


def estimate_memory(
    n_patterns: int,
    detector_shape: tuple[int, int],
    object_shape: tuple[int, int],
    chunk_size: int,
    cached_probes: int = 0,
    amplitudes_on_device: bool = True,
    stored_patterns: int | None = None,
    num_probes: int = 1,
    num_slices: int = 1,
    position_correction: bool = False,
) -> dict[str, int]:
    """Bytes a reconstruction holds on its device, by part, and 'total':
    the amplitudes (float32) of ``stored_patterns`` patterns (default all
    ``n_patterns``; a lazy run holds two windows), the ``cached_probes``
    cached shifted probes (complex64, every mode), the per-chunk working
    set (a chunk's waves: about 8 complex arrays per pattern, plus one
    per mode and slice, twice more with ``position_correction``) and the
    object (per slice: the transmission, its gradient and illumination
    accumulators and a potential: 24 B/px)."""
    pixels = int(np.prod(detector_shape))
    stored = n_patterns if stored_patterns is None else stored_patterns
    waves = 8 + num_probes * (num_slices + 3) * (1 + 2 * position_correction)
    parts = {
        'amplitudes': stored * pixels * 4 if amplitudes_on_device else 0,
        'probe cache': cached_probes * num_probes * pixels * 8,
        'working set': chunk_size * pixels * 8 * waves,
        'object': int(np.prod(object_shape)) * 24 * num_slices,
    }
    return parts | {'total': sum(parts.values())}


def gigabytes(n: int) -> str:
    return f'{n / 1e9:.2f} GB'


def fit_in_memory(*, count, detector_shape, object_shape, max_batch,
                  cpu_chunk_bytes, on_cpu, free, amplitudes_on_device, lazy,
                  cache_allowed, num_probes, num_slices, position_correction,
                  source, device):
    """Chunk, batch, cached probes and the estimate (a dict of parts) that
    fit in ``free`` bytes: the batch shrinks on a GPU (with a warning);
    otherwise a MemoryError gives the numbers."""
    batch = min(max_batch, count)

    def need(chunk, cached):
        stored = count
        if lazy:
            stored = min(count, 2 * streamed_window(batch, detector_shape))
        return estimate_memory(
            count, detector_shape, object_shape, chunk, cached,
            amplitudes_on_device, stored_patterns=stored,
            num_probes=num_probes, num_slices=num_slices,
            position_correction=position_correction,
        )

    per_probe = num_probes * int(np.prod(detector_shape)) * 8
    chunk = (min(batch, max(1, cpu_chunk_bytes // per_probe)) if on_cpu
             else batch)
    budget = min(PROBE_CACHE_BYTES, free // 4)
    cached = min(count, budget // per_probe) if cache_allowed else 0
    if need(chunk, cached)['total'] > free:
        cached = 0
    parts = need(chunk, cached)
    if not on_cpu and parts['total'] > free:
        per_pattern = need(1, 0)['working set']
        spare = free - need(0, 0)['total']
        chunk = batch = max(0, min(batch, spare // per_pattern))
        if batch:
            warnings.warn(
                f'max_batch_size reduced from {max_batch} to {batch} to fit '
                f'in {gigabytes(free)} of GPU memory.',
                RuntimeWarning, stacklevel=5,
            )
            parts = need(chunk, 0)
    if batch == 0 or parts['total'] > free:
        detail = ', '.join(f'{k} {gigabytes(v)}' for k, v in parts.items())
        hint = ''
        if not lazy:
            hint = " Use storage='lazy' (read each batch from the data)"
            hint += '.' if on_cpu else (
                " or 'cpu' (amplitudes in host memory).")
        raise MemoryError(
            f'{source}: ptychography needs about {detail} on the {device} '
            f'but only {gigabytes(free)} is free. Bin the detector or crop '
            f'the scan.{hint}'
        )
    return chunk, batch, cached, parts
