"""The diffraction view: a second napari canvas, docked, in mrad.

Real-space layers (Å) live in the main viewer; diffraction-space layers
(mean pattern, the pattern at a picked scan position, virtual detector
shapes, the fitted probe disk, parallax shift arrows, the reconstructed
probe) live here, in their own ViewerModel, so napari never mixes Å and
mrad in one frame (docs/design.md). One view per main viewer:
:func:`diffraction_view` returns the existing one or docks a new one.

Around the canvas: the shape tools as buttons (pan/zoom, select/move,
ellipse, rectangle, polygon, remove) for the layer the virtual detector
tool hands over, Reset view, a log scale and gamma for the patterns, and a
list of the view's layers with visibility boxes. The view is refitted when
the dock is resized. Auxiliary patterns (vacuum probe, probe phase) come
hidden.

Navigation: a click (press and release without dragging) on the main
canvas shows the diffraction pattern of the scan position under the cursor
in a layer "pattern at (i, j)", reading only that pattern; the position is
marked in the main viewer (layer "picked position") and named, index and
Å, under the canvas.
"""

from __future__ import annotations

import weakref

import napari
import numpy as np
from napari.components import ViewerModel
from napari.layers import Image
from napari.qt import QtViewer
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDockWidget,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..compute.backend import ProgressCallback, to_numpy
from ..compute.calibration import DEFAULTS
from ._common import META, datacube_of, is_datacube_layer

_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: The main-viewer Points layer that marks the picked scan position.
MARKER = 'picked position'
#: Shape tools: button text → Shapes layer mode.
TOOLS = {'pan/zoom': 'pan_zoom', 'select/move': 'select',
         'ellipse': 'add_ellipse', 'rectangle': 'add_rectangle',
         'polygon': 'add_polygon'}
#: Quiet time (ms) after a resize before the view is refitted.
REFIT_MS = 50
#: Width (px) of the column of controls beside the canvas.
CONTROLS_WIDTH = 210
#: Share of the window's height the view takes when docked.
HEIGHT = 0.4


class DiffractionView(QWidget):
    """A dockable canvas showing diffraction-space layers, with its
    controls (see the module docstring)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = viewer
        _VIEWS[viewer] = self
        self.model = ViewerModel(title='diffraction')
        self.qt_viewer = QtViewer(self.model)
        self.qt_viewer.setMinimumSize(240, 220)
        self.shapes = None  # the layer the shape tools act on
        self.tools = self._tool_buttons()
        self.reset_button = QPushButton('Reset view', self)
        self.reset_button.clicked.connect(lambda *_: self.reset_view())
        self.log_scale = QCheckBox('log', self)
        self.log_scale.setToolTip('Patterns on a log scale: log(1 + counts)')
        self.log_scale.toggled.connect(lambda *_: self._restyle())
        self.gamma = QDoubleSpinBox(self, minimum=0.1, maximum=2.0,
                                    singleStep=0.1, value=1.0,
                                    prefix='gamma ')
        self.gamma.valueChanged.connect(lambda *_: self._restyle())
        self.position = QLabel('Click the main canvas to see the pattern '
                               'of a scan position.', self)
        self.position.setWordWrap(True)
        self.layer_list = LayerToggles(self.model)
        controls = QVBoxLayout()
        tools = QGridLayout()
        for index, button in enumerate(self.tools.buttons()):
            tools.addWidget(button, index // 2, index % 2)
        controls.addLayout(tools)
        controls.addWidget(self.reset_button)
        controls.addLayout(_row(self.log_scale, self.gamma))
        controls.addWidget(self.position)
        controls.addWidget(self.layer_list, stretch=1)
        column = QWidget(self)
        column.setLayout(controls)
        column.setFixedWidth(CONTROLS_WIDTH)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.qt_viewer, stretch=1)
        layout.addWidget(column)
        self._refit = QTimer(self)
        self._refit.setSingleShot(True)
        self._refit.setInterval(REFIT_MS)
        self._refit.timeout.connect(self.reset_view)

    # --- canvas ----------------------------------------------------------
    def reset_view(self):
        """Fit the visible layers in the canvas."""
        self.model.reset_view()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._refit.start()

    def _tool_buttons(self) -> QButtonGroup:
        group = QButtonGroup(self)
        for text, mode in TOOLS.items():
            button = QPushButton(text, self)
            button.setCheckable(True)
            button.setEnabled(False)
            button.setProperty('mode', mode)
            button.setToolTip(f'Virtual detectors: {text}')
            group.addButton(button)
        group.buttons()[0].setChecked(True)
        group.buttonClicked.connect(
            lambda button: self._set_mode(button.property('mode')))
        remove = QPushButton('remove', self)
        remove.setToolTip('Remove the selected detector shapes')
        remove.setEnabled(False)
        remove.clicked.connect(lambda *_: self._remove_selected())
        group.addButton(remove)
        group.setExclusive(False)  # 'remove' is not a mode
        return group

    def use_shapes(self, layer) -> None:
        """Let the shape tools act on ``layer`` (the detectors)."""
        self.shapes = layer
        for button in self.tools.buttons():
            button.setEnabled(True)
        layer.events.mode.connect(self._show_mode)

    def _set_mode(self, mode):
        if mode is None:
            return
        self.model.layers.selection.active = self.shapes
        self.shapes.visible = True
        self.shapes.mode = mode

    def _show_mode(self, event=None):
        mode = str(self.shapes.mode)
        for button in self.tools.buttons():
            if button.property('mode') is not None:
                button.setChecked(button.property('mode') == mode)

    def _remove_selected(self):
        if self.shapes is not None and self.shapes.selected_data:
            self.shapes.remove_selected()

    # --- patterns --------------------------------------------------------
    def show_pattern(self, name: str, pattern, scale, kind: str = 'counts',
                     **kwargs):
        """Add or replace an Image layer ``name`` (scale in mrad/px).

        ``kind`` 'counts' (a pattern: shown with the view's log scale and
        gamma) or 'phase'. A stack of patterns (…, Qx, Qy) gets a slider
        per leading axis (no unit; ``axis_labels`` names them). New layers
        go below any shapes, points or vectors (detectors, the probe
        disk), which stay visible on top.
        """
        pattern = np.asarray(pattern)
        leading = pattern.ndim - 2
        layers = self.model.layers
        if name in layers:
            layer = layers[name]
            layer.metadata[META]['values'] = pattern
            layer.scale = scale
            self._style(layer)
            return layer
        meta = kwargs.pop('metadata', {}).get(META, {})
        kwargs.setdefault('axis_labels', (*map(str, range(leading)),
                                          'kx', 'ky'))
        layer = self.model.add_image(
            pattern, name=name, scale=scale,
            units=('pixel',) * leading + ('mrad', 'mrad'),
            metadata={META: meta | {'values': pattern, 'kind': kind}},
            **kwargs,
        )
        self._style(layer)
        overlays = [i for i, lay in enumerate(layers)
                    if not isinstance(lay, Image)]
        if overlays:
            layers.move(layers.index(layer), overlays[0])
        return layer

    def _restyle(self):
        for layer in self.model.layers:
            self._style(layer)

    def _style(self, layer):
        """A pattern's data from its values: counts on the view's log
        scale and with its gamma; other images as they are."""
        meta = layer.metadata.get(META, {})
        if 'values' not in meta:
            return
        values = meta['values']
        counts = meta['kind'] == 'counts'
        if counts and self.log_scale.isChecked():
            values = np.log1p(np.clip(values, 0, None))
        layer.data = values
        layer.reset_contrast_limits()
        if counts:
            layer.gamma = self.gamma.value()

    def show_pattern_at(self, position) -> Image | None:
        """Show the pattern of the scan position under the world
        ``position`` of the main viewer (Å) in the layer "pattern at (i,
        j)" and mark it; None when no datacube layer is there or the
        position is off the scan."""
        cube_layer = _navigation_layer(self.viewer)
        if cube_layer is None:
            return None
        cube = datacube_of(cube_layer)
        i, j = np.round(cube_layer.world_to_data(position)[-2:]).astype(int)
        if not (0 <= i < cube.scan_shape[0] and 0 <= j < cube.scan_shape[1]):
            return None
        pattern = to_numpy(cube.data[i, j]).astype(np.float32)
        name = f'pattern at ({i}, {j})'
        old = [lay for lay in self.model.layers
               if lay.metadata.get(META, {}).get('role') == 'pattern at']
        if old:
            old[0].name = name
        layer = self.show_pattern(name, pattern, q_scale(cube),
                                  metadata={META: {'role': 'pattern at'}})
        layer.visible = True
        layer.metadata[META]['scan_position'] = (int(i), int(j))
        x, y = cube_layer.data_to_world((0, 0, i, j))[-2:]
        self._mark(x, y)
        self.position.setText(f'Pattern at scan position ({i}, {j}) = '
                              f'({x:.2f}, {y:.2f}) Å')
        return layer

    def add_marker(self):
        """The (hidden, empty) layer that will mark picked positions,
        made beforehand: a first layer of its kind takes napari a while,
        better when the view opens than at the first click."""
        if MARKER not in self.viewer.layers:
            self.viewer.add_points(
                np.empty((0, 2)), name=MARKER, symbol='cross', size=3.0,
                face_color='yellow', border_width=0, visible=False,
                units=('angstrom',) * 2,
            )

    def _mark(self, x, y):
        """Mark the picked position (Å) in the main viewer, on top."""
        self.add_marker()
        layers = self.viewer.layers
        marker = layers[MARKER]
        marker.data = [[x, y]]
        if layers.index(marker) != len(layers) - 1:
            layers.move(layers.index(marker), len(layers))
        marker.visible = True

    def _navigate(self, viewer, event):
        """Mouse callback: a click without drag shows that position's
        pattern (a drag still pans the main canvas)."""
        position = event.position
        yield
        dragged = False
        while event.type == 'mouse_move':
            dragged = True
            yield
        if not dragged:
            self.show_pattern_at(position)

    # --- lifetime --------------------------------------------------------
    def showEvent(self, event):
        self.window().installEventFilter(self)
        super().showEvent(event)

    def eventFilter(self, watched, event):
        # The main window is closing: release our QtViewer with it (napari
        # counts live QtViewers and its test fixture fails on a leak).
        if event.type() == QEvent.Type.Close and self.qt_viewer is not None:
            self.release()
        return False

    def release(self):
        """Close the canvas and forget it (the main window is closing)."""
        _VIEWS.pop(self.viewer, None)
        self._refit.stop()
        if self._navigate in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._navigate)
        self.layer_list.release()
        self.qt_viewer.close()
        self.qt_viewer.setParent(None)
        self.qt_viewer.deleteLater()
        self.qt_viewer = None


class LayerToggles(QListWidget):
    """The diffraction view's layers, top first, each with a visibility
    box (the view's own small layer list)."""

    def __init__(self, model: ViewerModel):
        super().__init__()
        self.model = model
        self.itemChanged.connect(self._toggled)
        self._events = (model.layers.events.inserted,
                        model.layers.events.removed,
                        model.layers.events.moved)
        for event in self._events:
            event.connect(self.refresh)
        self.refresh()

    def refresh(self, event=None):
        self.blockSignals(True)
        self.clear()
        for layer in reversed(self.model.layers):
            item = QListWidgetItem(layer.name)
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable
                          | Qt.ItemFlag.ItemIsEnabled)
            item.setCheckState(Qt.CheckState.Checked if layer.visible
                               else Qt.CheckState.Unchecked)
            self.addItem(item)
            for signal in (layer.events.visible, layer.events.name):
                signal.connect(self.refresh)  # once: napari ignores repeats
        self.blockSignals(False)

    def _toggled(self, item):
        layer = self.model.layers[self.row(item) * -1 - 1]
        layer.visible = item.checkState() == Qt.CheckState.Checked

    def release(self):
        for event in self._events:
            event.disconnect(self.refresh)
        for layer in self.model.layers:
            layer.events.visible.disconnect(self.refresh)
            layer.events.name.disconnect(self.refresh)


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    row.setSpacing(2)
    for widget in widgets:
        row.addWidget(widget)
    return row


def diffraction_view(viewer) -> DiffractionView:
    """The diffraction view docked in ``viewer`` (created on first use),
    under the main canvas: the bottom dock area is given the width
    between the side docks, which keep the window's height."""
    view = _VIEWS.get(viewer)
    if view is None:
        view = DiffractionView(viewer)
        viewer.window.add_dock_widget(
            view, name='Diffraction view', area='bottom',
            add_vertical_stretch=False,
        )
        window, dock = view.window(), _dock_of(view)
        window.setCorner(Qt.Corner.BottomLeftCorner,
                         Qt.DockWidgetArea.LeftDockWidgetArea)
        window.setCorner(Qt.Corner.BottomRightCorner,
                         Qt.DockWidgetArea.RightDockWidgetArea)
        window.resizeDocks([dock], [int(HEIGHT * window.height())],
                           Qt.Orientation.Vertical)
        window.installEventFilter(view)
        viewer.mouse_drag_callbacks.append(view._navigate)
        view.add_marker()
    return view


def _dock_of(widget) -> QDockWidget:
    """The dock widget that holds ``widget``."""
    while not isinstance(widget, QDockWidget):
        widget = widget.parentWidget()
    return widget


def q_scale(cube) -> tuple[float, float]:
    """Diffraction-view scale (mrad/px) of a cube's detector (the default
    1 mrad/px while the Q pixel size is unknown)."""
    q = cube.calibration.q_pixel_mrad or DEFAULTS['q_pixel_mrad']
    return (q, q)


def mean_pattern(
    layer, progress: ProgressCallback | None = None
) -> np.ndarray:
    """Mean diffraction pattern (float32) of a datacube layer, computed
    once and kept in the layer's metadata."""
    store = layer.metadata.setdefault(META, {})
    if store.get('mean_pattern') is None:
        mean, _ = datacube_of(layer).mean_and_max_pattern(progress)
        store['mean_pattern'] = to_numpy(mean)
    return store['mean_pattern']


def _navigation_layer(viewer):
    """The selected datacube layer, else the top one (a lazy cube's layer
    may be hidden), else None."""
    active = viewer.layers.selection.active
    if active is not None and is_datacube_layer(active):
        return active
    cubes = [lay for lay in viewer.layers if is_datacube_layer(lay)]
    return cubes[-1] if cubes else None
