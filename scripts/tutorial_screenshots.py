"""Regenerate the screenshots of docs/tutorial.md from the real napari
window.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python \
        scripts/tutorial_screenshots.py [--out docs/images] [--quick]

It runs the reference workflow on the simulated sample (the same as
``napari-phase demo``), opens napari with every layer and widget, then,
for each tutorial step, shows that step's layers, brings its widget to the
front and saves a screenshot of the whole window.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_phase.cli import demo_sample, show_in_napari
from napari_phase.pipeline import run_pipeline
from napari_phase.recipe import seed_recipe

#: (file, widget to bring to the front, layers to show, grid view)
SHOTS = (
    ('01_open.png', 'Diffraction view', ['gold nanoparticles'], False),
    ('02_calibrate.png', 'Probe calibration', ['virtual BF'], False),
    ('03_virtual_detectors.png', 'Virtual detectors',
     ['virtual BF', 'virtual ADF'], True),
    ('04_dpc.png', 'DPC', ['DPC phase'], False),
    ('05_parallax.png', 'Parallax', ['parallax phase'], False),
    ('06_ptychography.png', 'Ptychography', ['ptychography phase'], False),
    ('07_compare.png', 'Compare results',
     ['DPC phase', 'parallax phase', 'ptychography phase'], True),
)


def settle(seconds: float = 0.5) -> None:
    """Let Qt draw (there is no event loop running)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def bring_to_front(viewer, title: str):
    """The docked widget whose name starts with ``title``, raised."""
    for name, widget in viewer.window.dock_widgets.items():
        if name.startswith(title):
            dock = getattr(widget, 'native', widget).parentWidget()
            while dock is not None and not hasattr(dock, 'raise_'):
                dock = dock.parentWidget()
            if dock is not None:
                dock.show()
                dock.raise_()
            return widget
    return None


def prepare_compare(viewer, widget) -> None:
    """Pick the three phases, matched contrast, a profile line, numbers."""
    widget = getattr(widget, '_magic_widget', widget)
    if not hasattr(widget, 'layers'):
        return
    widget.layers.value = [
        name for name in ('DPC phase', 'parallax phase',
                          'ptychography phase') if name in viewer.layers
    ]
    widget.show()
    widget.draw_line()
    widget.compute_numbers()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='docs/images')
    parser.add_argument('--quick', action='store_true',
                        help='small sample, few iterations (a smoke test)')
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cube, probe = demo_sample(args.quick)
    result = run_pipeline(cube, seed_recipe(4 if args.quick else 16), probe)
    viewer = show_in_napari(cube, probe, result)
    viewer.window.resize(1600, 1000)
    for filename, title, shown, grid in SHOTS:
        for layer in viewer.layers:
            layer.visible = layer.name in shown
        viewer.canvas.grid.enabled = grid
        widget = bring_to_front(viewer, title)
        if filename == '07_compare.png' and widget is not None:
            prepare_compare(viewer, widget)
        viewer.reset_view()
        settle()
        viewer.screenshot(str(out / filename), canvas_only=False, flash=False)
        print(out / filename)
    viewer.close()


if __name__ == '__main__':
    main()
    napari.Viewer.close_all()
