"""The tutorial's figure of the ptychography options
(docs/images/ptycho_options.png).

One dataset of the independent abTEM suite (benchmarks/independent.py,
stored under tests/data/independent: nothing of our forward model made
it) is calibrated as a user does (probe fit on the vacuum probe), then
reconstructed from the true geometry with the default settings, with three
probe modes and with four slices across the specimen's thickness (the
defocus of each at the plane its model refers to: :func:`variants`). Each
phase is scored against the stored truth with compute/score.quality
(band-passed Pearson r and slope, at twice the truth's pixel)::

    python -m benchmarks.tutorial_figure [--dataset gold_carbon]
        [--iterations 16] [--out docs/images/ptycho_options.png]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from benchmarks import independent

OUT = Path(__file__).resolve().parents[1] / 'docs' / 'images' / \
    'ptycho_options.png'
SLICES = 4


def variants(truth) -> dict:
    """Title → the settings that differ from the defaults. The defocus is
    the truth's at the plane each model refers to: mid-specimen for one
    slice (what parallax measures), the entrance surface (C1 = C1 at
    mid-specimen − thickness/2) for the slices, which propagate the probe
    through the specimen themselves."""
    mid = {'defocus': -truth.C1_mid_specimen}
    thickness = truth.thickness / SLICES
    return {
        'one slice, one probe mode (defaults)': mid,
        'three probe modes': mid | {'num_probes': 3},
        f'{SLICES} slices of {thickness:.0f} Å': {
            'defocus': -truth.C1, 'num_slices': SLICES,
            'slice_thickness': thickness},
    }


def reconstruct(name: str, iterations: int) -> tuple:
    """The truth and, per variant, (result, quality, seconds)."""
    from napari_phase import ptychography, run_pipeline
    from napari_phase.compute.score import quality
    from napari_phase.recipe import new_recipe

    cube, probe, truth = independent.load(name)
    run_pipeline(cube, new_recipe({'calibrate': {'thresh_upper': 0.7}}),
                 probe)
    common = {'rotation_deg': truth.rotation_deg,
              'transpose': truth.transpose, 'num_iter': iterations,
              'seed': 0}
    rows = {}
    for title, settings in variants(truth).items():
        start = time.perf_counter()
        with warnings.catch_warnings():  # the 400 Å probe nears the edge
            warnings.filterwarnings('ignore', '.*near the edge',
                                    RuntimeWarning)
            result = ptychography(cube, probe, **common | settings)
        seconds = time.perf_counter() - start
        score = quality(result.phase, truth.phase, result.pixel_size,
                        truth.phase_pixel, 2 * truth.phase_pixel,
                        image_origin=result.origin)
        rows[title] = (result, score, seconds)
    return truth, rows


def figure(truth, rows: dict, iterations: int, out: Path) -> Path:
    """Truth and each variant's phase side by side, r in the titles."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(rows), figsize=(11, 3.4),
                             constrained_layout=True)
    panels = [('truth: projected phase', truth.phase, truth.phase_pixel,
               (0.0, 0.0))]
    panels += [(f'{title}\nr = {score.correlation:.3f}', result.phase,
                result.pixel_size, result.origin)
               for title, (result, score, _) in rows.items()]
    for ax, (title, image, pixel, origin) in zip(axes, panels, strict=True):
        x0, y0 = origin
        extent = (y0 - pixel / 2, y0 + (image.shape[1] - 0.5) * pixel,
                  x0 + (image.shape[0] - 0.5) * pixel, x0 - pixel / 2)
        ax.imshow(image, cmap='gray', extent=extent)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel(f'{truth.name}, {truth.thickness:.0f} Å thick')
    fig.suptitle(f'{iterations} iterations; r: band-passed correlation '
                 'with the truth (compute/score.quality)', fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dataset', default='gold_carbon',
                        choices=list(independent.SPECS))
    parser.add_argument('--iterations', type=int, default=16)
    parser.add_argument('--out', type=Path, default=OUT)
    args = parser.parse_args(argv)
    truth, rows = reconstruct(args.dataset, args.iterations)
    for title, (result, score, seconds) in rows.items():
        print(f'{title:40s} {score} error {result.errors[-1]:.4f} '
              f'{seconds:.1f} s')
    print(figure(truth, rows, args.iterations, args.out))
    return {title: score.correlation for title, (_, score, _) in rows.items()}


if __name__ == '__main__':
    main()
