"""``napari-phase``: the pipeline without a window.

``napari-phase run DATA.h5 [--probe PROBE.h5] [--recipe R.yaml]
[--methods dpc,parallax,ptycho] -o OUT.h5 [--force]`` runs a recipe (the
reference workflow by default) with progress on stderr and writes the
results (HDF5, with the recipe) and a PNG comparison panel next to them.
``--scheduler ADDRESS`` computes on a dask.distributed cluster
(``'local'``: a LocalCluster here) instead of local threads.

``napari-phase demo [--out DIR] [--headless] [--quick]`` runs the whole
reference workflow on the simulated gold-nanoparticle sample: in napari,
with every layer and widget, where there is a display; otherwise it writes
the results, the comparison panel and the recipe to DIR and says where.

Bad input (unreadable data, a bad recipe, an existing output without
``--force``, an unwritable directory) ends with one line on stderr and a
non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from .compute.calibration import CalibrationError

#: Exit codes: bad input, interrupted.
EXIT_ERROR, EXIT_INTERRUPTED = 2, 130
DEMO_ITERATIONS, QUICK_ITERATIONS = 12, 4
DEMO_FILES = ('results.h5', 'comparison.png', 'recipe.yaml')


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.command(args)
    except (ValueError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else repr(error)
        if isinstance(error, CalibrationError):
            message += (' On the command line, give it in the recipe under '
                        '"calibration:" (e.g. scan_step: 2.39 Å).')
        print(f'napari-phase: error: {message}', file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print('napari-phase: interrupted (no partial file written)',
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='napari-phase',
        description='4D-STEM phase retrieval (DPC, parallax, ptychography).',
    )
    commands = parser.add_subparsers(required=True, metavar='COMMAND')
    run = commands.add_parser(
        'run', help='run a recipe on a 4D-STEM file, write the results')
    run.add_argument('data', help='4D-STEM HDF5 file (file.h5 or '
                     'file.h5::/path/to/dataset)')
    run.add_argument('--probe', help='vacuum probe HDF5 file')
    run.add_argument('--recipe', help='recipe (.yaml or .json, or a results '
                     '.h5 to replay); default: the reference workflow')
    run.add_argument('--methods', type=_methods,
                     help='comma-separated subset of dpc,parallax,ptycho')
    run.add_argument('-o', '--output', required=True,
                     help='results file (.h5); the panel goes to OUT.png')
    run.add_argument('--force', action='store_true',
                     help='overwrite existing output files')
    run.add_argument('--scheduler', metavar='ADDRESS',
                     help="compute on a dask.distributed scheduler "
                     "(tcp://host:8786, or 'local' for a LocalCluster); the "
                     'data is then read lazily (workers need the same '
                     'path). Default: local threads')
    run.set_defaults(command=run_command)
    demo = commands.add_parser(
        'demo', help='the whole workflow on the simulated sample')
    demo.add_argument('--out', default='napari-phase-demo',
                      help='directory for the files (headless)')
    demo.add_argument('--headless', action='store_true',
                      help='never open a window: write files')
    demo.add_argument('--quick', action='store_true',
                      help='a smaller sample and fewer iterations')
    demo.add_argument('--force', action='store_true',
                      help='overwrite existing demo files')
    demo.set_defaults(command=demo_command)
    return parser


def _methods(text: str) -> list[str]:
    return [name.strip() for name in text.split(',') if name.strip()]


# --- run ------------------------------------------------------------------
def run_command(args) -> int:
    from .compute.scheduler import use_scheduler
    from .io.read import read_datacube, read_probe
    from .io.results import save_results
    from .pipeline import run_pipeline
    from .recipe import read_recipe, seed_recipe

    output = Path(args.output)
    panel = output.with_suffix('.png')
    _check_outputs([output, panel], args.force)
    recipe = read_recipe(args.recipe) if args.recipe else seed_recipe()
    cube = read_datacube(args.data, lazy=True if args.scheduler else None)
    probe = read_probe(args.probe)[0] if args.probe else None
    with use_scheduler(args.scheduler), StderrProgress() as progress:
        result = run_pipeline(cube, recipe, probe, args.methods, progress)
    save_results(output, result.layers, args.force, recipe=result.recipe)
    write_comparison(panel, result.layers, args.force)
    print(f'results: {output}\ncomparison: {panel}')
    return 0


def _check_outputs(paths, force: bool) -> None:
    """Fail before any work when an output exists (without ``force``) or
    its directory does not."""
    for path in paths:
        if not Path(path).parent.is_dir():
            raise ValueError(f'Cannot write {str(path)!r}: directory '
                             f'{str(Path(path).parent)!r} does not exist')
        if Path(path).exists() and not force:
            raise ValueError(f'{str(path)!r} exists: not overwritten (use '
                             '--force)')


class StderrProgress:
    """One text progress bar per pipeline step, on stderr."""

    def __init__(self, stream=None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width
        self.step = None
        self.shown = None

    def __call__(self, report) -> None:
        if report.step != self.step:
            self._end_line()
            self.step, self.started = report.step, time.perf_counter()
        percent = round(100 * report.fraction)
        if (report.step, percent) == self.shown:
            return
        self.shown = (report.step, percent)
        filled = round(self.width * report.fraction)
        bar = '#' * filled + '-' * (self.width - filled)
        elapsed = time.perf_counter() - self.started
        self.stream.write(f'\r{report.step:<13} [{bar}] {percent:3d}% '
                          f'{elapsed:6.1f} s')
        self.stream.flush()

    def _end_line(self):
        if self.step is not None:
            self.stream.write('\n')
            self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self._end_line()


def write_comparison(path, layers, force: bool = False) -> Path:
    """A PNG panel of the real-space results, side by side on the same
    field of view (Å) with matched robust contrast, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .compute.compare import PlacedImage, common_limits
    from .io.results import atomic_target

    images = [PlacedImage(data, attrs['scale'], attrs['translate'],
                          attrs['name'])
              for data, attrs, kind in layers
              if kind == 'image' and np.ndim(data) == 2]
    limits = common_limits(images)
    figure = Figure(figsize=(3.2 * len(images), 3.6), layout='constrained')
    FigureCanvasAgg(figure)
    for axes, image, (low, high) in zip(
        figure.subplots(1, len(images), squeeze=False)[0], images, limits
    ):
        first, last = image.extent
        half = np.asarray(image.scale) / 2
        axes.imshow(image.data, cmap='gray', vmin=low, vmax=high,
                    extent=(first[1] - half[1], last[1] + half[1],
                            last[0] + half[0], first[0] - half[0]))
        axes.set_title(image.name, fontsize=10)
        axes.set_xlabel('y (Å)')
        axes.set_ylabel('x (Å)')
    with atomic_target(path, force) as temporary:
        figure.savefig(temporary, format='png', dpi=100)
    return Path(path)


# --- demo -----------------------------------------------------------------
def demo_command(args) -> int:
    from .pipeline import run_pipeline
    from .recipe import seed_recipe

    headless = args.headless or not (os.environ.get('DISPLAY')
                                      or os.environ.get('WAYLAND_DISPLAY'))
    out = Path(args.out)
    paths = [out / name for name in DEMO_FILES]
    if headless:
        out.mkdir(parents=True, exist_ok=True)
        _check_outputs(paths, args.force)
    cube, probe = demo_sample(args.quick)
    recipe = seed_recipe(QUICK_ITERATIONS if args.quick else DEMO_ITERATIONS)
    print(f'napari-phase demo: {cube.source}, scan {cube.scan_shape}, '
          f'detector {cube.detector_shape}', file=sys.stderr)
    with StderrProgress() as progress:
        result = run_pipeline(cube, recipe, probe, progress=progress)
    if not headless:
        import napari

        show_in_napari(cube, probe, result)
        napari.run()
        return 0
    write_demo_files(paths, result, args.force)
    print('napari-phase demo wrote:')
    for path in paths:
        print(f'  {path.resolve()}')
    return 0


def demo_sample(quick: bool = False):
    """The simulated gold-nanoparticle scan (48×48 × 128², or 24×24 × 128²
    when ``quick``) and its vacuum probe, with a fresh calibration."""
    from . import _sample
    from .compute.datacube import DataCube

    sim = _sample.simulation(_sample.QUICK_SCAN_SHAPE if quick
                             else _sample.SCAN_SHAPE)
    size = 'x'.join(map(str, sim.datacube.scan_shape))
    cube = DataCube(sim.datacube.data, sim.datacube.calibration.copy(),
                    source=f'simulated gold nanoparticles ({size}, seed 0)')
    return cube, sim.vacuum_probe


def write_demo_files(paths, result, force: bool) -> None:
    from .io.results import save_results
    from .recipe import write_recipe

    results, panel, recipe = paths
    save_results(results, result.layers, force, recipe=result.recipe)
    write_comparison(panel, result.layers, force)
    write_recipe(recipe, result.recipe, force)


#: The phases the demo opens on, side by side.
DEMO_PHASES = ('DPC phase', 'parallax phase', 'ptychography phase')


def show_in_napari(cube, probe, result):
    """A napari viewer with the datacube, the probe and every result
    layer, the napari-phase dock and the diffraction view, opened on the
    side-by-side comparison of the three phases."""
    import napari
    from napari.layers import Layer

    from .io.layers import datacube_layers, probe_layers
    from .widgets.diffraction_view import diffraction_view

    viewer = napari.Viewer(title='napari-phase demo')
    for layer in (datacube_layers(cube, 'gold nanoparticles')
                  + probe_layers(probe, cube.calibration, 'vacuum probe')
                  + result.layers):
        viewer.add_layer(Layer.create(*layer))
    _, workflow = viewer.window.add_plugin_dock_widget(
        'napari-phase', 'napari-phase')
    compare = workflow.open_step('Compare')
    compare.layers.value = list(DEMO_PHASES)
    compare.show()
    mean = cube.mean_and_max_pattern()[0]
    q = cube.calibration.q_pixel_mrad
    view = diffraction_view(viewer)
    view.show_pattern('mean pattern', mean, (q, q))
    view.reset_view()
    return viewer


if __name__ == '__main__':
    sys.exit(main())
