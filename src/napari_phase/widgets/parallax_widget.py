"""Parallax widget: tilt-corrected bright field, upsampling, aberrations.

Runs :func:`napari_phase.parallax_steps` in a thread (progress bar per
alignment level, Cancel). Layers out: the aligned, upsampled and
CTF-corrected images in the main viewer (Å, scan frame, pixel (0, 0) at
scan position (0, 0)); the measured shifts as arrows at their BF pixels in
the diffraction view (mrad). The aberration table shows every fitted
coefficient with its standard error; the fitted rotation, transpose, C1,
significant aberrations and the half-turn choice are written into THE
datacube's calibration, where the ptychography widget picks them up.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    SpinBox,
    Table,
)

from ..compute.backend import gpu_available, to_numpy
from ..compute.parallax import ParallaxResult, parallax_steps
from ._common import (
    on_click,
    add_or_update,
    datacube_choices,
    datacube_of,
    follow_layers,
    guarded,
    real_space_layer,
    Runner,
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


class ParallaxWidget(Container):
    """Dockable parallax (tilt-corrected bright field)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.viewer = viewer
        self.cube_layer = ComboBox(
            label='datacube', choices=datacube_choices(viewer)
        )
        self.threshold = FloatSpinBox(
            label='BF threshold',
            value=0.6,
            min=0.01,
            max=0.99,
            step=0.05,
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
        self.runner = Runner('Run parallax', 'Parallax')
        self.table = Table(value=_table_value({}, {}, {}))
        self.summary = Label(value='')
        self.summary.native.setWordWrap(True)
        super().__init__(
            widgets=[
                self.cube_layer,
                self.threshold,
                self.edge_blend,
                self.max_bin,
                self.min_bin,
                self.iterations,
                self.upsample,
                self.force_rotation,
                self.rotation,
                self.transpose,
                self.half_turn,
                self.device,
                self.runner,
                self.table,
                self.summary,
            ]
        )
        self.result: ParallaxResult | None = None
        on_click(self.runner.run_button, self.run, self.runner.status)
        follow_layers(self, viewer)


    def parameters(self) -> dict:
        """Keyword arguments of :func:`napari_phase.parallax`."""
        return dict(
            threshold_intensity=self.threshold.value,
            edge_blend=self.edge_blend.value,
            max_alignment_bin=self.max_bin.value,
            min_alignment_bin=self.min_bin.value,
            num_iter_at_min_bin=self.iterations.value,
            upsample_factor=self.upsample.value or None,
            rotation_deg=self.rotation.value
            if self.force_rotation.value
            else None,
            transpose={FIT: None, NO: False, YES: True}[self.transpose.value],
            defocus_sign={POSITIVITY: None, OVERFOCUS: 1, UNDERFOCUS: -1}[
                self.half_turn.value
            ],
            device=self.device.value.lower(),
        )

    def run(self, *_):
        """Start parallax on the chosen datacube in a thread worker."""
        layer = self.cube_layer.value
        cube = datacube_of(layer)
        params = self.parameters()

        def job():
            return (yield from parallax_steps(cube, **params))

        return self.runner.start(job, lambda result: self.show(result, cube))

    def show(self, result: ParallaxResult, cube):
        """Layers, table and calibration from a finished run."""
        self.result = result
        fitted = dict(
            fitted_rotation_deg=result.rotation_deg,
            fitted_transpose=result.transpose,
            aberrations=result.aberrations,
            half_turn=result.half_turn,
        )
        parameters = (
            result.parameters
            | fitted
            | {'method': 'parallax', 'source': cube.source}
        )
        for image, name in (
            (result.aligned, ALIGNED),
            (result.upsampled, UPSAMPLED),
            (result.phase, PHASE),
        ):
            key = {ALIGNED: 'aligned', UPSAMPLED: 'upsampled', PHASE: 'phase'}[
                name
            ]
            add_or_update(
                self.viewer,
                real_space_layer(
                    to_numpy(image),  # GPU results come back to the host
                    name,
                    result.pixel_size[key],
                    parameters,
                    origin=result.origin[key],
                    colormap='gray',
                ),
            )
        self._show_shifts(result, cube.calibration.q_pixel_mrad, parameters)
        self.table.value = _table_value(
            result.aberrations, result.uncertainties, result.significant
        )
        self.summary.value = _summary(result)
        cube.calibration.update(**result.calibration_update())

    def _show_shifts(self, result, q_pixel_mrad, parameters):
        """Arrows at the BF pixels (mrad, as the patterns of the
        diffraction view), length scaled so the longest is ~3 pixels."""
        stride = max(
            1, int(round(np.sqrt(len(result.bf_pixels) / MAX_ARROWS)))
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
        model = diffraction_view(self.viewer).model
        layer = add_or_update(
            model,
            (
                data,
                dict(
                    name=SHIFTS,
                    edge_color='yellow',
                    edge_width=0.2 * q_pixel_mrad,
                    units=('mrad', 'mrad'),
                    axis_labels=('kx', 'ky'),
                    metadata={
                        'napari_phase': {
                            'parameters': parameters,
                            'mrad_per_angstrom': length,
                        }
                    },
                ),
                'vectors',
            ),
        )
        return layer


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

