"""Regenerate the screenshots of docs/tutorial.md from the real napari
window, by doing the tutorial's steps in its widgets.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python \
        scripts/tutorial_screenshots.py [--out docs/images] [--iterations 16]

It opens the built-in sample (Gold nanoparticles, simulated), docks every
napari-phase widget, then calibrates, adds the BF and ADF detectors, runs
DPC, parallax and ptychography and compares the results, pressing the same
buttons a user would, and saves a screenshot of the whole window after
each step.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_phase.widgets.dpc_widget import THRESHOLD

PLUGIN = 'napari-phase'
WINDOW = (1800, 1000)
PHASES = ('DPC phase', 'parallax phase', 'ptychography phase')


def settle(seconds: float = 0.5, until=None, timeout: float = 600) -> None:
    """Process Qt events for ``seconds``, or until ``until()`` is true."""
    start = time.perf_counter()
    while True:
        QApplication.processEvents()
        elapsed = time.perf_counter() - start
        if until is None and elapsed > seconds:
            return
        if until is not None and until():
            return settle(seconds)
        if elapsed > timeout:
            raise TimeoutError('a step did not finish in time')
        time.sleep(0.02)


class Tutorial:
    """The viewer, its docked widgets, and a screenshot per step."""

    def __init__(self, out: Path):
        self.out = out
        self.viewer = napari.Viewer(title='napari-phase tutorial')
        self.viewer.window.resize(*WINDOW)
        self.viewer.open_sample(PLUGIN, 'gold_nanoparticles')
        self.docks = {}
        for name in ('Diffraction view', 'Probe calibration',
                     'Virtual detectors', 'DPC', 'Parallax', 'Ptychography',
                     'Compare results'):
            dock, widget = self.viewer.window.add_plugin_dock_widget(
                PLUGIN, name, tabify=name != 'Diffraction view')
            self.docks[name] = (dock, widget)

    def widget(self, name: str):
        dock, widget = self.docks[name]
        dock.show()
        dock.raise_()
        return widget

    def run(self, widget, start) -> None:
        start()
        settle(until=lambda: widget.runner.worker is None)
        if widget.runner.status.value.startswith('Error'):
            raise RuntimeError(widget.runner.status.value)

    def show_only(self, *names: str, grid: bool = False) -> None:
        for layer in self.viewer.layers:
            layer.visible = layer.name in names
        self.viewer.canvas.grid.enabled = grid
        self.viewer.reset_view()

    def shot(self, filename: str) -> None:
        self.viewer.window.resize(*WINDOW)
        settle(0.8)
        path = self.out / filename
        self.viewer.screenshot(str(path), canvas_only=False, flash=False)
        print(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='docs/images')
    parser.add_argument('--iterations', type=int, default=16,
                        help='ptychography iterations')
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = Tutorial(out)

    t.widget('Diffraction view')
    t.show_only('gold nanoparticles')
    t.shot('01_open.png')

    calibrate = t.widget('Probe calibration')
    calibrate.probe_layer.value = t.viewer.layers['vacuum probe']
    calibrate.thresh_upper.value = 0.7
    t.run(calibrate, calibrate.fit)
    calibrate.apply()
    t.shot('02_calibrate.png')

    virtual = t.widget('Virtual detectors')
    virtual.add_bf()
    virtual.add_adf()
    settle(until=lambda: {'virtual BF', 'virtual ADF'} <= set(
        layer.name for layer in t.viewer.layers))
    t.show_only('virtual BF', 'virtual ADF', grid=True)
    t.shot('03_virtual_detectors.png')

    dpc = t.widget('DPC')
    dpc.mask.value, dpc.threshold.value = THRESHOLD, 0.8
    t.run(dpc, dpc.run)
    t.show_only('DPC phase')
    t.shot('04_dpc.png')

    parallax = t.widget('Parallax')
    t.run(parallax, parallax.run)
    t.show_only('parallax phase')
    t.shot('05_parallax.png')

    ptycho = t.widget('Ptychography')
    ptycho.num_iter.value = args.iterations
    t.run(ptycho, ptycho.run)
    t.show_only('ptychography phase')
    t.shot('06_ptychography.png')

    compare = t.widget('Compare results')
    compare.layers.value = list(PHASES)
    compare.show()
    t.shot('07_compare_grid.png')
    compare.draw_line()
    compare.compute_numbers()
    t.shot('08_compare_profile.png')
    t.viewer.close()


if __name__ == '__main__':
    main()
