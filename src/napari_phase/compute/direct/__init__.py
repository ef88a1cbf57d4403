"""Direct ptychography (SSB, OBF) and the quick phases behind live
aberration tuning.

- ``spectra.py``: the bright field and the FFT over scan positions of its
  pixels, done once;
- ``polynomial.py``: χ as a polynomial, its Taylor terms as matrices;
- ``sideband.py``: SSB and OBF from the prepared spectra
  (:func:`direct_ptychography`, :func:`prepare_direct`);
- ``quick_parallax.py``: the tilt-corrected bright field from cached
  bright-field spectra (:func:`prepare_parallax_phase`);
- ``refine.py``: aberrations that maximise a prepared phase's score.
"""

from .quick_parallax import (
    ParallaxPhase,
    prepare_parallax_phase,
    prepare_parallax_phase_steps,
)
from .refine import Refinement, refine_aberrations
from .sideband import (
    DirectPhase,
    DirectResult,
    direct_ptychography,
    direct_ptychography_steps,
    prepare_direct,
    prepare_direct_steps,
)

__all__ = [
    'DirectPhase',
    'DirectResult',
    'ParallaxPhase',
    'Refinement',
    'direct_ptychography',
    'direct_ptychography_steps',
    'prepare_direct',
    'prepare_direct_steps',
    'prepare_parallax_phase',
    'prepare_parallax_phase_steps',
    'refine_aberrations',
]
