"""Ptychography by mini-batch gradient descent: mixed-state probes,
multislice objects, position correction, constraints, continuing.

Equations and conventions: ALGORITHMS.md §1.5 (py4DSTEM 0.14.18's
``SingleslicePtychography``, ``MixedstatePtychography``,
``MultislicePtychography`` and ``MixedstateMultislicePtychography``,
gradient-descent method); the forward model is the simulator's
(compute/simulate.py) with probe modes and slices:

- the object lives in the **detector frame** (positions.py);
- the probe is ``IFFT[A(k)·exp(−iχ(k))]`` with ``C10 = −defocus``
  (initial_probe.py), split into incoherent modes for a mixed state;
- slices are ``slice_thickness`` Å apart, the wave propagated between
  them by exp(−iπλ|k|²dz) (multislice.py);
- ``object_cropped`` is the object resampled into the **scan frame** on a
  grid of pixel Δx whose pixel (0, 0) is scan position (0, 0), covering
  the scanned field of view (the grid of ``SimulatedData.true_phase``).

Modules, one idea each: reconstruct (the run: preparation, iterations,
continuing), parameters (checks), engine (one mini-batch), access (patch
gather/scatter, covered regions), batches (compact batches, held or
streamed), initial_probe (probe and modes), multislice (propagation),
constraints, positions (frames, affine fit, cropping), memory (estimate),
result (what comes out).
"""

from .memory import estimate_memory
from .positions import crop_to_scan_frame
from .reconstruct import ptychography, ptychography_iter
from .result import PtychoResult, PtychoStep

__all__ = [
    'PtychoResult',
    'PtychoStep',
    'crop_to_scan_frame',
    'estimate_memory',
    'ptychography',
    'ptychography_iter',
]
