"""Virtual detectors drawn on the diffraction view, with live images.

The Shapes layer "virtual detectors" (diffraction view, mrad, over the mean
pattern) holds the detectors. Each shape is one detector, named in the
layer's ``detector`` feature; its virtual image is the main-viewer layer
"virtual <name>" (Å), whose colormap tint is the shape's edge colour.

- Draw an ellipse, rectangle or polygon with the shape buttons of the
  diffraction view: it becomes "detector N". Move, resize or edit it: its
  image follows while the shape is dragged (computed in a thread, all
  changed detectors in ONE pass; while one update runs, at most one more
  waits, with the newest shapes).
- "Add BF": a disk of the probe radius + 2 px (as in the seed).
- "Add ADF": an annulus from the BF edge to beyond the detector corners,
  made of two ellipses that share the detector name: the outer one has
  ``role`` 'add', the inner one 'subtract' (mask = outer minus inner).
  Resize the inner ellipse to change the inner angle; select both to move
  the annulus.

Every virtual image records its detector's shapes (detector px) in its
parameters, so an exported recipe draws the same detectors again.
:func:`detector_shapes` and :func:`detector_masks` give every detector to
other widgets (e.g. DPC "mask from a detector shape").
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import ProgressBar, PushButton
from napari.utils.colormaps import ensure_colormap
from qtpy.QtCore import QTimer

from ..compute.calibration import DEFAULTS
from ..compute.detectors import BF_MARGIN_PX, iter_virtual_images, outer_radius
from ..pipeline import drawn_mask
from ._common import (
    META,
    StepWidget,
    add_or_update,
    build_layers,
    datacube_of,
    on_click,
    real_space_layer,
    start_job,
)
from .diffraction_view import (
    _VIEWS,
    diffraction_view,
    mean_pattern,
    q_scale,
)

#: Name of the Shapes layer (diffraction view) that holds the detectors.
DETECTORS = 'virtual detectors'
#: Colormaps given to detectors in turn; a shape's edge is its tint.
TINTS = ('cyan', 'magenta', 'yellow', 'green', 'red', 'blue', 'bop orange',
         'bop purple', 'bop blue')


def image_name(detector: str) -> str:
    """Main-viewer layer name of a detector's virtual image."""
    return f'virtual {detector}'


def tint_color(tint: str) -> np.ndarray:
    """RGBA of a colormap's brightest colour (the shape's edge colour)."""
    return np.asarray(ensure_colormap(tint).colors[-1], dtype=np.float32)


def shapes_of(layer) -> dict[str, list[dict]]:
    """The detectors of a Shapes ``layer``: name → its shapes (type, role,
    vertices in detector px, as :func:`napari_phase.pipeline.drawn_mask`
    and the recipe take them)."""
    features = layer.features
    detectors: dict[str, list[dict]] = {}
    for index, name in enumerate(features['detector'][:layer.nshapes]):
        detectors.setdefault(name, []).append({
            'type': layer.shape_type[index],
            'role': features['role'].iloc[index],
            'vertices': np.asarray(layer.data[index], float).tolist(),
        })
    return detectors


def masks_from_shapes(layer, detector_shape):
    """``({name: mask}, {name: error})`` for the detectors of ``layer``;
    an invalid detector has an error message instead of a mask."""
    masks, errors = {}, {}
    for name, shapes in shapes_of(layer).items():
        try:
            masks[name] = drawn_mask(shapes, detector_shape)
        except ValueError as error:
            errors[name] = str(error)
    return masks, errors


def _detector_layer(viewer):
    view = _VIEWS.get(viewer)
    if view is None or DETECTORS not in view.model.layers:
        return None
    return view.model.layers[DETECTORS]


def detector_shapes(viewer) -> dict[str, list[dict]]:
    """Every detector drawn in ``viewer``'s diffraction view: name →
    shapes (cheap: no mask is computed). Empty when there are none."""
    layer = _detector_layer(viewer)
    return {} if layer is None else shapes_of(layer)


def detector_masks(viewer) -> dict[str, np.ndarray]:
    """Every valid detector drawn in ``viewer``'s diffraction view: name ->
    float32 mask (detector px) for the datacube the detectors were drawn
    for. Empty when there are none."""
    layer = _detector_layer(viewer)
    shape = None if layer is None else layer.metadata.get(META, {}).get(
        'detector_shape')
    return {} if shape is None else masks_from_shapes(layer, shape)[0]


class VirtualDetectors(StepWidget):
    """Virtual detector step (see the module docstring)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.view = diffraction_view(viewer)
        self.bf_button = PushButton(text='Add BF')
        self.adf_button = PushButton(text='Add ADF')
        self.progress = ProgressBar(min=0, max=100, visible=False)
        super().__init__(viewer, None, 'Virtual images',
                         fields=[self.bf_button, self.adf_button,
                                 self.progress])
        self.shapes = self._shapes_layer()
        self.view.use_shapes(self.shapes)
        self.worker = None
        self._pending = False
        self._computed: dict[str, np.ndarray] = {}
        self._images: set[str] = set()
        self._errors: dict[str, str] = {}  # detector name -> why no image
        self._calibration = None
        self._scales = None  # (mrad, Å) per pixel the layers show
        self._mean_shown = None  # the cube whose mean pattern is shown
        self._count = 0  # shapes before the one being added
        self._adding_preset = False
        self._layer = None  # the datacube layer in use
        self._closed = False
        self.native.destroyed.connect(lambda *_: self._close())
        self._timer = QTimer(self.native)  # coalesces one gesture's events
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.update_images)
        self.shapes.events.data.connect(self._on_data)
        self.shapes.events.set_data.connect(self.schedule)
        on_click(self.bf_button, self.add_bf, self.status)
        on_click(self.adf_button, self.add_adf, self.status)
        self.load()

    # --- layers -----------------------------------------------------------
    def _shapes_layer(self):
        layers = self.view.model.layers
        if DETECTORS in layers:
            return layers[DETECTORS]
        empty = np.array([], dtype=object)
        return self.view.model.add_shapes(
            name=DETECTORS, ndim=2, units=('mrad', 'mrad'),
            features={'detector': empty, 'role': empty, 'tint': empty},
            feature_defaults={'detector': '', 'role': 'add', 'tint': ''},
            face_color='transparent', edge_width=0.5,
        )

    @property
    def cube(self):
        return datacube_of(self._layer)

    def load(self, *_):
        if self._calibration is not None:
            self._calibration.events.disconnect(self._on_calibration)
            self._calibration = None
        self._computed = {}
        layer = self._layer = self.cube_layer.value
        if layer is None:
            self.status.value = 'Open a 4D-STEM datacube first.'
            return
        self._calibration = self.cube.calibration
        self._calibration.events.connect(self._on_calibration)
        self._scales = None
        self.shapes.metadata[META] = {
            'detector_shape': self.cube.detector_shape}
        self._on_calibration()

    def _on_calibration(self, *_):
        """Rescale (when the pixel sizes changed): shapes and mean pattern
        (mrad), images (Å)."""
        cube = self.cube
        step = cube.calibration.scan_step or DEFAULTS['scan_step']
        scales = (q_scale(cube), step)
        if scales == self._scales:
            return
        self._scales = scales
        self.shapes.scale = q_scale(cube)
        if 'mean pattern' in self.view.model.layers:
            self.view.model.layers['mean pattern'].scale = q_scale(cube)
        for name in self._images:
            self.viewer.layers[image_name(name)].scale = (step, step)
        self.schedule()

    def _close(self):
        """The widget is gone: stop listening and computing."""
        self._closed = True
        self.shapes.events.data.disconnect(self._on_data)
        self.shapes.events.set_data.disconnect(self.schedule)
        if self._calibration is not None:
            self._calibration.events.disconnect(self._on_calibration)
        if self.worker is not None:
            self.worker.quit()

    # --- presets ----------------------------------------------------------
    def add_bf(self):
        """Add the BF detector: probe radius + 2 px (as in the seed)."""
        center, radius = self._probe('BF')
        self._add(self._unique('BF'), [circle_box(center, radius)],
                  ['add'])

    def add_adf(self):
        """Add the ADF detector: BF edge to beyond the detector corners
        (outer ellipse 'add', inner ellipse 'subtract')."""
        center, radius = self._probe('ADF')
        outer = outer_radius(self.cube.detector_shape, center)
        self._add(self._unique('ADF'),
                  [circle_box(center, outer), circle_box(center, radius)],
                  ['add', 'subtract'])

    def _probe(self, what):
        cal = self.cube.calibration
        cal.require('probe_center', 'probe_radius',
                    purpose=f'the {what} preset')
        return cal.probe_center, cal.probe_radius + BF_MARGIN_PX

    def _unique(self, base):
        names = set(self.shapes.features['detector'])
        return base if base not in names else _free_name(base, names)

    def _add(self, name, boxes, roles):
        n = self.shapes.nshapes
        tint = _least_used(list(self.shapes.features['tint']))
        self._adding_preset = True
        try:
            self.shapes.add(boxes, shape_type='ellipse')
        finally:
            self._adding_preset = False
        features = self.shapes.features.copy()
        features.loc[n:, 'detector'] = name
        features.loc[n:, 'role'] = roles
        features.loc[n:, 'tint'] = tint
        self.shapes.features = features
        self._color_edges()

    def _name_new_shapes(self, first: int):
        """Shapes drawn by hand (index ≥ ``first``) each get their own
        detector name and tint (napari would copy the selected shape's)."""
        features = self.shapes.features.copy()
        for i in range(first, self.shapes.nshapes):
            names = set(features['detector'].iloc[:i])
            features.loc[i, ['detector', 'role', 'tint']] = [
                _free_name('detector', names, first=1), 'add',
                _least_used(list(features['tint'].iloc[:i])),
            ]
        self.shapes.features = features
        self._color_edges()

    def _color_edges(self):
        tints = self.shapes.features['tint']
        if len(tints):
            self.shapes.edge_color = np.stack([tint_color(t) for t in tints])

    # --- live update --------------------------------------------------------
    def _on_data(self, event):
        if event.action == 'adding':
            self._count = self.shapes.nshapes
        elif event.action == 'added' and not self._adding_preset:
            self._name_new_shapes(self._count)
        if event.action in ('added', 'changed', 'removed'):
            self.schedule()

    def schedule(self, *_):
        """A shape changed: update once this turn of the event loop is
        done, or after the update that is running (at most one waits)."""
        if self.worker is not None:
            self._pending = True
        else:
            self._timer.start()

    def update_images(self):
        """Recompute the images of changed detectors (in a thread)."""
        if self._layer is None or self._closed:
            return
        if self.worker is not None:
            self._pending = True
            return
        cube = self.cube
        masks, errors = masks_from_shapes(self.shapes, cube.detector_shape)
        self._remove_images(set(self._images) - set(masks) - set(errors))
        self._errors = errors
        self._report()
        changed = {name: mask for name, mask in masks.items()
                   if not np.array_equal(self._computed.get(name), mask)}
        if changed or self._mean_shown is not cube:
            self._start(cube, changed)

    def _start(self, cube, masks):
        layer = self._layer
        shapes = shapes_of(self.shapes)
        tints = dict(zip(self.shapes.features['detector'],
                         self.shapes.features['tint'], strict=True))
        step = cube.calibration.scan_step or DEFAULTS['scan_step']
        new = {name for name in masks if name not in self._images}

        def job():
            mean = mean_pattern(layer)
            images = {}
            if masks:
                computed = yield from iter_virtual_images(
                    cube, list(masks.values()))
                images = dict(zip(masks, computed, strict=True))
            names = [name for name in images if name in new]
            built = dict(zip(names, build_layers(
                image_layer(cube, name, images[name], masks[name],
                            shapes[name], tints[name], step)
                for name in names), strict=True))
            return mean, images, built

        self.progress.value = 0
        self.progress.visible = cube.is_lazy  # a pass over a file: slow
        self.worker = start_job(
            job,
            on_yield=lambda done: setattr(self.progress, 'value',
                                          round(100 * done)),
            on_result=lambda result: self._show(layer, masks, shapes, tints,
                                                step, *result),
            on_error=lambda error: setattr(self.status, 'value',
                                           f'Error: {error}'),
            on_warning=lambda text: setattr(self.status, 'value', text),
            on_finished=self._finished)

    def _finished(self):
        self.worker = None
        if self._closed:  # the window closed while it computed
            return
        self.progress.visible = False
        if self._pending:
            self._pending = False
            self.update_images()

    def _show(self, layer, masks, shapes, tints, step, mean, images, built):
        if self._closed or layer is not self._layer:
            return  # closed, or the user picked another cube meanwhile
        cube = self.cube
        if self._mean_shown is not cube:
            self.view.show_pattern('mean pattern', mean, q_scale(cube))
            self.view.reset_view()
            self._mean_shown = cube
        present = set(self.shapes.features['detector'])
        for name, image in images.items():
            if name not in present:
                continue  # removed while computing
            if name not in built:  # an update: no new layer needed
                built[name] = (image_layer(cube, name, image, masks[name],
                                           shapes[name], tints[name], step),
                               None)
            add_or_update(self.viewer, *built[name])
            if name not in self._images:
                self._tie_colormap(name)
            self._computed[name] = masks[name]
            self._images.add(name)
        self._report()

    def _report(self):
        """The status line: the detectors that give no image, and the
        scan step assumed while the calibration has none."""
        notes = [f'{name}: {text}' for name, text in self._errors.items()]
        if self._images and self.cube.calibration.scan_step is None:
            notes.append(f'Scan step unknown: {DEFAULTS["scan_step"]:g} Å '
                         'per pixel assumed (set it in Calibration).')
        self.status.value = '; '.join(notes)

    def _tie_colormap(self, name):
        """A new colormap on the image re-tints its detector's edges."""
        image = self.viewer.layers[image_name(name)]

        def retint(*_):
            features = self.shapes.features.copy()
            features.loc[features['detector'] == name, 'tint'] = \
                image.colormap.name
            self.shapes.features = features
            self._color_edges()

        image.events.colormap.connect(retint)

    def _remove_images(self, names):
        for name in names:
            self._images.discard(name)
            self._computed.pop(name, None)
            if image_name(name) in self.viewer.layers:
                self.viewer.layers.remove(image_name(name))


def image_layer(cube, name, image, mask, shapes, tint, step) -> tuple:
    """Layer-data tuple of a detector's virtual image, recording the
    detector's shapes (so a recipe draws it again)."""
    return real_space_layer(
        image, image_name(name), step,
        {'method': 'virtual', 'detector': name, 'shapes': shapes,
         'pixels': int(mask.sum()), 'source': cube.source},
        colormap=tint, blending='additive',
    )


def circle_box(center, radius: float) -> np.ndarray:
    """napari ellipse data (4 bounding-box corners, px) of a circle."""
    cx, cy = center
    return np.array([[cx - radius, cy - radius], [cx + radius, cy - radius],
                     [cx + radius, cy + radius], [cx - radius, cy + radius]])


def _free_name(base: str, names: set, first: int = 2) -> str:
    return next(f'{base} {k}' for k in range(first, first + len(names) + 1)
                if f'{base} {k}' not in names)


def _least_used(tints: list) -> str:
    return min(TINTS, key=lambda t: (tints.count(t), TINTS.index(t)))


