"""``python -m benchmarks --ui``: how the window responds, step by step.

The seed workflow driven in a real napari window (1280×800; under
``xvfb-run`` when there is no display) with mouse clicks, typed values and
mouse drags (tests/gui.py), on the seed-sized dataset (48×48 scan × 192²
detector; ``--quick``: 16×16 × 64²). For every step it prints:

- the **longest UI stall**: the longest time the main thread did not turn
  the Qt event loop (a 10 ms timer on the main thread; a gap between two
  of its ticks is a stall), from the click to the step's last layer shown;
- the step's time in the window, and the same computation **headless**
  (the widget's own parameters, called directly while the window idles;
  the median of the runs before and after the window's).

While a detector shape is dragged (mouse moves every 30 ms), it prints the
**live virtual image latency** (from a mouse move to the first image that
includes it: median and longest) and the most updates ever waiting (the
tool keeps at most one). The idle floor (the longest gap of the idle
event loop, e.g. a repaint) is printed first: stalls are measured above
it. Timings on a shared machine are noisy: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SCREEN = (1280, 800)
#: The stall monitor's tick (ms) and the pace of the dragged mouse (ms).
TICK_MS, MOVE_MS = 10, 30


def main(argv=None) -> dict:
    args = _arguments(argv)
    if not (os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
        command = [sys.executable, '-m', 'benchmarks.ui_latency',
                   *(argv if argv is not None else sys.argv[1:])]
        done = subprocess.run(['xvfb-run', '-a', '-s',
                               '-screen 0 1920x1080x24', *command],
                              check=False)
        raise SystemExit(done.returncode)
    from benchmarks import dataset

    data = dataset.prepare(HERE / '.build', dataset.QUICK if args.quick
                           else dataset.SEED)
    report = Session(data, args).run()
    print(markdown(report))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / 'ui_latency.json').write_text(json.dumps(report, indent=1))
        (out / 'ui_latency.md').write_text(markdown(report))
    return report


def _arguments(argv):
    parser = argparse.ArgumentParser(
        prog='python -m benchmarks --ui',
        description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='16×16 scan × 64² detector, 2 iterations')
    parser.add_argument('--ptycho-iterations', type=int, default=None,
                        help='iterations of the ptychography step '
                             '(default 4, or 2 with --quick)')
    parser.add_argument('--out', default=None, help='folder for the '
                        'report (ui_latency.json, ui_latency.md)')
    args = parser.parse_args(argv)
    args.ptycho_iterations = args.ptycho_iterations or (
        2 if args.quick else 4)
    return args


class StallMonitor:
    """The longest gap between ticks of a timer on the main thread."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.last = time.perf_counter()
        self.longest = 0.0
        self.timer.start()

    def _tick(self):
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now

    def reset(self):
        self.last = time.perf_counter()
        self.longest = 0.0

    def stall_ms(self) -> float:
        """Longest stall since :meth:`reset` (ms, the tick subtracted)."""
        self._tick()
        return max(0.0, 1e3 * self.longest - TICK_MS)


class Session:
    """One run of the workflow in a window (see the module docstring)."""

    def __init__(self, data: dict, args):
        self.data, self.args = data, args
        self.rows: list[dict] = []

    def run(self) -> dict:
        import napari
        from qtpy.QtWidgets import QApplication

        sys.path.insert(0, str(HERE.parent / 'tests'))
        self.app = QApplication.instance() or napari.qt.get_qapp()
        self.viewer = napari.Viewer(show=True, title='napari-phase UI test')
        self.viewer.window.resize(*SCREEN)
        self.monitor = StallMonitor()
        self.wait(1.0)
        self.monitor.reset()
        self.wait(2.0)
        floor = self.monitor.stall_ms()
        try:
            self.workflow()
            drag = self.drag_detector()
            self.methods('')
            self.methods(' (again)')
            self.reference()
        finally:
            self.viewer.close()
        return {'dataset': self.data['parameters'], 'floor_ms': floor,
                'steps': self.rows, 'drag': drag,
                'machine': os.cpu_count(), 'screen': SCREEN}

    # --- helpers ---------------------------------------------------------
    def wait(self, seconds: float, until=None, timeout: float = 600.0):
        """Run the Qt event loop (as napari does: idle between events) for
        ``seconds``, or until ``until()`` (checked every 20 ms)."""
        from qtpy.QtCore import QEventLoop, QTimer

        loop, check = QEventLoop(), QTimer()
        start = time.perf_counter()

        def done() -> bool:
            elapsed = time.perf_counter() - start
            return (until() if until is not None else elapsed >= seconds) \
                or elapsed > timeout

        check.timeout.connect(lambda: done() and loop.quit())
        check.start(20)
        if not done():
            loop.exec()
        check.stop()
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f'waited {timeout} s')

    def step(self, name, action, until, headless=None):
        """Do ``action`` (clicks), wait ``until()``; record the stall."""
        self.wait(0.3)
        self.monitor.reset()
        start = time.perf_counter()
        action()
        self.wait(0, until)
        seconds = time.perf_counter() - start
        row = {'step': name, 'stall_ms': self.monitor.stall_ms(),
               'window_s': seconds}
        if headless is not None:
            row['headless_s'] = headless
        self.rows.append(row)
        print(f'{name}: stall {row["stall_ms"]:.0f} ms, {seconds:.2f} s',
              flush=True)
        return row

    def layers_shown(self, *names):
        layers = self.viewer.layers
        return lambda: all(name in layers for name in names) and (
            layers[-1].name == names[0])

    # --- the workflow -------------------------------------------------------
    def workflow(self):
        from gui import choose, click, type_into

        viewer, files = self.viewer, self.data['files']
        holder = {}

        def open_dock():
            _, holder['dock'] = viewer.window.add_plugin_dock_widget(
                'napari-phase', 'napari-phase')

        self.step('open the napari-phase dock (first use: imports)',
                  open_dock, lambda: 'dock' in holder)
        self.dock = dock = holder['dock']
        self.step('open the sample (simulated in the background)',
                  lambda: viewer.open_sample('napari-phase',
                                             'gold_nanoparticles'),
                  lambda: 'gold nanoparticles' in viewer.layers)
        cube_layer = viewer.layers['gold nanoparticles']
        self.wait(0, lambda: cube_layer.visible)  # simulated
        viewer.layers.clear()
        self.step('open the data file and its probe (reader)',
                  lambda: (viewer.open(files['cube_emd'],
                                       plugin='napari-phase'),
                           viewer.open(files['probe_emd'],
                                       plugin='napari-phase')),
                  lambda: len(viewer.layers) == 2)
        self.cube = viewer.layers[0].metadata['napari_phase']['datacube']
        calibrate = dock.open_step('Calibration')
        choose(calibrate.probe_layer, viewer.layers[1].name)
        type_into(calibrate.thresh_upper, '0.7')
        self.step('probe fit', lambda: click(calibrate.runner.run_button),
                  lambda: calibrate.runner.worker is None)
        self.step('apply the calibration',
                  lambda: click(calibrate.apply_button), lambda: True)
        detectors = dock.open_step('Virtual detectors')
        self.wait(0, lambda: detectors.worker is None)
        self.step('add BF and ADF (virtual images)',
                  lambda: (click(detectors.bf_button),
                           click(detectors.adf_button)),
                  lambda: 'virtual ADF' in viewer.layers
                  and detectors.worker is None)

    def drag_detector(self) -> dict:
        """Drag a detector (the one on top at the beam centre: the ADF's
        outer disk) across the detector; the live image latency."""
        from gui import canvas_point, drag

        from napari_phase.widgets.diffraction_view import diffraction_view

        detectors = self.dock.steps['Virtual detectors']
        view = diffraction_view(self.viewer)
        select = next(b for b in view.tools.buttons() if b.text() ==
                  'select/move')
        select.click()
        cal = self.cube.calibration
        q = cal.q_pixel_mrad
        starts, shown, moves, waiting = [], [], [], []
        start = detectors._start

        def timed_start(*args):
            starts.append(time.perf_counter())
            return start(*args)

        detectors._start = timed_start
        for name in ('virtual BF', 'virtual ADF'):  # the one grabbed moves
            self.viewer.layers[name].events.data.connect(
                lambda _: shown.append((time.perf_counter(), starts[-1])))
        canvas = view.qt_viewer.canvas
        camera = view.model.scene.camera
        centre = np.asarray(cal.probe_center)
        path = [centre + (k, -k / 2) for k in np.linspace(0, 12, 21)]

        class Pacer:  # a mouse moved by a hand, not as fast as possible
            def wait(_, ms):
                moves.append(time.perf_counter())
                waiting.append(int(detectors._pending))
                self.wait(ms / 1e3)

        self.monitor.reset()
        begin = time.perf_counter()
        first, last = (canvas_point(canvas, camera, path[i] * q)
                       for i in (0, -1))
        drag(canvas, first, last, steps=len(path) - 1, qtbot=Pacer(),
             pause_ms=MOVE_MS)
        self.wait(0, lambda: detectors.worker is None
                  and not detectors._pending
                  and not detectors._timer.isActive())
        stall = self.monitor.stall_ms()
        latencies = []
        for moved in moves:
            after = [t for t, began in shown if began >= moved]
            if after:
                latencies.append(1e3 * (after[0] - moved))
        detectors._start = start
        result = {
            'moves': len(moves), 'updates': len(shown),
            'latency_median_ms': statistics.median(latencies),
            'latency_max_ms': max(latencies),
            'most_waiting': max(waiting, default=0),
            'stall_ms': stall, 'seconds': time.perf_counter() - begin,
        }
        print(f'drag: {result}', flush=True)
        return result

    def methods(self, again: str):
        """DPC, parallax, a scan position, ptychography, compare; run
        ``again``, the layers exist and napari has made its first layer
        of each kind."""
        from gui import (
            canvas_point,
            choose,
            click,
            click_at,
            select_items,
            type_into,
        )

        from napari_phase.compute.dpc import dpc
        from napari_phase.compute.parallax import parallax
        from napari_phase.compute.ptycho import ptychography

        viewer, dock, cube = self.viewer, self.dock, self.cube
        dpc_widget = dock.open_step('DPC')
        choose(dpc_widget.mask, 'mean pattern > threshold')
        threshold = dpc_widget.threshold.value

        def dpc_headless():
            mean = cube.mean_and_max_pattern()[0]
            return dpc(cube, mask=mean > threshold * mean.max(),
                       **dpc_widget.parameters())

        before = self.headless(dpc_headless)
        row = self.step('DPC' + again,
                        lambda: click(dpc_widget.runner.run_button),
                        self.layers_shown('DPC phase', 'DPC CoM field'))
        row['headless_s'] = self.median(before, dpc_headless)

        parallax_widget = dock.open_step('Parallax')
        params = parallax_widget.parameters()
        before = self.headless(lambda: parallax(cube, **params))
        row = self.step('parallax' + again,
                        lambda: click(parallax_widget.runner.run_button),
                        self.layers_shown('parallax phase', 'parallax BF'))
        row['headless_s'] = self.median(before,
                                        lambda: parallax(cube, **params))

        for layer in viewer.layers:
            layer.visible = layer is viewer.layers[0]
        viewer.reset_view()
        self.wait(0.3)
        main_canvas = viewer.window._qt_viewer.canvas
        where = np.multiply(cube.scan_shape, (0.6, 0.4) if again
                            else (0.4, 0.6)).round()
        world = where * cube.calibration.scan_step
        def marked():
            layers = viewer.layers
            return 'picked position' in layers and np.allclose(
                layers['picked position'].data, [world])

        self.step('pick a scan position (click on the main canvas)' + again,
                  lambda: click_at(main_canvas, canvas_point(
                      main_canvas, viewer.scene.camera, world)), marked)

        ptycho = dock.open_step('Ptychography')
        type_into(ptycho.num_iter, str(self.args.ptycho_iterations))
        probe = np.asarray(viewer.layers[1].metadata['napari_phase']
                           ['probe'])
        choose(ptycho.probe_layer, viewer.layers[1].name)
        params = ptycho.parameters()
        before = self.headless(lambda: ptychography(cube, probe, **params))
        row = self.step(
            f'ptychography ({self.args.ptycho_iterations} iterations)' + again,
            lambda: click(ptycho.runner.run_button),
            lambda: ptycho.runner.worker is None
            and self.layers_shown('ptychography phase',
                                  'ptychography amplitude')())
        row['headless_s'] = self.median(
            before, lambda: ptychography(cube, probe, **params))

        compare = dock.open_step('Compare')
        select_items(compare.layers, ['DPC phase', 'parallax phase',
                                      'ptychography phase'])
        choose(compare.mode, 'side by side')
        compare.profile = None
        self.step('compare: side by side' + again,
                  lambda: click(compare.show_button),
                  lambda: viewer.canvas.grid.enabled)
        self.step('compare: profile line' + again,
                  lambda: click(compare.line_button),
                  lambda: compare.profile is not None)
        self.step('compare: correlation' + again, lambda: click(
            compare.numbers_button), lambda: bool(compare.numbers.value))

    def reference(self):
        """napari's own cost: adding a plain 48×48 image layer."""
        from napari.layers import Image

        layer = Image(np.zeros((48, 48), np.float32), name='reference',
                      units=('angstrom', 'angstrom'))
        self.step('reference: napari adds a plain 48×48 image layer',
                  lambda: self.viewer.add_layer(layer),
                  lambda: 'reference' in self.viewer.layers)

    def headless(self, compute) -> float:
        start = time.perf_counter()
        compute()
        return time.perf_counter() - start

    def median(self, before: float, compute) -> float:
        return statistics.median([before, self.headless(compute)])


def markdown(report: dict) -> str:
    p = report['dataset']
    drag = report['drag']
    lines = [
        (f"Dataset: {'×'.join(map(str, p['scan_shape']))} scan × "
        f"{'×'.join(map(str, p['detector_shape']))} detector; window "
        f"{report['screen'][0]}×{report['screen'][1]}; "
        f"{report['machine']} cores. Idle event-loop floor: "
        f"{report['floor_ms']:.0f} ms."),
        '',
        '| step | longest UI stall (ms) | in the window (s) | headless (s) |',
        '|---|---|---|---|',
    ]
    for row in report['steps']:
        headless = (f"{row['headless_s']:.2f}" if 'headless_s' in row
                    else '—')
        lines.append(f"| {row['step']} | {row['stall_ms']:.0f} | "
                     f"{row['window_s']:.2f} | {headless} |")
    lines += [
        '',
        (f"Live virtual image while a detector is dragged ({drag['moves']} "
        f"mouse moves, one every {MOVE_MS} ms; {drag['updates']} images "
        f"shown): latency median {drag['latency_median_ms']:.0f} ms, "
        f"longest {drag['latency_max_ms']:.0f} ms; updates waiting at "
        f"most {drag['most_waiting']}; longest UI stall "
        f"{drag['stall_ms']:.0f} ms."),
    ]
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
