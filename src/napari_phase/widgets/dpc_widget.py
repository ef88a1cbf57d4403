"""DPC widget: CoM → rotation and transpose → half-turn → phase.

The mask is the whole detector, the mean pattern above a fraction of its
maximum (the seed uses 0.8), the BF disk of the calibration, or a virtual
detector drawn in the diffraction view (recorded with its shapes, so a
recipe replays it). Rotation, transpose and the 180° choice are fitted or
forced. It runs in a thread with progress.

Layers out, in the main viewer (Å, scan frame, every parameter in
``layer.metadata['napari_phase']['parameters']``): the phase (radians), on
top and selected; the CoM x and y (mrad, scan frame) and the CoM field as
arrows, hidden. The rotation-fit curve is drawn in the dock. The fitted
rotation, transpose and half-turn go into THE datacube's calibration when
"write rotation to calibration" is ticked (by default only when it has no
rotation yet, so a rotation from parallax is not overwritten).
"""

from __future__ import annotations

import math

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ..compute.backend import to_numpy
from ..compute.dpc import DPCResult, dpc
from ..compute.geometry import wrap_half_turn
from ..compute.halfturn import adopted
from ..pipeline import drawn_mask
from ._common import (
    StepWidget,
    build_layers,
    datacube_of,
    phase_scale,
    publish,
    real_space_layer,
    wrapped_label,
)

PHASE, COM_X, COM_Y, FIELD = (
    'DPC phase', 'DPC CoM x', 'DPC CoM y', 'DPC CoM field'
)
NO_MASK, THRESHOLD, BF = (
    'whole detector', 'mean pattern > threshold', 'BF disk (calibration)'
)
DETECTOR = 'detector: '
#: Arrows per scan axis, at most, in the CoM field layer.
MAX_ARROWS = 24
TRANSPOSE = {'fit': None, 'no': False, 'yes': True}
HALF_TURN = {'auto (phase positivity)': None, 'as fitted': False,
             'flip 180°': True}
#: Smallest height (px) of the rotation plot in the dock.
PLOT_HEIGHT = 180


def drawn_detectors(viewer) -> dict:
    """Virtual detectors drawn in the diffraction view: name → shapes
    (type, role, vertices in detector px); whether they make a mask is
    checked when DPC runs."""
    from .virtual_detectors import detector_shapes

    return detector_shapes(viewer)


class RotationPlot(FigureCanvasQTAgg):
    """The rotation fit: non-gradient fraction of the rotated CoM versus
    the rotation (one half-turn), both transposes."""

    def __init__(self):
        figure = Figure(figsize=(3.2, 2.0), tight_layout=True)
        super().__init__(figure)
        self.axes = figure.add_subplot()
        self.axes.set_xlabel('rotation mod 180° (°)')
        self.axes.set_ylabel('curl fraction')

    def show_fit(self, result: DPCResult):
        curve = result.rotation_curve
        self.axes.clear()
        self.axes.plot(curve.angles_deg, curve.curl, label='transpose no')
        self.axes.plot(curve.angles_deg, curve.curl_transposed,
                       label='transpose yes')
        self.axes.axvline(wrap_half_turn(result.rotation_deg), color='k',
                          lw=0.8)
        self.axes.set_xlabel('rotation mod 180° (°)')
        self.axes.set_ylabel('curl fraction')
        self.axes.legend(fontsize='x-small')
        self.draw_idle()


class DPCWidget(StepWidget):
    """Differential phase contrast step."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.viewer = viewer
        self.mask = ComboBox(label='mask', choices=self._masks)
        self.threshold = FloatSpinBox(label='threshold (× max)', value=0.8,
                                      min=0.0, max=1.0, step=0.05)
        self.fit_rotation = CheckBox(text='fit rotation', value=True)
        self.rotation = FloatSpinBox(label='forced rotation (°)', min=-360,
                                     max=360, step=0.5, enabled=False)
        self.transpose = ComboBox(label='transpose', choices=list(TRANSPOSE))
        self.half_turn = ComboBox(label='180° choice', choices=list(HALF_TURN))
        self.descan = ComboBox(label='descan',
                               choices=['plane', 'constant', 'none'])
        self.write_calibration = CheckBox(
            text='write rotation to calibration', value=True)
        self.report = wrapped_label()
        super().__init__(
            viewer, 'Run DPC', 'DPC',
            fields=[self.mask, self.threshold, self.fit_rotation,
                    self.rotation, self.transpose, self.half_turn,
                    self.descan, self.write_calibration],
            below=[self.report],
        )
        self.plot = RotationPlot()
        self.add_native(self.plot, PLOT_HEIGHT)
        self.result: DPCResult | None = None
        self.fit_rotation.changed.connect(
            lambda fit: setattr(self.rotation, 'enabled', not fit))
        self.load()

    def _masks(self, _=None):
        drawn = [DETECTOR + name for name in drawn_detectors(self.viewer)]
        return [BF, NO_MASK, THRESHOLD, *drawn]

    def load(self, *_):
        """A new datacube: write the rotation by default only if its
        calibration has none yet."""
        layer = self.cube_layer.value
        if layer is not None:
            cal = datacube_of(layer).calibration
            self.write_calibration.value = cal.rotation_deg is None

    # -- running -------------------------------------------------------
    def parameters(self) -> dict:
        """The keyword arguments of :func:`dpc` chosen in the widget."""
        return {
            'rotation_deg': None if self.fit_rotation.value
            else self.rotation.value,
            'transpose': TRANSPOSE[self.transpose.value],
            'flip_half_turn': HALF_TURN[self.half_turn.value],
            'descan': self.descan.value,
        }

    def _mask_parameters(self) -> dict:
        """How the mask is recorded (a drawn detector with its shapes)."""
        choice = self.mask.value
        if choice == THRESHOLD:
            return {'mask': 'threshold',
                    'mask_threshold': self.threshold.value}
        if choice.startswith(DETECTOR):
            name = choice[len(DETECTOR):]
            shapes = drawn_detectors(self.viewer).get(name)
            if shapes is None:
                raise ValueError(f'the virtual detector {name!r} is gone')
            return {'mask': 'detector', 'mask_detector': name,
                    'mask_shapes': shapes}
        return {'mask': {NO_MASK: 'none', BF: 'bf'}[choice]}

    @staticmethod
    def _detector_mask(cube, mask: dict, progress):
        """The mask array (None: the whole detector)."""
        if mask['mask'] == 'threshold':
            mean = to_numpy(cube.mean_and_max_pattern(progress)[0])
            return mean > mask['mask_threshold'] * mean.max()
        if mask['mask'] == 'bf':
            return 'bf'  # the whole detector while the probe is unknown
        if mask['mask'] == 'detector':
            return drawn_mask(mask['mask_shapes'], cube.detector_shape)
        return None

    def run(self):
        """Start DPC on the chosen datacube in a thread worker."""
        layer = self.cube_layer.value
        cube = datacube_of(layer)
        kwargs = self.parameters()
        mask = self._mask_parameters()
        recorded = {'method': 'dpc', 'layer': layer.name, **mask}
        runner, write = self.runner, self.write_calibration.value

        def job():
            yielded = runner.worker.yielded

            def progress(fraction_done, start=0.0, span=1.0):
                yielded.emit(start + span * fraction_done)

            mask_array = self._detector_mask(
                cube, mask, lambda f: progress(f, 0.0, 0.3))
            result = dpc(cube, mask=mask_array,
                         progress=lambda f: progress(f, 0.3, 0.7), **kwargs)
            result, changes = adopted(cube.calibration, result, write)
            yield 1.0
            return (result, changes if write else {},
                    build_layers(result_layers(result, recorded)))

        self.runner.start(job, lambda done: self.show_result(*done, cube))

    # -- results -------------------------------------------------------
    def show_result(self, result: DPCResult, changes: dict, built: list,
                    cube):
        """Show the layers (phase on top), the plot, the report and (if
        ticked) write the rotation and the half-turn decision into the
        calibration of ``cube``."""
        self.result = result
        publish(self.viewer, built, top=PHASE)
        self.plot.show_fit(result)
        cube.calibration.update(**changes)
        self.report.value = summary(result)


def result_layers(result: DPCResult, recorded: dict) -> list[tuple]:
    """Layer-data tuples of a DPC result: the phase, then the CoM x, y
    and the CoM field, hidden; ``recorded`` joins the parameters."""
    params = result.parameters | recorded | {
        'fitted_rotation_deg': result.rotation_deg,
        'fitted_transpose': result.transpose,
        'half_turn': result.half_turn,
        'contrast': result.contrast,
        'empty_patterns': result.empty_patterns,
    }
    step = result.pixel_size
    layers = [real_space_layer(result.phase, PHASE, step,
                               params | {'unit': 'rad'} | phase_scale(result),
                               colormap='gray')]
    for name, component in ((COM_X, result.com[0]), (COM_Y, result.com[1])):
        layers.append(real_space_layer(
            component, name, step, params | {'unit': 'mrad'},
            colormap='PiYG', visible=False))
    arrows, arrow_scale = com_arrows(result.com, step)
    layers.append(real_space_layer(
        arrows, FIELD, 1.0, params | {'arrow_A_per_mrad': arrow_scale},
        layer_type='vectors', edge_width=0.1 * step, edge_color='cyan',
        length=1.0, visible=False))
    return layers


def com_arrows(com: np.ndarray, step: float) -> tuple[np.ndarray, float]:
    """Vectors-layer data (N, 2, 2) in Å for the CoM field ``com`` (2, Rx,
    Ry) mrad: at most :data:`MAX_ARROWS` per axis, the longest arrow one
    arrow spacing long. Returns the data and the Å-per-mrad scale."""
    stride = max(1, math.ceil(max(com.shape[1:]) / MAX_ARROWS))
    sub = com[:, ::stride, ::stride]
    ix, iy = np.meshgrid(*(np.arange(n) * stride for n in sub.shape[1:]),
                         indexing='ij')
    positions = np.stack([ix.ravel(), iy.ravel()], axis=-1) * step
    longest = float(np.hypot(sub[0], sub[1]).max())
    scale = stride * step / longest if longest > 0 else 0.0
    shifts = sub.reshape(2, -1).T * scale
    return np.stack([positions, shifts], axis=1), scale


def summary(result: DPCResult) -> str:
    text = (f'rotation {result.rotation_deg:.2f}°, transpose '
            f'{"yes" if result.transpose else "no"} (fitted on the '
            f'{result.rotation_region}, transpose clarity '
            f'{result.transpose_clarity:.2f}, CoM anisotropy '
            f'×{result.com_anisotropy:.2f}); {result.half_turn}')
    if result.contrast:
        text += f'; {result.contrast}'
    if result.empty_patterns:
        text += f'; {result.empty_patterns} pattern(s) without counts'
    return text + '.'
