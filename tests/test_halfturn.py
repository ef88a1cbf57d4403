"""The one half-turn decision (compute/halfturn.py): the evidence against
hand-computed values, the ranking, the calibration as the single record,
and parallax's transpose with astigmatism larger than the defocus."""

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
from scipy import ndimage

from napari_phase import parallax, simulate
from napari_phase.compute.aberrations import affine_fit
from napari_phase.compute.calibration import Calibration
from napari_phase.compute.geometry import rotation_matrix, wrap_degrees
from napari_phase.compute.halfturn import (
    CONFIDENT,
    Evidence,
    adopt,
    adopted,
    choose,
    evidence,
    independent_pixels,
    other_pair,
    outranks,
    user_choice,
)
from napari_phase.compute.transpose import Candidate, choose_transpose


def particles(n=64, seed=0):
    """Sparse positive blobs on weak noise: a thin specimen's phase."""
    rng = np.random.default_rng(seed)
    image = 0.05 * rng.standard_normal((n, n))
    for x, y in rng.integers(4, n - 4, size=(12, 2)):
        image[x - 2:x + 3, y - 2:y + 3] += 1.0
    return image


def test_evidence_is_the_skewness_in_standard_errors():
    image = particles()
    values = image - image.mean()
    by_hand = np.mean(values**3) / values.std() ** 3
    found = evidence('DPC', image)
    assert found.skewness == pytest.approx(by_hand)
    assert found.keeps and found.confident
    assert found.z == pytest.approx(
        abs(by_hand) / math.sqrt(6 / independent_pixels(values)))
    inverted = evidence('DPC', -image)
    assert not inverted.keeps and inverted.z == pytest.approx(found.z)


def test_independent_pixels_of_white_and_blurred_noise():
    rng = np.random.default_rng(1)
    white = rng.standard_normal((128, 128))
    assert independent_pixels(white) == pytest.approx(white.size, rel=0.1)
    # a Gaussian blur σ makes ρ(r) = exp(−r²/4σ²): Σρ² ≈ 2πσ²
    sigma = 3.0
    blurred = ndimage.gaussian_filter(white, sigma, mode='wrap')
    assert independent_pixels(blurred - blurred.mean()) == pytest.approx(
        white.size / (2 * math.pi * sigma**2), rel=0.2)


def test_noise_is_not_confident_evidence():
    rng = np.random.default_rng(2)
    noise = ndimage.gaussian_filter(rng.standard_normal((64, 64)), 2.0)
    assert evidence('parallax', noise).z < CONFIDENT


def test_ranking_user_then_decisive_then_larger_z():
    dpc = Evidence('DPC', 0.5, 4.0)
    parallax = Evidence('parallax', 0.2, 1.0)
    ptycho = Evidence('ptychography', -1.0, 3.5)
    unsure_ptycho = Evidence('ptychography', -1.0, 2.0)
    assert outranks(parallax, None)
    assert not outranks(parallax, dpc)
    assert outranks(ptycho, dpc)  # confident and decisive beats larger z
    assert not outranks(unsure_ptycho, dpc)
    assert outranks(user_choice(), ptycho)
    assert not outranks(ptycho, user_choice())


@dataclass
class Found:
    """A method's result as adopt() sees it."""

    rotation_deg: float
    phase_sign: int
    half_turn_evidence: Evidence

    def other_half_turn(self):
        e = self.half_turn_evidence
        return replace(self, rotation_deg=wrap_degrees(self.rotation_deg
                                                       + 180),
                       phase_sign=-self.phase_sign,
                       half_turn_evidence=Evidence(e.source, -e.skewness,
                                                   e.z))


def test_a_decisive_method_turns_the_pair_and_the_others_follow():
    cal = Calibration(rotation_deg=165.0, C1=-400.0,
                      aberrations={'C12': 50.0, 'phi12': 10.0})
    dpc = adopt(cal, Found(165.0, 1, Evidence('DPC', 0.3, 1.5)))
    assert dpc.rotation_deg == 165.0 and cal.half_turn_source == 'DPC'
    # ptychography ran at the calibration's pair: its phase says "other"
    ptycho = adopt(cal, Found(165.0, 1, Evidence('ptychography', -1.0, 8)))
    assert ptycho.rotation_deg == -15.0 and ptycho.phase_sign == -1
    assert (cal.rotation_deg, cal.C1) == (-15.0, 400.0)
    assert cal.aberrations == {'C12': 50.0, 'phi12': 100.0}  # 10 + 180/2
    assert cal.half_turn_source == 'ptychography'
    assert cal.half_turn_confidence == 8
    assert 'ptychography: phase skewness +1.00' in cal.half_turn
    # a later, weaker method follows the calibration's pair
    parallax = adopt(cal, Found(165.0, 1, Evidence('parallax', 0.9, 2.0)))
    assert parallax.rotation_deg == -15.0 and parallax.phase_sign == -1
    assert cal.half_turn_source == 'ptychography'


def test_adopted_leaves_the_calibration_alone():
    cal = Calibration(rotation_deg=10.0)
    found, changes = adopted(cal, Found(10.0, 1, Evidence('DPC', -0.5, 5)))
    assert found.rotation_deg == -170.0
    assert changes['rotation_deg'] == -170.0
    assert changes['half_turn_source'] == 'DPC'
    assert cal.rotation_deg == 10.0 and cal.half_turn_source is None


def test_the_users_choice_is_final():
    cal = Calibration(rotation_deg=20.0, C1=300.0)
    choose(cal, keep=False)
    assert (cal.rotation_deg, cal.C1) == (-160.0, -300.0)
    assert cal.half_turn_source == 'user'
    assert cal.half_turn_confidence is None
    found = adopt(cal, Found(20.0, 1, Evidence('ptychography', 2.0, 50)))
    assert found.rotation_deg == -160.0  # follows the user
    assert other_pair(cal)['C1'] == 300.0


@pytest.mark.parametrize('transpose', [False, True])
def test_affine_split_with_astigmatism_larger_than_the_defocus(transpose):
    """M = R(θ)·P·swap? with P = C1·I + A1 (|A1| = 2|C1|, indefinite):
    the polar decomposition would turn θ by 90°; the split does not."""
    c1, a1, azimuth, theta = 50.0, 100.0, 30.0, -15.0
    c, s = np.cos(np.deg2rad(2 * azimuth)), np.sin(np.deg2rad(2 * azimuth))
    P = c1 * np.eye(2) + a1 * np.array([[c, s], [s, -c]])
    M = rotation_matrix(theta) @ P
    if transpose:
        M = M[:, ::-1]
    angles = np.random.default_rng(3).uniform(-0.02, 0.02, (40, 2))
    fit = affine_fit(angles, angles @ M.T + [1.0, -2.0], None, transpose)
    assert fit.rotation_deg == pytest.approx(theta)
    assert fit.C1 == pytest.approx(c1)


@pytest.mark.parametrize('transpose', [False, True])
def test_parallax_tells_the_transpose_when_astigmatism_exceeds_defocus(
        transpose):
    """With |A1| = 2|C1| the shifts fit both transposes as well, with |C1|
    and |A1| swapped; direct ptychography's score tells them apart (on
    our simulator: self-consistency only, the independent suite is in
    test_independent) and the notes name the other reading."""
    sim = simulate(scan_shape=(24, 24), detector_shape=(96, 96),
                   rotation_deg=-15.0, transpose=transpose, C1=150.0,
                   aberrations={'C12': 300.0, 'phi12': 20.0}, seed=4)
    found = parallax(sim.datacube, defocus_sign=1)
    assert found.transpose is transpose
    assert abs(wrap_degrees(found.rotation_deg + 15.0)) < 2.0
    assert found.C1 == pytest.approx(150.0, rel=0.1)
    assert found.aberrations['C12'] == pytest.approx(300.0, rel=0.1)
    other = f'transpose {not transpose}: θ'
    assert any('direct ptychography scores' in note and other in note
               for note in found.warnings)


def readings(c1, a1):
    """Both transposes' readings of one set of shifts: |C1| and |A1|
    swapped (transpose False keeps C1 = c1)."""
    return {False: Candidate(False, 10.0, {'C10': c1, 'C12': a1,
                                           'phi12': 0.0}),
            True: Candidate(True, 100.0, {'C10': a1, 'C12': c1,
                                          'phi12': 0.0})}


def test_transpose_with_far_larger_astigmatism_is_not_scored():
    asked = []
    choice = choose_transpose(readings(400.0, 5.0), asked.append)
    assert choice.transpose is False and choice.warning is None
    assert asked == []


@pytest.mark.parametrize(('scores', 'kept', 'warns'), [
    ([100.0, 150.0], True, False),  # the other scores ×1.5: it is taken
    ([150.0, 100.0], False, False),
    ([100.0, 110.0], False, True),  # ×1.1: a toss, |C1| > |A1| kept
    (None, False, True),  # direct ptychography could not run
])
def test_transpose_taken_from_direct_ptychography_only_when_clear(
        scores, kept, warns):
    """|A1| = 0.7|C1| under transpose False: the other reading (|A1| 1.4
    times its |C1|) is plausible, so the scores decide when their ratio
    reaches DECISIVE_SCORE_RATIO; else the user is told."""
    choice = choose_transpose(readings(100.0, 70.0),
                              lambda candidates: scores)
    assert choice.transpose is kept
    assert (choice.warning is not None) is warns
    if warns:
        assert 'transpose True: θ 100.0°, |C1| 70 Å, |A1| 100 Å' in (
            choice.warning)
