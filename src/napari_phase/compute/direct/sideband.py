"""Single-side-band (SSB) and optimum bright-field (OBF) ptychography.

Physics (weak phase object ``O = 1 + iφ``; Rodenburg, McCallum & Nellist,
Ultramicroscopy 48 (1993); Pennycook et al., Ultramicroscopy 151 (2015);
Yang et al., Ultramicroscopy 151 (2015) and Sci. Rep. 6 (2016); Ooe et
al., Ultramicroscopy 220 (2021)), in our conventions (docs/conventions.md):
the probe is ``Ψ(k) = I0^½ a(k) exp(−iχ(k))``, the far field of position
``p`` is the FFT (``exp(−2πi k·r)``) of ``P(r − p)·O(r)``, and the object
and the probe live in the detector frame, where scan position ``p_R`` is
``scan_to_detector(p_R)``. Transforming the intensities over the scan
positions (``exp(−2πi Q·p)``, Q in the scan frame, ``Q_d =
scan_to_detector(Q)`` in the detector frame, since the map is orthogonal)
gives, to first order in φ,

    G(k, Q) / I0 = i φ̂(Q) Γ(k, Q),
    Γ = a(k) [a(k − Q_d) e^{i(χ(k) − χ(k − Q_d))}
              − a(k + Q_d) e^{i(χ(k + Q_d) − χ(k))}],

``φ̂`` the FFT of the phase over the scan grid, k the pixel's frequency
from the beam centre (detector frame). The two terms are the two side
bands (the "trotters", disks at ∓Q_d overlapping the bright field). For
every Q we form ``S = Σ_k (G/I0)·conj(Γ)`` and ``N = Σ_k |Γ|²``:

- **SSB**: only the pixels where exactly one side band overlaps the
  bright field (both side bands, the triple overlap left out), whose
  phase ``exp(i(χ(k) ∓ χ(k ∓ Q_d)))`` is compensated: ``φ̂ = −iS/N``,
  the least-squares phase, transfer 1 wherever the side bands hold at
  least :data:`SSB_FLOOR` of the bright field (band limit 2α/λ);
- **OBF** (all pixels, matched filter): ``−iS/√(N·2Σa²)``: the phase
  seen through the transfer ``T = √(N/(2Σa²))``, the signal-to-noise
  optimal filter for shot noise; T ≈ 1 where the bright field transfers
  with random phases (a large defocus), and 0 where it cannot transfer.
  In the triple overlap a weak amplitude μ gives ``2e^{iO}(−μ̂ cos E)``
  next to the phase's ``2e^{iO}φ̂ sin E`` (the same pixels, the same
  phase factor: the data cannot tell them apart), so OBF reads amplitude
  contrast as phase (on the simulator, μ = 0.2φ lowers its slope from
  0.93 to 0.49); SSB's two side bands carry μ with opposite signs and
  cancel it.

Sign: with the calibration's pair (θ, C1) right, the phase is the
specimen's (positive for a positive projected potential). The half-turn
(θ + 180°, every C_mn negated: ``aberrations.half_turn``) maps ``Q_d`` to
``−Q_d`` and χ to −χ: the side bands swap, their compensation matches
again, and the phase is exactly negated, as in the other methods.

The aberration phase of every (k, Q) pair is a matrix product (the Taylor
expansion of χ, ``polynomial.py``), the aperture a ramp in |k ∓ Q_d|²
(one more product); the sums run over chunks of pixels in
``backend.FFT_WORKERS`` threads, so an update costs a few passes over
K × N_Q numbers and never the data.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace

import numpy as np

from ..aberrations import half_turn
from ..backend import (
    ProgressCallback,
    available_memory,
    device_xp,
    fft_of,
    is_cupy,
    to_numpy,
    xp_of,
)
from ..datacube import DataCube
from ..geometry import scan_to_detector, wrap_degrees
from ..halfturn import HIGH_PASS, Evidence, evidence
from ..reduce import rescaled, run_steps
from .kernel import SideBands, side_bands, trotter_sums
from .polynomial import (
    chi_coefficients,
    gradient,
    power_matrix,
    taylor_matrix,
    taylor_powers,
)
from .prepared import PreparedPhase
from .spectra import (
    CHUNK_BYTES,
    find_bright_field,
    padded_shape,
    spectra_steps,
)

METHODS = ('ssb', 'obf')
#: Side bands holding less than this fraction of the bright field (Σa²)
#: are not divided out by SSB: its transfer falls below 1 there.
SSB_FLOOR = 1e-3


#: What a direct phase's radians are worth (docs/validation.md).
PHASE_SCALE = ('weak-phase radians, below the true scale on thick '
               'specimens: SSB\'s slope 0.72–0.87 against the true phase '
               'seen through its transfer on 60 Å gold, 0.93 on a thin '
               'specimen; OBF\'s phase is filtered by its transfer')


@dataclass
class DirectResult:
    """A direct-ptychography phase on the scan grid.

    ``phase`` (Rx, Ry) radians, pixel (0, 0) at ``origin`` Å from scan
    position (0, 0), ``pixel_size`` Å (the scan step); ``transfer``: what
    the method passes of each spatial frequency of the phase (rfft2 grid
    of the scan padded by ``parameters['object_padding_px']``), see
    :meth:`apply_transfer`. Within ``edge_px`` of the scan's edges the
    phase is weaker: each pixel's partial images come from up to the
    largest aberration shift ``|∇χ|/2π`` away, and the data fade out over
    ``edge_blend`` there.
    """

    phase: np.ndarray
    method: str
    pixel_size: float
    origin: tuple[float, float]
    transfer: np.ndarray
    aberrations: dict  # polar, C10 = C1 (Å, degrees): what was used
    rotation_deg: float
    transpose: bool
    edge_px: float  # border (scan px) that the scan's edges reach into
    parameters: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def apply_transfer(self, image, upsampling: int = 1) -> np.ndarray:
        """``image`` (a phase, rad) as this method would see it on the
        scan grid: its deviation from the mean, padded like the data,
        filtered by :attr:`transfer`. ``image`` is on the scan grid, or
        ``upsampling`` times finer (pixel (0, 0) at scan position (0, 0)):
        it is then first band-limited to the scan's Nyquist frequency
        (sampling it would fold finer detail into the band, which the
        scan cannot see)."""
        image = np.asarray(image, dtype=np.float64)
        if upsampling > 1:
            image = _band_limited(image, upsampling)[
                : self.phase.shape[0], : self.phase.shape[1]]
        padding = self.parameters['object_padding_px']
        shape = padded_shape(image.shape, padding)
        x0, y0 = (p // 2 for p in padding)
        padded = np.zeros(shape)
        nx, ny = image.shape
        padded[x0 : x0 + nx, y0 : y0 + ny] = image - image.mean()
        filtered = np.fft.irfft2(np.fft.rfft2(padded) * self.transfer, shape)
        return filtered[x0 : x0 + nx, y0 : y0 + ny]

    #: Radians of the weak-phase model: not within 20 % of the true scale
    #: on thick specimens (docs/validation.md).
    quantitative = False
    phase_scale = PHASE_SCALE

    @property
    def C1(self) -> float:
        return self.aberrations.get('C10', 0.0)

    @property
    def half_turn_evidence(self) -> Evidence:
        """The skewness of the phase high-passed like ptychography's."""
        return evidence('direct', self.phase, self.pixel_size,
                        high_pass=HIGH_PASS)

    def other_half_turn(self) -> DirectResult:
        """The result at (θ + 180°, −C_mn): the phase negated."""
        return replace(
            self, phase=-self.phase,
            rotation_deg=wrap_degrees(self.rotation_deg + 180.0),
            aberrations=half_turn(self.aberrations))


class DirectPhase(PreparedPhase):
    """Direct ptychography prepared for live updates: the bright-field
    spectra are computed once (:func:`prepare_direct`); :meth:`phase`
    recomputes only the aberration phase and one sum over the pixels.
    Thread-safe: the only state updates share, each method's side-band
    weights for the last geometry, is replaced whole."""

    name = 'direct ptychography phase'
    phase_scale = PHASE_SCALE

    def __init__(self, cube, bright_field, real, imag, padding, method,
                 parameters, xp):
        super().__init__(cube.calibration, cube.scan_shape, parameters)
        self.method = _checked_method(method)
        self.bright_field = bright_field
        self.padding = tuple(padding)
        self.xp = xp
        self._real, self._imag = real, imag
        shape = padded_shape(self.scan_shape, padding)
        qx = np.fft.fftfreq(shape[0], self.scan_step)
        qy = np.fft.rfftfreq(shape[1], self.scan_step)
        self._q = np.stack(
            [a.ravel() for a in np.meshgrid(qx, qy, indexing='ij')]
        )
        self._valid = _valid_frequencies(shape).ravel()
        self._weights = np.where(
            np.isin(np.arange(len(qy)), [0, shape[1] / 2]), 1.0, 2.0
        )[None, :].repeat(shape[0], 0).ravel()  # Hermitian half plane
        k = bright_field.k
        c0, c1 = bright_field.aperture.ramp
        k2 = (k**2).sum(axis=1)
        self._k = k
        self._a = xp.asarray(bright_field.aperture(k2), np.float32)
        self._ramp = xp.asarray(
            np.column_stack([c0 - c1 * k2, 2 * c1 * k, np.full(len(k), -c1)]),
            np.float32,
        )
        self.bright_field_weight = float((to_numpy(self._a) ** 2).sum())
        self._bands = {}  # method → side-band weights, last geometry

    # --- the fast update ----------------------------------------------

    def phase(self, aberrations=None, rotation_deg=None, transpose=None,
              method=None) -> np.ndarray:
        """The phase (Rx, Ry) radians, numpy float32, on the scan grid,
        for polar ``aberrations`` (C10 = C1, Å, degrees), the scan
        ``rotation_deg`` and ``transpose``; None: the calibration's."""
        spectrum, _ = self._spectrum(aberrations, rotation_deg, transpose,
                                     method)
        return self._image(spectrum)

    def score(self, aberrations=None, rotation_deg=None, transpose=None,
              method=None) -> float:
        """How well these settings explain the data: ``Σ_Q |S|²/N`` over
        the bright field's weight, the part of the data's power the weak
        phase model accounts for (its least-squares misfit is the rest),
        largest at the true aberrations, rotation and transpose."""
        sums = self._sums(*self.settings(aberrations, rotation_deg,
                                         transpose),
                          _checked_method(method or self.method))
        s_re, s_im, n = (to_numpy(s) for s in sums)
        use = self._valid & (n > 0)
        power = (s_re**2 + s_im**2)[use] / n[use]
        return float((self._weights[use] * power).sum()
                     / self.bright_field_weight)

    def result(self, aberrations=None, rotation_deg=None, transpose=None,
               method=None) -> DirectResult:
        """The phase with its transfer and every setting used."""
        aberrations, rotation, transpose = self.settings(
            aberrations, rotation_deg, transpose
        )
        method = _checked_method(method or self.method)
        spectrum, transfer = self._spectrum(aberrations, rotation,
                                            transpose, method)
        return DirectResult(
            phase=self._image(spectrum),
            method=method,
            pixel_size=self.pixel_size,
            origin=self.origin,
            transfer=to_numpy(transfer).reshape(self._grid_shape),
            aberrations=aberrations,
            rotation_deg=rotation,
            transpose=transpose,
            edge_px=self._edge_px(aberrations),
            parameters=dict(self.parameters) | {
                'method': method,
                'used': {'aberrations': aberrations,
                         'rotation_deg': rotation, 'transpose': transpose},
            },
        )

    # --- internals ----------------------------------------------------

    def _edge_px(self, aberrations) -> float:
        """edge_blend + the largest shift |∇χ(k)|/2π (scan px) over the
        bright field."""
        coefficients = chi_coefficients(aberrations, self.wavelength)
        shift = np.hypot(*gradient(coefficients, self._k).T).max()
        return float(self.parameters['edge_blend']
                     + shift / (2 * np.pi * self.scan_step))

    @property
    def _grid_shape(self):
        shape = padded_shape(self.scan_shape, self.padding)
        return shape[0], shape[1] // 2 + 1

    def _spectrum(self, aberrations, rotation_deg, transpose, method):
        """φ̂ seen by the method and its transfer, both (N_Q,)."""
        xp = self.xp
        method = _checked_method(method or self.method)
        settings = self.settings(aberrations, rotation_deg, transpose)
        s_re, s_im, n = self._sums(*settings, method)
        valid = xp.asarray(self._valid)
        if method == 'ssb':
            denominator = xp.maximum(
                n, SSB_FLOOR * self.bright_field_weight
            )
            transfer = n / denominator
        else:
            reference = 2 * self.bright_field_weight
            denominator = xp.sqrt(n * reference)
            transfer = xp.sqrt(n / reference)
        denominator = xp.where(valid & (n > 0), denominator, xp.inf)
        transfer = xp.where(valid, transfer, 0.0)
        return (s_im - 1j * s_re) / denominator, transfer  # −iS/denominator

    def _image(self, spectrum) -> np.ndarray:
        fft = fft_of(self.xp)
        shape = padded_shape(self.scan_shape, self.padding)
        image = fft.irfft2(spectrum.reshape(self._grid_shape), s=shape)
        x0, y0 = (p // 2 for p in self.padding)
        nx, ny = self.scan_shape
        return to_numpy(image[x0 : x0 + nx, y0 : y0 + ny]).astype(np.float32)

    def _sums(self, aberrations, rotation_deg, transpose, method):
        """S (real, imaginary) and N over the pixels, each (N_Q,)."""
        xp = self.xp
        q = scan_to_detector(self._q, rotation_deg, transpose)
        bands = self._side_bands(q, (rotation_deg, transpose, method))
        coefficients = chi_coefficients(aberrations, self.wavelength)
        powers = taylor_powers(coefficients)
        odd = [p for p in powers if sum(p) % 2]
        even = [p for p in powers if not sum(p) % 2]
        return trotter_sums(
            self._real, self._imag, bands,
            taylor_matrix(coefficients, self._k, odd, xp),
            power_matrix(q, odd, xp),
            taylor_matrix(coefficients, self._k, even, xp),
            power_matrix(q, even, xp),
            xp,
        )

    def _side_bands(self, q, key) -> SideBands:
        """The side-band weights of this geometry and method, kept until
        the next geometry (one reference swap: safe across threads)."""
        bands = self._bands.get(key[2])
        if bands is None or bands.key != key:
            ones, q2 = np.ones(q.shape[1]), (q**2).sum(axis=0)
            bands = side_bands(
                key, self._ramp, self._a,
                self.xp.asarray(np.stack([ones, q[0], q[1], q2]),
                                np.float32),
                self.xp.asarray(np.stack([ones, -q[0], -q[1], q2]),
                                np.float32),
                key[2] == 'ssb', self.xp,
            )
            self._bands[key[2]] = bands
        return bands


def _band_limited(image, factor: int) -> np.ndarray:
    """Every ``factor``-th pixel of ``image`` after an ideal low pass to
    the Nyquist frequency of that coarser grid (mirror-padded, so the
    image's edges do not ring)."""
    padded = np.pad(image, [(n // 2, n // 2) for n in image.shape],
                    mode='reflect')
    spectrum = np.fft.fft2(padded)
    for axis, n in enumerate(padded.shape):
        outside = np.abs(np.fft.fftfreq(n)) > 0.5 / factor
        spectrum[(slice(None),) * axis + (outside,)] = 0
    smooth = np.fft.ifft2(spectrum).real
    x0, y0 = (n // 2 for n in image.shape)
    return smooth[x0 : x0 + image.shape[0] : factor,
                  y0 : y0 + image.shape[1] : factor]


def _valid_frequencies(shape) -> np.ndarray:
    """(X, Y//2 + 1) bool: every frequency of the rfft2 grid but Q = 0 and
    the Nyquist rows and columns (which mix +Q and −Q)."""
    valid = np.ones((shape[0], shape[1] // 2 + 1), bool)
    valid[0, 0] = False
    if shape[0] % 2 == 0:
        valid[shape[0] // 2] = False
    if shape[1] % 2 == 0:
        valid[:, -1] = False
    return valid


def _checked_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(
            f"method must be one of {', '.join(METHODS)}, not {method!r}"
        )
    return method


# --- entry points --------------------------------------------------------


def prepare_direct_steps(
    cube: DataCube,
    method: str = 'ssb',
    vacuum_probe=None,
    edge_blend: float = 2.0,
    object_padding_px: tuple[int, int] = (4, 4),
    device: str = 'cpu',
    chunk_bytes: int = CHUNK_BYTES,
) -> Generator[float, None, DirectPhase]:
    """Compute the bright-field spectra of ``cube`` once (see
    ``spectra.py``) for fast :meth:`DirectPhase.phase` updates; a generator
    of progress fractions that returns the :class:`DirectPhase` (stop
    iterating to cancel).

    ``method``: the default of :meth:`DirectPhase.phase` ('ssb' or 'obf');
    ``vacuum_probe`` (Qx, Qy) intensity, if given, gives the aperture's
    edge (better than the mean pattern's, which the specimen widens);
    ``edge_blend`` (scan px) blends the images to their mean at the scan
    edges, ``object_padding_px`` (px, total per axis) pads the scan so
    the FFT's wrap-around does not fold one edge onto the other;
    ``chunk_bytes`` bounds the images transformed at a time; ``device``
    'cpu' or 'gpu' (cupy). Needs the calibration's scan step, detector
    pixel and energy; the probe centre and radius are fitted when the
    calibration has none.
    """
    if not isinstance(cube, DataCube):
        raise TypeError(
            f'direct ptychography needs a DataCube, not {type(cube).__name__}'
        )
    _checked_method(method)
    cal = cube.calibration
    cal.require('scan_step', 'q_pixel_mrad', 'energy',
                purpose='direct ptychography')
    padding = tuple(int(p) for p in object_padding_px)
    if min(padding) < 0 or edge_blend < 0:
        raise ValueError('object_padding_px and edge_blend must be ≥ 0')
    data = cube.data
    xp = xp_of(data) if is_cupy(data) else device_xp(device)
    mean_pattern = cube.mean_and_max_pattern()[0]
    yield 0.1
    bright_field = find_bright_field(mean_pattern, cal, vacuum_probe)
    _check_memory(cube, bright_field, padding, xp)
    real, imag = yield from rescaled(
        spectra_steps(data, bright_field, edge_blend, padding, xp,
                      chunk_bytes),
        0.1, 0.9,
    )
    parameters = {
        'source': cube.source,
        'edge_blend': edge_blend,
        'object_padding_px': padding,
        'device': device,
        'vacuum_probe': vacuum_probe is not None,
        'probe_center': bright_field.center,
        'aperture_radius_px': bright_field.radius,
        'bright_field_pixels': len(bright_field.pixels),
        'calibration': cal.to_dict(),
    }
    return DirectPhase(cube, bright_field, real, imag, padding, method,
                       parameters, xp)


def _check_memory(cube, bright_field, padding, xp) -> None:
    """Refuse, naming the sizes, what would not fit: the spectra and the
    side-band weights, two (K, N_Q) complex arrays' worth."""
    shape = padded_shape(cube.scan_shape, padding)
    n_q = shape[0] * (shape[1] // 2 + 1)
    needed = 16 * len(bright_field.pixels) * n_q
    free = available_memory(xp)
    if needed > 0.8 * free:
        raise MemoryError(
            f'{cube.source}: direct ptychography would hold '
            f'{needed / 1e9:.1f} GB (the spectra of '
            f'{len(bright_field.pixels)} bright-field pixels over {n_q} '
            f'frequencies, and their side-band weights) but '
            f'{free / 1e9:.1f} GB are free: bin the detector or crop the '
            'scan'
        )


def prepare_direct(cube: DataCube,
                   progress: ProgressCallback | None = None,
                   **options) -> DirectPhase:
    """:func:`prepare_direct_steps` run to the end (the same ``options``);
    ``progress`` receives its fractions."""
    return run_steps(prepare_direct_steps(cube, **options), progress)


def direct_ptychography_steps(
    cube: DataCube,
    method: str = 'ssb',
    vacuum_probe=None,
    C1: float | None = None,
    aberrations: dict | None = None,
    rotation_deg: float | None = None,
    transpose: bool | None = None,
    edge_blend: float = 2.0,
    object_padding_px: tuple[int, int] = (4, 4),
    device: str = 'cpu',
) -> Generator[float, None, DirectResult]:
    """Direct ptychography phase of ``cube`` (see the module doc), as a
    generator of progress fractions that returns the
    :class:`DirectResult` (stop iterating to cancel).

    ``method`` 'ssb' (single side band, aberration compensated, both side
    bands) or 'obf' (optimum bright field). ``C1`` (Å, = −defocus),
    ``aberrations`` (polar, without C10: C12, phi12, C21... Å and
    degrees), ``rotation_deg`` and ``transpose`` default to the
    calibration's (e.g. the pair parallax handed on); the rest as in
    :func:`prepare_direct_steps`.
    """
    inputs = {'C1': C1, 'aberrations': aberrations,
              'rotation_deg': rotation_deg, 'transpose': transpose}
    if aberrations and 'C10' in aberrations:
        raise ValueError('give C1 as C1= (Å), not as aberrations["C10"]')
    prepared = yield from rescaled(
        prepare_direct_steps(cube, method, vacuum_probe, edge_blend,
                             object_padding_px, device),
        0.0, 0.95,
    )
    used = dict(prepared.aberrations)
    if aberrations is not None:
        used = {'C10': used['C10']} | dict(aberrations)
    if C1 is not None:
        used['C10'] = float(C1)
    result = prepared.result(used, rotation_deg, transpose)
    result.parameters |= inputs
    if cube.calibration.C1 is None and C1 is None:
        result.warnings.append(
            'The calibration has no C1: C1 = 0 (in focus) was assumed.'
        )
    yield 1.0
    return result


def direct_ptychography(cube: DataCube, method: str = 'ssb',
                        progress: ProgressCallback | None = None,
                        **options) -> DirectResult:
    """Direct ptychography phase of ``cube``: ``method`` 'ssb' or 'obf',
    the other ``options`` as in :func:`direct_ptychography_steps`;
    ``progress`` receives fractions in [0, 1]."""
    return run_steps(
        direct_ptychography_steps(cube, method, **options), progress
    )
