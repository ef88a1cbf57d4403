"""The napari-phase dock: every step of the workflow, in order.

One dock holds the steps as sections of a tool box (one open at a time,
each scrolling on its own, so the dock fits a small screen), and under
them a collapsed "Dask cluster" section; the diffraction view is docked
beside it, visible. Each step is one of the widget classes, made with the
viewer; :data:`STEPS` lists them in workflow order, so adding a step is
one line there::

    STEPS = (
        ...
        Step('Parallax', ParallaxWidget),
        Step('Tune aberrations', TuneWidget),   # a new step
        Step('Ptychography', PtychoWidget),
        ...
    )
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import napari
from qtpy.QtWidgets import (
    QComboBox,
    QStyle,
    QToolBox,
    QVBoxLayout,
    QWidget,
)

from ._common import fold_button
from .calibration_widget import CalibrationWidget
from .cluster_widget import ClusterWidget
from .compare_widget import CompareWidget
from .diffraction_view import diffraction_view
from .dpc_widget import DPCWidget
from .open_datacube import OpenDatacube
from .parallax_widget import ParallaxWidget
from .ptycho_widget import PtychoWidget
from .tune_widget import TuneWidget
from .virtual_detectors import VirtualDetectors


@dataclass(frozen=True)
class Step:
    """A section of the dock: its title and the widget class (called with
    the viewer; a magicgui widget or a QWidget)."""

    title: str
    make: Callable


#: The workflow, in order.
STEPS = (
    Step('Open 4D-STEM data', OpenDatacube),
    Step('Calibration', CalibrationWidget),
    Step('Virtual detectors', VirtualDetectors),
    Step('DPC', DPCWidget),
    Step('Parallax', ParallaxWidget),
    Step('Tune aberrations', TuneWidget),
    Step('Ptychography', PtychoWidget),
    Step('Compare', CompareWidget),
)
#: Characters a drop-down list shows at least (longer texts are cut).
COMBO_CHARACTERS = 14


class Workflow(QWidget):
    """The napari-phase dock (see the module docstring). ``steps`` maps
    each title to its widget; :meth:`open_step` opens a section."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = viewer
        diffraction_view(viewer)
        self.toolbox = QToolBox()
        self.steps = {}
        for step in STEPS:
            widget = step.make(viewer)
            self.steps[step.title] = widget
            self.toolbox.addItem(_compact(getattr(widget, 'native', widget)),
                                 step.title)
        self.cluster = ClusterWidget(viewer)
        self.cluster_button = fold_button('Dask cluster', self.cluster.native)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toolbox, stretch=1)
        layout.addWidget(self.cluster_button)
        layout.addWidget(self.cluster.native)

    def showEvent(self, event):
        """Once styled in the window: as wide as the widest step needs
        (the steps scroll up and down, never sideways)."""
        super().showEvent(event)
        scrollbar = self.style().pixelMetric(
            QStyle.PixelMetric.PM_ScrollBarExtent)
        pages = [self.toolbox.widget(i) for i in range(self.toolbox.count())]
        self.setMinimumWidth(scrollbar + 8 + max(
            page.minimumSizeHint().width() for page in pages))

    def open_step(self, title: str):
        """Open the section ``title``; returns its widget."""
        self.toolbox.setCurrentIndex(list(self.steps).index(title))
        return self.steps[title]


def _compact(widget: QWidget) -> QWidget:
    """``widget`` with drop-down lists as narrow as a few words, so that
    a long layer name does not widen the dock."""
    for combo in widget.findChildren(QComboBox):
        combo.setMinimumContentsLength(COMBO_CHARACTERS)
        combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    return widget
