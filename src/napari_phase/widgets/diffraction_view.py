"""The diffraction view: a second napari canvas, docked, in mrad.

Real-space layers (Å) live in the main viewer; diffraction-space layers
(mean pattern, the pattern under the cursor, virtual detector shapes, the
fitted probe disk, parallax shift arrows) live here, in their own
ViewerModel, so napari never mixes Å and mrad in one frame
(docs/design.md). One view per main viewer: :func:`diffraction_view`
returns the existing one or docks a new one.

Navigation: a click (press and release without dragging) on the main
canvas shows the diffraction pattern of the scan position under the cursor
in a layer "pattern at (i, j)", reading only that pattern.
"""

from __future__ import annotations

import weakref

import napari
import numpy as np
from napari.components import ViewerModel
from napari.layers import Image
from napari.qt import QtViewer
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..compute.backend import ProgressCallback, to_numpy
from ..compute.calibration import DEFAULTS
from ._common import META, datacube_of, is_datacube_layer

_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class DiffractionView(QWidget):
    """A dockable canvas showing diffraction-space layers."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = viewer
        _VIEWS[viewer] = self
        self.model = ViewerModel(title='diffraction')
        self.qt_viewer = QtViewer(self.model)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.qt_viewer)
        self.setMinimumSize(300, 300)

    def show_pattern(self, name: str, pattern, scale, **kwargs):
        """Add or replace an Image layer ``name`` (scale in mrad/px).

        New patterns go below any shapes, points or vectors (detectors,
        the probe disk), which stay visible on top.
        """
        layers = self.model.layers
        if name in layers:
            layer = layers[name]
            layer.data = pattern
            layer.scale = scale
            return layer
        layer = self.model.add_image(
            pattern, name=name, scale=scale, units=('mrad', 'mrad'),
            axis_labels=('kx', 'ky'), **kwargs,
        )
        overlays = [i for i, lay in enumerate(layers)
                    if not isinstance(lay, Image)]
        if overlays:
            layers.move(layers.index(layer), overlays[0])
        return layer

    def show_pattern_at(self, position) -> Image | None:
        """Show the pattern of the scan position under the world
        ``position`` of the main viewer (Å) in the layer "pattern at (i,
        j)"; None when no datacube layer is there or the position is off
        the scan."""
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
        layer.metadata[META]['scan_position'] = (int(i), int(j))
        return layer

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
        if self._navigate in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._navigate)
        self.qt_viewer.close()
        self.qt_viewer.setParent(None)
        self.qt_viewer.deleteLater()
        self.qt_viewer = None


def diffraction_view(viewer) -> DiffractionView:
    """The diffraction view docked in ``viewer`` (created on first use)."""
    view = _VIEWS.get(viewer)
    if view is None:
        view = DiffractionView(viewer)
        viewer.window.add_dock_widget(
            view, name='Diffraction view', area='right'
        )
        view.window().installEventFilter(view)
        viewer.mouse_drag_callbacks.append(view._navigate)
    return view


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
