"""The one criterion that resolves the 180° ambiguity, for every method.

Rotation and C1 are fixed by the data only up to a half-turn: (θ, C1) and
(θ + 180°, −C1) explain the same CoM fields, parallax shifts and far-field
intensities, with the phase sign flipped (docs/conventions.md). A thin
specimen's phase is a projected potential: ≥ 0, large on a few particles
and small elsewhere, so its histogram has a long **positive** tail. We keep
the candidate whose phase image is positively skewed; the skewness's size
is the confidence. A user who knows the sign of the defocus may force it.
"""

from __future__ import annotations

import numpy as np

from .backend import to_numpy

#: |skewness| below which the choice is reported as uncertain.
CONFIDENT_SKEW = 0.3


def skewness(image, mask=None) -> float:
    """Sample skewness of the finite pixels of ``image`` (within ``mask``)."""
    values = to_numpy(image).astype(np.float64)
    if mask is not None:
        values = values[to_numpy(mask).astype(bool)]
    values = values[np.isfinite(values)].ravel()
    spread = values.std()
    if values.size < 3 or spread == 0:
        return 0.0
    return float(np.mean((values - values.mean()) ** 3) / spread**3)


def positive_phase_sign(phase, mask=None) -> tuple[int, float, str]:
    """Sign (+1 or −1) that makes ``phase`` positively skewed.

    Returns ``(sign, skewness_after, description)``: ``sign * phase`` is
    the physical phase; the description says how sure the choice is.
    """
    skew = skewness(phase, mask)
    sign = -1 if skew < 0 else 1
    certainty = 'confident' if abs(skew) >= CONFIDENT_SKEW else 'uncertain'
    text = (
        f'phase positivity: skewness {sign * skew:+.2f} for the kept '
        f'half-turn vs {-sign * skew:+.2f} for the other ({certainty})'
    )
    return sign, abs(skew), text
