"""The diffraction view: a second napari canvas, docked, in mrad.

Real-space layers (Å) live in the main viewer; diffraction-space layers
(mean pattern, the pattern under the cursor, virtual detector shapes, the
fitted probe disk, parallax shift arrows) live here, in their own
ViewerModel, so napari never mixes Å and mrad in one frame
(docs/design.md). One view per main viewer: :func:`diffraction_view`
returns the existing one or docks a new one.
"""

from __future__ import annotations

import weakref

import napari
from napari.components import ViewerModel
from napari.qt import QtViewer
from qtpy.QtCore import QEvent
from qtpy.QtWidgets import QVBoxLayout, QWidget

_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class DiffractionView(QWidget):
    """A dockable canvas showing diffraction-space layers."""

    def __init__(self, viewer: 'napari.viewer.Viewer'):
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
        """Add or replace an Image layer ``name`` (scale in mrad/px)."""
        layers = self.model.layers
        if name in layers:
            layer = layers[name]
            layer.data = pattern
            layer.scale = scale
            return layer
        return self.model.add_image(
            pattern, name=name, scale=scale, units=('mrad', 'mrad'),
            axis_labels=('kx', 'ky'), **kwargs,
        )

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
    return view
