"""Each ptychography constraint does what its docstring says, checked on
hand-made arrays (values computed by hand or by scipy), and the
constraints a run is asked for are applied."""

import numpy as np
import pytest
import scipy.fft
from ptycho_truth import EXTENT, layer, scan
from scipy import ndimage

from napari_phase.compute.backend import fft_of
from napari_phase.compute.ptycho import constraints
from napari_phase.compute.ptycho.engine import intensity_centre
from napari_phase.compute.ptycho.initial_probe import initial_modes

FFT = fft_of(np)


def probe(n=32, shift=(0.0, 0.0)):
    """A smooth complex test probe centred near pixel n//2."""
    x, y = np.indices((n, n)) - n // 2
    x, y = x - shift[0], y - shift[1]
    return (np.exp(-(x**2 + y**2) / 20) * np.exp(0.05j * (x**2 - y**2))
            ).astype(np.complex64)


def test_amplitude_clip_and_positivity():
    obj = np.array([[2.0 * np.exp(1j), 0.5j]], np.complex64)
    clipped = constraints.clip_amplitude(obj.copy(), 1.0, np)
    np.testing.assert_allclose(np.abs(clipped), [[1.0, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(np.angle(clipped), np.angle(obj), rtol=1e-6)
    potential = np.array([-0.2, 0.0, 0.3], np.float32)
    assert list(constraints.positive_potential(potential, np)) == [0, 0, 0.3]


def test_gaussian_blur_is_scipys_gaussian_filter_in_angstrom():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 96, 96)).astype(np.float32)
    blurred = constraints.gaussian_blur(image, 0.6, 0.2, FFT)  # σ = 3 px
    expected = ndimage.gaussian_filter(image[0], 3.0, mode='wrap')
    np.testing.assert_allclose(blurred[0], expected, atol=2e-3)
    assert blurred.dtype == np.float32


def test_butterworth_passes_and_stops_by_its_formula():
    """A cosine of 0.5 Å⁻¹ through a low-pass at 0.25 Å⁻¹ of order 2:
    amplitude 1/(1 + 2⁴) = 1/17; the mean is kept."""
    n, pixel = 64, 0.25
    x = np.arange(n) * pixel
    image = 3 + np.cos(2 * np.pi * 0.5 * x)[:, None] * np.ones(n)
    out = constraints.butterworth(image[None].astype(np.float32), 0.25,
                                  None, 2, pixel, FFT)[0]
    assert out.mean() == pytest.approx(3, rel=1e-5)
    np.testing.assert_allclose(out - 3, (image - 3) / 17, atol=1e-5)
    high = constraints.butterworth(image[None].astype(np.float32), None,
                                   0.25, 2, pixel, FFT)[0]
    np.testing.assert_allclose(high - 3, (image - 3) * 16 / 17, atol=1e-5)


def test_total_variation_is_chambolles_algorithm():
    """On a real image, the same iterations as scikit-image's
    ``denoise_tv_chambolle`` (Chambolle 2004) give the same image."""
    from skimage.restoration import denoise_tv_chambolle

    rng = np.random.default_rng(0)
    image = (np.arange(40)[:, None] > 20) + 0.3 * rng.standard_normal(
        (40, 40))
    ours = constraints.total_variation(image[None], 0.2, np, iterations=10)
    theirs = denoise_tv_chambolle(image, weight=0.2, max_num_iter=10, eps=0)
    np.testing.assert_allclose(ours[0], theirs, atol=1e-12)


def test_total_variation_smooths_a_noisy_phase_step_without_wrapping():
    """A pure-phase object with a 3 rad step (beyond π/2 from the mean)
    plus noise: TV lowers the phase's total variation, keeps the step and
    does not wrap."""
    rng = np.random.default_rng(1)
    phase = np.where(np.arange(48)[:, None] < 24, 0.0, 3.0) * np.ones(48)
    noisy = phase + 0.2 * rng.standard_normal(phase.shape)
    obj = np.exp(1j * noisy)[None].astype(np.complex64)
    out = constraints.total_variation(obj, 0.1, np)
    found = np.angle(out[0] * np.exp(-1.5j)) + 1.5  # no wrap in (−π, π]

    def variation(image):
        return np.abs(np.diff(image, axis=0)).sum() + np.abs(
            np.diff(image, axis=1)).sum()

    assert variation(found) < 0.5 * variation(noisy)
    assert np.abs(found - phase).mean() < np.abs(noisy - phase).mean()
    assert found[30:, :].mean() == pytest.approx(3.0, abs=0.1)


def test_kz_regularization_damps_slice_to_slice_change_only():
    rng = np.random.default_rng(2)
    stack = np.exp(0.3j * rng.standard_normal((4, 32, 32))).astype(
        np.complex64)
    same = constraints.kz_regularization(stack, 0.0, 20.0, 0.25, FFT)
    np.testing.assert_allclose(same, stack, atol=1e-6)  # γ = 0: identity
    damped = constraints.kz_regularization(stack, 1.0, 20.0, 0.25, FFT)
    change = np.abs(np.diff(np.angle(stack), axis=0)).mean()
    assert np.abs(np.diff(np.angle(damped), axis=0)).mean() < 0.7 * change


def test_recentre_moves_the_modes_intensity_centre_back():
    modes = np.stack([probe(shift=(1.3, -0.7)), 0.3 * probe(shift=(2, 0))])
    out = constraints.recentre(modes, (16.0, 16.0), FFT, np)
    np.testing.assert_allclose(intensity_centre(out, np), (16, 16),
                               atol=0.02)
    np.testing.assert_allclose((np.abs(out) ** 2).sum(),
                               (np.abs(modes) ** 2).sum(), rtol=1e-5)


def test_fourier_amplitude_and_support():
    modes = np.stack([probe(), 0.5 * probe(shift=(1, 1))])
    aperture = np.abs(np.fft.fft2(probe(shift=(0.5, 0))))
    out = constraints.fourier_amplitude(modes, aperture, FFT, np)
    total = np.sqrt((np.abs(np.fft.fft2(out)) ** 2).sum(axis=0))
    np.testing.assert_allclose(total, aperture, atol=1e-4 * aperture.max())
    support = aperture > 0.05 * aperture.max()
    kept = constraints.fourier_support(modes, support, FFT, np)
    assert np.abs(np.fft.fft2(kept))[:, ~support].max() < 1e-4
    np.testing.assert_allclose((np.abs(kept) ** 2).sum(),
                               (np.abs(modes) ** 2).sum(), rtol=1e-5)


def test_orthogonalise_keeps_the_incoherent_sum_and_sorts_the_modes():
    rng = np.random.default_rng(3)
    modes = (rng.standard_normal((3, 16, 16))
             + 1j * rng.standard_normal((3, 16, 16))).astype(np.complex64)
    modes[2] *= 3
    out = constraints.orthogonalise(modes, np)
    gram = np.einsum('kxy,lxy->kl', out.conj(), out)
    off = gram - np.diag(np.diag(gram))
    assert np.abs(off).max() < 1e-4 * np.abs(gram).max()
    powers = np.diag(gram).real
    assert np.all(np.diff(powers) < 0)
    np.testing.assert_allclose((np.abs(out) ** 2).sum(0),
                               (np.abs(modes) ** 2).sum(0), rtol=1e-4)
    # an orthogonal set comes back as it went (no phase jumps)
    np.testing.assert_allclose(constraints.orthogonalise(out, np), out,
                               atol=1e-4 * np.abs(out).max())


def test_initial_modes_are_orthogonal_derivatives_of_the_probe():
    p = probe()
    modes = initial_modes(p, 4)
    gram = np.einsum('kxy,lxy->kl', modes.conj(), modes)
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-3 * gram[0, 0]
    total = (np.abs(p) ** 2).sum()
    np.testing.assert_allclose(np.diag(gram).real.sum(), total, rtol=1e-5)
    assert gram[0, 0].real == pytest.approx(0.5 * total, rel=1e-5)
    np.testing.assert_allclose(modes[0] / np.sqrt(0.5), p, atol=1e-6)
    # mode 1 is ∂P/∂x: the FFT of the probe times k_x, orthogonalised
    k = np.fft.fftfreq(32)[:, None]
    derivative = np.fft.ifft2(np.fft.fft2(p) * k)
    cosine = abs(np.vdot(derivative, modes[1])) / (
        np.linalg.norm(derivative) * np.linalg.norm(modes[1]))
    assert cosine > 0.99
    np.testing.assert_array_equal(initial_modes(p, 1)[0], p)


def test_a_run_applies_the_constraints_it_is_asked_for():
    cube = scan([layer(EXTENT, 1)], scan_shape=(8, 8), C1=150.0)
    from napari_phase import ptychography

    plain = ptychography(cube, num_iter=2, fix_probe=True)
    smooth = ptychography(cube, num_iter=2, fix_probe=True,
                          gaussian_sigma=1.0)
    spectrum = np.abs(scipy.fft.fft2(np.angle(smooth.object)))
    plain_spectrum = np.abs(scipy.fft.fft2(np.angle(plain.object)))
    n = spectrum.shape[0]
    high = slice(n // 4, 3 * n // 4)
    assert spectrum[high, high].sum() < 0.1 * plain_spectrum[high, high].sum()
    free = ptychography(cube, num_iter=2, probe_aperture='amplitude')
    start = ptychography(cube, num_iter=0)
    np.testing.assert_allclose(np.abs(np.fft.fft2(free.probe)),
                               np.abs(np.fft.fft2(start.probe)),
                               atol=1e-3 * np.abs(np.fft.fft2(start.probe)).max())
