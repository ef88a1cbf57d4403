"""Parallax's transpose: the two candidates its shifts allow, and how the
data tell them apart.

The shifts fit both transposes exactly: ``M = R(θ)·H = R(θ')·swap·H'``
where H' is H with its smaller eigenvalue negated, so the candidates have
|C1| and |A1| swapped (eigenvalues C1 ± |A1|). The bright-field CoM
cannot tell them either: under geometric optics it is ``c = H·∇F`` and
``D·M⁻¹·D·c`` (D the detector-to-scan map) is the same gradient field for
both, since ``H² = H'² = MᵀM``; the transpose under which it has least
curl is the one with the more nearly isotropic H, |C1| > |A1|, whatever
the truth. The candidates differ only in the second-order term ½ q·H·q
of the probe's aberration function, which the scan's sampling barely
shows in the images but direct ptychography's weak-phase model sees in
the bright-field disk: its score (the data's power that model explains)
is compared at each candidate's rotation and aberrations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from .calibration import CalibrationError
from .direct import prepare_direct

#: The other candidate is taken into account when its |A1| is at most
#: this many times its |C1|; beyond, the one with |C1| > |A1| is kept
#: without a test. On every specimen at near-pure defocus the other is
#: C1 ≈ 0 with |A1| 280–430 Å (docs/validation.md), and on the square
#: SrTiO3 lattice the scores could not have told (1.00).
ASTIGMATISM_RANGE = 3.0

#: Least ratio of direct ptychography's scores for it to decide between
#: the candidates. On the independent suite the right candidate scores
#: ×1.37–2.05 the other (docs/validation.md); equal scores would be 1.
DECISIVE_SCORE_RATIO = 1.2


@dataclass(frozen=True)
class Candidate:
    """One transpose's reading of the shifts: its rotation (degrees) and
    polar aberrations (C10, C12, phi12, …; Å, degrees)."""

    transpose: bool
    rotation_deg: float
    aberrations: dict

    @property
    def defocus_and_astigmatism(self) -> tuple[float, float]:
        """(|C1|, |A1|) in Å."""
        return (abs(self.aberrations['C10']),
                abs(self.aberrations.get('C12', 0.0)))

    def describe(self) -> str:
        c1, a1 = self.defocus_and_astigmatism
        return (f'transpose {self.transpose}: θ {self.rotation_deg:.1f}°, '
                f'|C1| {c1:.0f} Å, |A1| {a1:.0f} Å')


@dataclass(frozen=True)
class Choice:
    """The transpose kept and why; ``warning`` when the data could not
    tell (the user should give it)."""

    transpose: bool
    reason: str
    warning: str | None = None


def choose_transpose(candidates: dict, score) -> Choice:
    """Of ``candidates`` ({transpose: Candidate}, both transposes), the one
    with |C1| > |A1| when the other's astigmatism is beyond
    ASTIGMATISM_RANGE times its defocus; else the one ``score`` (a list of
    candidates → their scores, or None when it cannot tell; e.g.
    :func:`direct_scores`) rates clearly higher (DECISIVE_SCORE_RATIO);
    else the one with |C1| > |A1|, with a warning naming the other."""
    first, second = candidates[False], candidates[True]
    prior = max((first, second),
                key=lambda c: c.defocus_and_astigmatism[0]
                - c.defocus_and_astigmatism[1])
    other = second if prior is first else first
    c1, a1 = other.defocus_and_astigmatism
    if a1 > ASTIGMATISM_RANGE * c1:
        return Choice(prior.transpose, f'|C1| > |A1|; the other reading, '
                      f'{other.describe()}, has an astigmatism over '
                      f'×{ASTIGMATISM_RANGE:g} its defocus')
    scores = score([prior, other])
    if scores is None:
        return Choice(prior.transpose, '|C1| > |A1|', _undecided(
            prior, other, 'direct ptychography could not run'))
    best, worse = ((prior, other) if scores[0] >= scores[1]
                   else (other, prior))
    high, low = max(scores), min(scores)
    compared = (f'direct ptychography scores {high:.1f} against {low:.1f} '
                f'for {worse.describe()}')
    if high >= DECISIVE_SCORE_RATIO * low:
        return Choice(best.transpose, compared)
    return Choice(prior.transpose, '|C1| > |A1|', _undecided(
        prior, other, f'{compared}, less than ×{DECISIVE_SCORE_RATIO:g}'))


def _undecided(kept: Candidate, other: Candidate, why: str) -> str:
    return (f'The data cannot tell the transpose ({why}): kept '
            f'{kept.describe()}, under which the defocus exceeds the '
            f'astigmatism; the shifts fit {other.describe()} as well. Give '
            'the transpose if the astigmatism is the larger.')


def direct_scores(cube, candidates, device: str = 'cpu'
                  ) -> list[float] | None:
    """Direct ptychography's (SSB's) score of ``cube`` at each candidate's
    rotation, transpose, C1 and astigmatism; None when it cannot run
    (calibration, memory)."""
    try:
        with warnings.catch_warnings():  # the calibration has no C1 yet
            warnings.simplefilter('ignore', RuntimeWarning)
            prepared = prepare_direct(cube, device=device)
    except (CalibrationError, MemoryError):
        return None
    return [float(prepared.score(
        {k: v for k, v in c.aberrations.items()
         if k in ('C10', 'C12', 'phi12')},
        c.rotation_deg, c.transpose)) for c in candidates]
