"""Regenerate the screenshots of docs/tutorial.md from the real napari
window, by doing the tutorial's steps in the napari-phase dock.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python \
        scripts/tutorial_screenshots.py [--out docs/images] [--iterations 16]

It opens a 1280×800 window, the napari-phase dock (Plugins menu) and the
built-in sample (File > Open Sample), then calibrates, adds the BF and ADF
detectors, runs DPC and parallax, prepares the tuned phase, runs
ptychography and compares the results,
clicking and typing as a user does (tests/gui.py), and saves a
screenshot of the whole window after each step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
from gui import choose, click, select_items, type_into

PLUGIN = 'napari-phase'
WINDOW = (1280, 800)
PHASES = ['DPC phase', 'parallax phase', 'ptychography phase']


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
    """The viewer, the napari-phase dock, and a screenshot per step."""

    def __init__(self, out: Path):
        self.out = out
        self.viewer = napari.Viewer(title='napari-phase tutorial')
        self.viewer.window.resize(*WINDOW)
        _, self.dock = self.viewer.window.add_plugin_dock_widget(
            PLUGIN, 'napari-phase')
        self.viewer.open_sample(PLUGIN, 'gold_nanoparticles')
        cube = self.viewer.layers['gold nanoparticles']
        settle(until=lambda: cube.visible)  # simulated

    def run(self, step) -> None:
        click(step.runner.run_button)
        settle(until=lambda: step.runner.worker is None)
        if step.runner.status.value.startswith('Error'):
            raise RuntimeError(step.runner.status.value)

    def show_only(self, *names: str) -> None:
        for layer in self.viewer.layers:
            layer.visible = layer.name in names
        self.viewer.reset_view()

    def shot(self, filename: str) -> None:
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
    t.show_only('gold nanoparticles')
    t.shot('01_open.png')

    calibrate = t.dock.open_step('Calibration')
    choose(calibrate.probe_layer, 'vacuum probe')
    type_into(calibrate.thresh_upper, '0.7')
    t.run(calibrate)
    click(calibrate.apply_button)
    t.shot('02_calibrate.png')

    virtual = t.dock.open_step('Virtual detectors')
    click(virtual.bf_button)
    click(virtual.adf_button)
    settle(until=lambda: {'virtual BF', 'virtual ADF'} <= {
        layer.name for layer in t.viewer.layers})
    t.show_only('virtual BF', 'virtual ADF')
    t.shot('03_virtual_detectors.png')

    dpc = t.dock.open_step('DPC')
    choose(dpc.mask, 'mean pattern > threshold')
    t.run(dpc)
    t.shot('04_dpc.png')

    parallax = t.dock.open_step('Parallax')
    t.run(parallax)
    t.shot('05_parallax.png')

    tune = t.dock.open_step('Tune aberrations')
    t.run(tune)
    t.show_only('tuned phase')
    t.shot('06_tune.png')

    ptycho = t.dock.open_step('Ptychography')
    type_into(ptycho.num_iter, str(args.iterations))
    t.run(ptycho)
    t.shot('07_ptychography.png')

    compare = t.dock.open_step('Compare')
    select_items(compare.layers, PHASES)
    click(compare.show_button)
    t.shot('08_compare_grid.png')
    click(compare.line_button)
    click(compare.numbers_button)
    t.shot('09_compare_profile.png')
    t.viewer.close()


if __name__ == '__main__':
    main()
