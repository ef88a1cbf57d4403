"""Parallax widget: tilt-corrected bright field, upsampling, aberrations.

Runs :func:`napari_phase.parallax_steps` in a thread (progress bar per
alignment level, Cancel). Layers out: the aligned, upsampled and
CTF-corrected images in the main viewer (Å, scan frame, pixel (0, 0) at
scan position (0, 0)); the measured shifts as arrows at their BF pixels in
the diffraction view (mrad). The aberration table shows every fitted
coefficient with its standard error; the fitted rotation, transpose, C1,
significant aberrations and the half-turn choice are written into THE
datacube's calibration, where the ptychography widget picks them up. The
phase comes on top and selected; the aligned and upsampled images hidden.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, SpinBox, Table

from ..compute.backend import gpu_available, to_numpy
from ..compute.halfturn import adopted
from ..compute.parallax import ParallaxResult, parallax_steps
from ._common import (
    StepWidget,
    build_layers,
    datacube_of,
    phase_scale,
    publish,
    real_space_layer,
    wrapped_label,
)
from .diffraction_view import diffraction_view

ALIGNED, UPSAMPLED, PHASE = (
    'parallax BF',
    'parallax upsampled',
    'parallax phase',
)
SHIFTS = 'parallax shifts'
#: About this many arrows are drawn (a regular subset of the BF pixels).
MAX_ARROWS = 400
FIT, NO, YES = 'fit', 'no', 'yes'
POSITIVITY, OVERFOCUS, UNDERFOCUS = (
    'phase positivity',
    'C1 > 0 (overfocus)',
    'C1 < 0 (underfocus)',
)
#: Smallest height (px) of the aberration table in the dock.
TABLE_HEIGHT = 160


class ParallaxWidget(StepWidget):
    """Parallax (tilt-corrected bright field) step."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.threshold = FloatSpinBox(
            label='BF threshold', value=0.6, min=0.01, max=0.99, step=0.05,
            tooltip='BF pixels: mean pattern ≥ threshold × its maximum',
        )
        self.edge_blend = FloatSpinBox(
            label='edge blend (px)', value=2.0, min=0, max=100, step=0.5
        )
        self.max_bin = SpinBox(
            label='largest bin (px)', value=64, min=1, max=1024
        )
        self.min_bin = SpinBox(
            label='smallest bin (px)', value=8, min=1, max=1024
        )
        self.iterations = SpinBox(
            label='iterations at smallest bin', value=6, min=1, max=100
        )
        self.upsample = SpinBox(
            label='upsample (0 = auto)', value=0, min=0, max=32
        )
        self.force_rotation = CheckBox(text='force rotation')
        self.rotation = FloatSpinBox(
            label='rotation (°)', min=-360, max=360, step=0.5
        )
        self.transpose = ComboBox(label='transpose', choices=[FIT, NO, YES])
        self.half_turn = ComboBox(
            label='half-turn by', choices=[POSITIVITY, OVERFOCUS, UNDERFOCUS]
        )
        gpu = gpu_available()
        self.device = ComboBox(
            label='device',
            choices=['CPU', 'GPU'] if gpu else ['CPU'],
            enabled=gpu,
            tooltip='GPU needs cupy and a CUDA device',
        )
        self.table = Table(value=_table_value({}, {}, {}))
        self.table.native.setMinimumHeight(TABLE_HEIGHT)
        self.summary = wrapped_label()
        super().__init__(
            viewer, 'Run parallax', 'Parallax',
            fields=[self.threshold, self.edge_blend, self.max_bin,
                    self.min_bin, self.iterations, self.upsample,
                    self.force_rotation, self.rotation, self.transpose,
                    self.half_turn, self.device],
            below=[self.summary, self.table],
        )
        self.result: ParallaxResult | None = None

    def parameters(self) -> dict:
        """Keyword arguments of :func:`napari_phase.parallax`."""
        return {
            'threshold_intensity': self.threshold.value,
            'edge_blend': self.edge_blend.value,
            'max_alignment_bin': self.max_bin.value,
            'min_alignment_bin': self.min_bin.value,
            'num_iter_at_min_bin': self.iterations.value,
            'upsample_factor': self.upsample.value or None,
            'rotation_deg': self.rotation.value
            if self.force_rotation.value
            else None,
            'transpose': {FIT: None, NO: False, YES: True}[
                self.transpose.value],
            'defocus_sign': {POSITIVITY: None, OVERFOCUS: 1, UNDERFOCUS: -1}[
                self.half_turn.value
            ],
            'device': self.device.value.lower(),
        }

    def run(self):
        """Start parallax on the chosen datacube in a thread worker."""
        cube = datacube_of(self.cube_layer.value)
        params = self.parameters()

        def job():
            result = yield from parallax_steps(cube, **params)
            result, changes = adopted(cube.calibration, result, True)
            return result, changes, \
                build_layers(result_layers(result, cube)), \
                build_layers([shift_arrows(result, cube)])

        return self.runner.start(job, lambda done: self.show(*done, cube))

    def show(self, result: ParallaxResult, changes, images, arrows, cube):
        """Layers, table and calibration from a finished run."""
        self.result = result
        publish(self.viewer, images, top=PHASE)
        publish(diffraction_view(self.viewer).model, arrows)
        self.table.value = _table_value(
            result.aberrations, result.uncertainties, result.significant
        )
        self.summary.value = _summary(result)
        cube.calibration.update(**changes)


def _parameters(result: ParallaxResult, cube) -> dict:
    """What a parallax layer records: inputs, fitted values, source."""
    fitted = {
        'fitted_rotation_deg': result.rotation_deg,
        'fitted_transpose': result.transpose,
        'aberrations': result.aberrations,
        'half_turn': result.half_turn,
    }
    return (result.parameters | fitted
            | {'method': 'parallax', 'source': cube.source})


def result_layers(result: ParallaxResult, cube) -> list[tuple]:
    """The phase, then the aligned and upsampled images (hidden)."""
    parameters = _parameters(result, cube)
    return [
        real_space_layer(
            to_numpy(getattr(result, key)),  # GPU results come to the host
            name, result.pixel_size[key],
            parameters | (phase_scale(result) if key == 'phase' else {}),
            origin=result.origin[key], colormap='gray', visible=visible,
        )
        for key, name, visible in (('phase', PHASE, True),
                                   ('aligned', ALIGNED, False),
                                   ('upsampled', UPSAMPLED, False))
    ]


def shift_arrows(result: ParallaxResult, cube) -> tuple:
    """Arrows at the BF pixels (mrad, as the patterns of the diffraction
    view), length scaled so the longest is ~3 pixels."""
    q_pixel_mrad = cube.calibration.q_pixel_mrad
    stride = max(
        1, round(np.sqrt(len(result.bf_pixels) / MAX_ARROWS))
    )
    keep = np.all(result.bf_pixels % stride == 0, axis=1)
    longest = np.abs(result.shifts).max() or 1.0
    length = 3 * stride * q_pixel_mrad / longest  # mrad per Å
    data = np.stack(
        [
            result.bf_pixels[keep] * q_pixel_mrad,
            result.shifts[keep] * length,
        ],
        axis=1,
    )
    metadata = {'napari_phase': {'parameters': _parameters(result, cube),
                                 'mrad_per_angstrom': length}}
    return data, {
        'name': SHIFTS, 'edge_color': 'yellow',
        'edge_width': 0.2 * q_pixel_mrad, 'units': ('mrad', 'mrad'),
        'axis_labels': ('kx', 'ky'), 'metadata': metadata,
    }, 'vectors'


def _table_value(values: dict, errors: dict, significant: dict) -> dict:
    rows = [k for k in values]
    data = [
        [
            f'{values[k]:.1f}',
            f'± {errors[k]:.1f}',
            ('yes' if significant.get(k) else 'no')
            if k in significant
            else '',
        ]
        for k in rows
    ]
    return {
        'data': data,
        'index': rows,
        'columns': ['value (Å or °)', 'std. error', 'significant'],
    }


def _summary(result: ParallaxResult) -> str:
    if result.rotation_deg is None:
        head = 'No parallax measured.'
    else:
        head = (
            f'rotation {result.rotation_deg:.2f}°, '
            f'transpose {result.transpose}, '
            f'C1 {result.C1:.1f} Å; half-turn: {result.half_turn}'
        )
    return '\n'.join(
        [head, f'upsampling ×{result.upsample_factor:g}', *result.warnings]
    )

