"""Probe calibration widget: fit the bright-field disk, set the calibration.

"Fit" finds the probe radius and centre (from a vacuum-probe layer or the
datacube's mean pattern) and draws the disk on the diffraction view;
"Apply" writes probe centre and radius, the Q pixel size (semiangle /
radius), scan step, energy and semiangle into THE datacube's calibration
object (the one every later widget reads) and rescales the datacube layer.
"Half-turn" shows how the 180° ambiguity of rotation and C1 was decided
(docs/conventions.md) and lets the user keep that pair or take the other
one; the methods' phase layers follow.
"""

from __future__ import annotations

import napari
from magicgui.widgets import ComboBox, FloatSpinBox, PushButton

from ..compute.calibration import DEFAULTS, FIELD_HELP
from ..compute.halfturn import choose
from ..compute.probe import ProbeFit, fit_probe, q_pixel_from_semiangle
from ._common import (
    StepWidget,
    checked_probe,
    datacube_of,
    on_click,
    probe_choices,
    wrapped_label,
)
from .diffraction_view import diffraction_view, mean_pattern
from .virtual_detectors import circle_box

#: Name of the Shapes layer (diffraction view) that shows the fitted disk.
PROBE_FIT = 'probe fit'


class CalibrationWidget(StepWidget):
    """Probe calibration step: pick layers, Fit, check, Apply."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.probe_layer = ComboBox(
            label='vacuum probe',
            choices=probe_choices(viewer, '(mean pattern of the datacube)'),
        )
        self.thresh_lower = FloatSpinBox(label='threshold lower', value=0.01,
                                         min=0, max=1, step=0.01)
        self.thresh_upper = FloatSpinBox(label='threshold upper', value=0.99,
                                         min=0, max=1, step=0.01)
        self.scan_step = FloatSpinBox(label='scan step (Å)', min=1e-4,
                                      max=1e5, step=0.01)
        self.semiangle = FloatSpinBox(label='semiangle (mrad)', min=1e-3,
                                      max=1e3, step=0.1)
        self.energy_kv = FloatSpinBox(label='energy (kV)', min=1e-3,
                                      max=1e4, step=10)
        self.apply_button = PushButton(text='Apply')
        self.result = wrapped_label()
        self.half_turn = wrapped_label()
        self.keep_button = PushButton(text='Keep this half-turn')
        self.flip_button = PushButton(text='Take the other half-turn')
        super().__init__(
            viewer, 'Fit', 'Probe fit',
            fields=[self.probe_layer, self.thresh_lower, self.thresh_upper,
                    self.scan_step, self.semiangle, self.energy_kv],
            below=[self.result, self.apply_button, self.half_turn,
                   self.keep_button, self.flip_button],
        )
        self.fit_result: tuple[object, ProbeFit] | None = None
        on_click(self.apply_button, self.apply, self.status)
        on_click(self.keep_button, lambda: self.choose(True), self.status)
        on_click(self.flip_button, lambda: self.choose(False), self.status)
        self._calibration = None
        self.load()

    def load(self, *_):
        """Fill the fields from the chosen cube's calibration; name the
        fields that are missing and the defaults offered instead."""
        self.fit_result = None
        self.result.value = ''
        layer = self.cube_layer.value
        if layer is None:
            self.status.value = 'Open a 4D-STEM datacube first.'
            return
        cal = datacube_of(layer).calibration
        self._follow(cal)
        fields = ('scan_step', 'semiangle', 'energy')
        step, semiangle, energy = (
            DEFAULTS[n] if getattr(cal, n) is None else getattr(cal, n)
            for n in fields
        )
        self.scan_step.value = step
        self.semiangle.value = semiangle
        self.energy_kv.value = energy / 1e3
        missing = cal.missing(*fields)
        absent = ', '.join(FIELD_HELP[n] for n in missing)
        self.status.value = (
            f'{layer.name!r} has no {absent}: '
            f'defaults shown ({step:g} Å, {semiangle:g} mrad, '
            f'{energy / 1e3:g} kV); edit them, then Fit and Apply.'
            if missing else ''
        )

    def run(self):
        """Fit the probe disk in a thread; draw it when done."""
        layer = self.cube_layer.value
        cube = datacube_of(layer)
        probe_layer = self.probe_layer.value
        lower, upper = self.thresh_lower.value, self.thresh_upper.value

        def job():
            probe = checked_probe(probe_layer, layer, cube)
            pattern = mean_pattern(layer) if probe is None else probe
            yield 0.5
            return pattern, fit_probe(pattern, lower, upper)

        self.runner.start(job, lambda result: self._show_fit(
            layer, probe_layer, *result))

    def _show_fit(self, layer, probe_layer, pattern, fit: ProbeFit):
        self.fit_result = (layer, fit)
        q = q_pixel_from_semiangle(self.semiangle.value, fit.radius)
        view = diffraction_view(self.viewer)
        if probe_layer is None:
            view.show_pattern('mean pattern', pattern, (q, q))
        else:  # an auxiliary pattern: hidden until ticked in the view
            view.show_pattern('vacuum probe', pattern, (q, q),
                              visible=False)
        draw_disk(view.model, fit.center, fit.radius, (q, q))
        cx, cy = fit.center
        self.result.value = (
            f'radius {fit.radius:.2f} px, centre ({cx:.2f}, {cy:.2f}) px; '
            f'Q pixel {q:.4g} mrad. Press Apply to use it.'
        )

    def apply(self):
        """Write the form (and the fit, if any) into the cube's
        calibration; rescale the datacube layer (mrad, Å)."""
        layer = self.cube_layer.value
        cube = datacube_of(layer)
        values = {
            'scan_step': self.scan_step.value,
            'semiangle': self.semiangle.value,
            'energy': self.energy_kv.value * 1e3,
        }
        fitted = self.fit_result is not None and self.fit_result[0] is layer
        if fitted:
            fit = self.fit_result[1]
            values |= {
                'probe_center': fit.center,
                'probe_radius': fit.radius,
                'q_pixel_mrad': q_pixel_from_semiangle(values['semiangle'],
                                                    fit.radius),
            }
        cube.calibration.update(**values)
        q = cube.calibration.q_pixel_mrad or DEFAULTS['q_pixel_mrad']
        step = values['scan_step']
        layer.scale = (q, q, step, step)
        self.status.value = (
            f'Calibration of {layer.name!r} set: step {step:g} Å, Q pixel '
            f'{q:.4g} mrad.' + ('' if fitted else
                                ' No probe fit yet: probe centre/radius and '
                                'Q pixel left as they were (press Fit).')
        )


    # -- the half-turn -------------------------------------------------
    def _follow(self, cal) -> None:
        """Show ``cal``'s half-turn decision now and when it changes."""
        if self._calibration is not None:
            self._calibration.events.all.disconnect(self._show_half_turn)
        cal.events.all.connect(self._show_half_turn)
        self._calibration = cal
        self._show_half_turn()

    def _show_half_turn(self, *_):
        cal = self._calibration
        decided = cal.rotation_deg is not None
        pair = (f'rotation {cal.rotation_deg:.1f}°'
                + ('' if cal.C1 is None else f', C1 {cal.C1:.0f} Å')
                if decided else '')
        self.half_turn.value = (
            f'Half-turn: {pair}; {cal.half_turn or "not decided"}.'
            if decided else 'Half-turn: no rotation yet (run DPC or '
            'parallax).')
        for button in (self.keep_button, self.flip_button):
            button.enabled = decided

    def choose(self, keep: bool):
        """The user's half-turn: keep the calibration's pair or take the
        other (θ + 180°, −C1); the methods' phase layers follow."""
        choose(self._calibration, keep)
        if not keep:
            for layer in self.viewer.layers:
                if layer.name in METHOD_PHASES:
                    layer.data = -layer.data
        self.status.value = ('Half-turn kept.' if keep else
                             'Other half-turn taken: the phase layers are '
                             'negated; rerun a method to refine it.')


#: The methods' phase layers, which follow the half-turn.
METHOD_PHASES = ('DPC phase', 'parallax phase', 'direct phase',
                 'ptychography phase', 'tuned phase')


def draw_disk(model, center, radius: float, scale) -> None:
    """Draw (or move) the fitted probe disk: an ellipse in the Shapes
    layer :data:`PROBE_FIT` of the diffraction-view ``model``."""
    box = circle_box(center, radius)
    if PROBE_FIT in model.layers:
        layer = model.layers[PROBE_FIT]
        layer.scale = scale
        layer.data = [box]
        return
    model.add_shapes(
        [box], shape_type='ellipse', name=PROBE_FIT, scale=scale,
        units=('mrad', 'mrad'), edge_color='yellow', face_color='transparent',
        edge_width=0.5,
    )
