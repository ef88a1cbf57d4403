"""Compare results on one physical grid: side by side or overlaid, matched
contrast, one line profile for all, correlation and FRC per pair.

All numbers come from :mod:`napari_phase.compute.compare`, which works in
Å from each layer's ``scale`` and ``translate``.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    PushButton,
    Select,
    TextEdit,
)
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ..compute.compare import (
    PlacedImage,
    check_same_dataset,
    common_limits,
    correlation,
    fourier_ring_correlation,
    line_profile,
)
from ._common import LayerError, guarded, on_click, wrapped_label
from .recipe_export import dataset_of, export_recipe

PROFILE_LAYER = 'Profile line'
MODES = ('side by side', 'overlay')
#: Where "Export recipe" writes unless told otherwise (absolute).
DEFAULT_RECIPE = Path.home() / 'napari-phase-recipe.yaml'
#: Smallest heights (px) of the list of results and the profile plot.
LIST_HEIGHT, PLOT_HEIGHT = 110, 200


def is_result_layer(layer) -> bool:
    """A 2D image layer (a real-space result or any plain image)."""
    return (isinstance(layer, napari.layers.Image) and layer.ndim == 2
            and not layer.rgb)


def placed(layer) -> PlacedImage:
    """The layer's image with its placement in Å (scale, translate)."""
    return PlacedImage(np.asarray(layer.data), tuple(layer.scale),
                       tuple(layer.translate), layer.name)


class CompareWidget(Container):
    """Pick result layers and compare them (dockable)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.viewer = viewer
        self.layers = Select(label='results', choices=self._result_names,
                             allow_multiple=True)
        self.layers.native.setMinimumHeight(LIST_HEIGHT)
        self.mode = ComboBox(label='view', choices=MODES, value=MODES[0])
        self.low = FloatSpinBox(label='low %', value=1.0, min=0, max=50)
        self.high = FloatSpinBox(label='high %', value=99.0, min=50, max=100)
        self.show_button = PushButton(text='Show with matched contrast')
        self.line_button = PushButton(text='Draw profile line')
        self.independent = CheckBox(
            text='independent reconstructions (FRC)', value=False
        )
        self.numbers_button = PushButton(text='Correlation / FRC')
        self.recipe_path = FileEdit(label='recipe', mode='w',
                                    filter='*.yaml *.yml *.json',
                                    value=DEFAULT_RECIPE)
        self.overwrite = CheckBox(text='overwrite', value=False)
        self.export_button = PushButton(text='Export recipe')
        self.status = wrapped_label()
        self.numbers = TextEdit(value='')
        self.numbers.native.setReadOnly(True)
        self.numbers.native.setMaximumHeight(80)
        super().__init__(widgets=[
            self.layers, self.mode, self.low, self.high, self.show_button,
            self.line_button, self.independent, self.numbers_button,
            self.numbers, self.recipe_path, self.overwrite,
            self.export_button, self.status,
        ])
        self.figure = Figure(figsize=(4, 2.5), tight_layout=True)
        self.axes = self.figure.add_subplot()
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(PLOT_HEIGHT)
        self.native.layout().addWidget(self.canvas)
        self.profile = None
        self._line_layer = None

        on_click(self.show_button, self.show, self.status)
        on_click(self.line_button, self.draw_line, self.status)
        on_click(self.numbers_button, self.compute_numbers, self.status)
        on_click(self.export_button, self.export_recipe, self.status)
        self.layers.changed.connect(guarded(self.update_profile, self.status))
        for event in (viewer.layers.events.inserted,
                      viewer.layers.events.removed):
            event.connect(self._refresh)

    # --- layers ---------------------------------------------------------
    def _result_names(self, _widget=None) -> list[str]:
        return [layer.name for layer in self.viewer.layers
                if is_result_layer(layer)]

    def _refresh(self, _event=None):
        self.layers.reset_choices()
        if PROFILE_LAYER in self.viewer.layers:  # (a LayerList, no get())
            line = self.viewer.layers[PROFILE_LAYER]
            if line is not self._line_layer:
                self.watch_line(line)

    def selected(self, minimum: int = 1) -> list:
        """The chosen layers, checked to come from one dataset."""
        layers = [self.viewer.layers[name] for name in self.layers.value
                  if name in self.viewer.layers]
        if len(layers) < minimum:
            raise LayerError(f'Choose at least {minimum} result layer(s).')
        check_same_dataset({layer.name: dataset_of(layer, self.viewer)
                            for layer in layers})
        self.status.value = ''
        return layers

    # --- display --------------------------------------------------------
    def show(self):
        """Show only the chosen layers (every other layer is hidden: the
        datacube, arrows, marks), in a grid or overlaid, with the same
        contrast percentiles over their shared field of view. The profile
        line shows when overlaid (in a grid it would be a cell of its
        own)."""
        layers = self.selected()
        limits = common_limits([placed(layer) for layer in layers],
                               (self.low.value, self.high.value))
        side_by_side = self.mode.value == MODES[0]
        for layer in self.viewer.layers:
            shown = layer in layers or (
                layer.name == PROFILE_LAYER and not side_by_side)
            if layer.visible != shown:  # each change redraws
                layer.visible = shown
        for layer, limit in zip(layers, limits):
            layer.contrast_limits = limit
        self.viewer.canvas.grid.enabled = side_by_side
        for layer in layers[1:]:
            layer.opacity = 1.0 if side_by_side else 0.5
        self.viewer.reset_view()

    # --- line profile ---------------------------------------------------
    def draw_line(self):
        """A Shapes line across the first chosen layer (edit it to move
        the profile); the view switches to overlay, to draw on."""
        image = placed(self.selected()[0])
        self.mode.value = MODES[1]
        self.show()
        low, high = image.extent
        middle = (low[0] + high[0]) / 2
        line = np.array([[middle, low[1]], [middle, high[1]]])
        if PROFILE_LAYER in self.viewer.layers:  # moved back across
            layer = self.viewer.layers[PROFILE_LAYER]
            layer.data = [(line, 'line')]
            return layer
        return self.viewer.add_shapes(
            [line], shape_type='line', name=PROFILE_LAYER, edge_color='yellow',
            edge_width=min(image.scale) / 2, units=('angstrom', 'angstrom'),
        )  # watched by _refresh

    def watch_line(self, layer):
        """Follow ``layer``'s last line: the profile is redrawn when it
        changes."""
        if self._line_layer is not None:
            self._line_layer.events.data.disconnect(self._line_changed)
        self._line_layer = layer
        layer.events.data.connect(self._line_changed)
        self.update_profile()

    def _line_changed(self, event):
        if getattr(event, 'action', 'changed') in ('added', 'changed',
                                                   'removed'):
            guarded(self.update_profile, self.status)()

    def line_ends(self) -> np.ndarray | None:
        """Start and end (Å, scan frame) of the last line drawn."""
        layer = self._line_layer
        if layer is None or layer not in self.viewer.layers:
            return None
        lines = [data for data, kind in zip(layer.data, layer.shape_type)
                 if kind in ('line', 'path')]
        if not lines:
            return None
        ends = np.asarray(lines[-1])[[0, -1]]
        return np.array([layer.data_to_world(end) for end in ends])[:, -2:]

    def update_profile(self, _value=None):
        """Sample every chosen layer along the line and plot them."""
        ends = self.line_ends()
        if ends is None or not self.layers.value:
            return None
        layers = self.selected()
        self.profile = line_profile([placed(layer) for layer in layers],
                                    ends[0], ends[1])
        self.axes.clear()
        for name, values in zip(self.profile.names, self.profile.values):
            self.axes.plot(self.profile.distance, values, label=name)
        self.axes.set_xlabel('distance along the line (Å)')
        self.axes.set_ylabel('value (phase: rad)')
        self.axes.legend(fontsize='small')
        self.canvas.draw_idle()
        return self.profile

    # --- recipe ---------------------------------------------------------
    def export_recipe(self):
        """Write the recipe of the results in the viewer (every method's
        recorded parameters) for ``napari-phase run --recipe``."""
        path = Path(self.recipe_path.value).expanduser().absolute()
        if path.exists() and not self.overwrite.value:
            raise LayerError(f'{str(path)!r} exists: tick "overwrite" to '
                             'replace it, or choose another file.')
        export_recipe(self.viewer, path, self.overwrite.value)
        self.status.value = f'Recipe written to {path}'
        return path

    # --- numbers --------------------------------------------------------
    def compute_numbers(self):
        """Correlation of every pair; FRC resolution (Å) for two
        independent reconstructions."""
        layers = self.selected(minimum=2)
        images = [placed(layer) for layer in layers]
        lines = [f'{a.name} vs {b.name}: r = {correlation(a, b):.3f}'
                 for a, b in combinations(images, 2)]
        if self.independent.value:
            if len(images) != 2:
                raise LayerError('FRC compares exactly two independent '
                                 'reconstructions: choose two layers.')
            frc = fourier_ring_correlation(*images)
            bound = '≤ ' if frc.limited_by_sampling else ''
            lines.append(f'FRC resolution (half-bit): {bound}'
                         f'{frc.resolution:.2f} Å')
        self.numbers.value = '\n'.join(lines)
        return lines
