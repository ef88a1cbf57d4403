"""Virtual detectors drawn on the diffraction view, with live images.

The Shapes layer "virtual detectors" (diffraction view, mrad, over the mean
pattern) holds the detectors. Each shape is one detector, named in the
layer's ``detector`` feature; its virtual image is the main-viewer layer
"virtual <name>" (Å), whose colormap tint is the shape's edge colour.

- Draw an ellipse, rectangle or polygon with napari's Shapes tools: it
  becomes "detector N". Move, resize or edit it: its image follows
  (debounced, computed in a thread; all detectors in ONE pass).
- "Add BF": a disk of the probe radius + 2 px (as in the seed).
- "Add ADF": an annulus from the BF edge to beyond the detector corners,
  made of two ellipses that share the detector name: the outer one has
  ``role`` 'add', the inner one 'subtract' (mask = outer minus inner).
  Resize the inner ellipse to change the inner angle; select both to move
  the annulus.

:func:`detector_masks` gives every detector's mask (detector px) to other
widgets (e.g. DPC "mask from a detector shape").
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.utils import progress as napari_progress
from napari.utils.colormaps import ensure_colormap
from qtpy.QtCore import QTimer

from ..compute.calibration import DEFAULTS
from ..compute.detectors import (
    BF_MARGIN_PX,
    ellipse_mask,
    iter_virtual_images,
    outer_radius,
    polygon_mask,
)
from ._common import (
    on_click,
    META,
    add_or_update,
    datacube_choices,
    datacube_of,
    follow_layers,
    guarded,
    real_space_layer,
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
#: Quiet time (ms) after the last shape change before recomputing.
DEBOUNCE_MS = 60


def image_name(detector: str) -> str:
    """Main-viewer layer name of a detector's virtual image."""
    return f'virtual {detector}'


def tint_color(tint: str) -> np.ndarray:
    """RGBA of a colormap's brightest colour (the shape's edge colour)."""
    return np.asarray(ensure_colormap(tint).colors[-1], dtype=np.float32)


def shape_mask(shape_type: str, vertices, detector_shape) -> np.ndarray:
    """Mask (detector px) of one napari shape given in detector px."""
    if shape_type == 'ellipse':
        return ellipse_mask(detector_shape, vertices)
    if shape_type in ('rectangle', 'polygon'):
        return polygon_mask(detector_shape, vertices)
    raise ValueError(
        f'a {shape_type} encloses no area: draw an ellipse, rectangle or '
        'polygon'
    )


def masks_from_shapes(layer, detector_shape):
    """``({name: mask}, {name: error})`` for the detectors of ``layer``.

    A detector's mask is the union of its 'add' shapes minus the union of
    its 'subtract' shapes; an invalid detector has an error message
    instead.
    """
    features = layer.features
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(features['detector'][:layer.nshapes]):
        groups.setdefault(name, []).append(index)
    masks, errors = {}, {}
    for name, indices in groups.items():
        try:
            masks[name] = _detector_mask(layer, indices, detector_shape)
        except ValueError as error:
            errors[name] = str(error)
    return masks, errors


def _detector_mask(layer, indices, detector_shape):
    union = {'add': np.zeros(detector_shape, np.float32),
             'subtract': np.zeros(detector_shape, np.float32)}
    for i in indices:
        role = layer.features['role'].iloc[i]
        mask = shape_mask(layer.shape_type[i], layer.data[i], detector_shape)
        np.maximum(union[role], mask, out=union[role])
    mask = union['add'] * (1 - union['subtract'])
    if not mask.any():
        raise ValueError('the detector covers no pixel (its inner part '
                         'removes everything)')
    return mask


def detector_masks(viewer) -> dict[str, np.ndarray]:
    """Every valid detector drawn in ``viewer``'s diffraction view: name ->
    float32 mask (detector px) for the datacube the detectors were drawn
    for. Empty when there are none."""
    view = _VIEWS.get(viewer)
    if view is None or DETECTORS not in view.model.layers:
        return {}
    layer = view.model.layers[DETECTORS]
    shape = layer.metadata.get(META, {}).get('detector_shape')
    return {} if shape is None else masks_from_shapes(layer, shape)[0]


class VirtualDetectors(Container):
    """Dockable virtual detector tool (see the module docstring)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        self.viewer = viewer
        self.view = diffraction_view(viewer)
        self.cube_layer = ComboBox(
            label='datacube', choices=datacube_choices(viewer)
        )
        self.bf_button = PushButton(text='Add BF')
        self.adf_button = PushButton(text='Add ADF')
        self.status = Label(value='')
        super().__init__(widgets=[self.cube_layer, self.bf_button,
                                  self.adf_button, self.status])
        self.shapes = self._shapes_layer()
        self.worker = None
        self._pending = False
        self._computed: dict[str, np.ndarray] = {}
        self._images: set[str] = set()
        self._calibration = None
        self._mean_shown = None  # the cube whose mean pattern is shown
        self._count = 0  # shapes before the one being added
        self._adding_preset = False
        self._layer = None  # the datacube layer in use
        self._closed = False
        self.native.destroyed.connect(lambda *_: self._close())
        self._timer = QTimer(self.native)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.update_images)
        self.shapes.events.data.connect(self._on_data)
        self.shapes.events.set_data.connect(self.schedule)
        on_click(self.bf_button, self.add_bf, self.status)
        on_click(self.adf_button, self.add_adf, self.status)
        self.cube_layer.changed.connect(self._on_cube)
        follow_layers(self, viewer)
        self._on_cube()

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

    def _on_cube(self, *_):
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
        self.shapes.metadata[META] = {
            'detector_shape': self.cube.detector_shape}
        self._on_calibration()

    def _on_calibration(self, *_):
        """Rescale: shapes and mean pattern (mrad), images (Å)."""
        cube = self.cube
        self.shapes.scale = q_scale(cube)
        if 'mean pattern' in self.view.model.layers:
            self.view.model.layers['mean pattern'].scale = q_scale(cube)
        step = cube.calibration.scan_step or DEFAULTS['scan_step']
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
        """Recompute after :data:`DEBOUNCE_MS` of quiet (restarts)."""
        self._timer.start()

    def update_images(self):
        """Recompute the images of changed detectors (in a thread)."""
        if self._layer is None or self._closed:
            return
        if self.worker is not None:  # one at a time; latest wins
            self._pending = True
            self.worker.quit()
            return
        cube = self.cube
        masks, errors = masks_from_shapes(self.shapes, cube.detector_shape)
        self._remove_images(set(self._images) - set(masks) - set(errors))
        self.status.value = '; '.join(f'{name}: {text}'
                                      for name, text in errors.items())
        changed = {name: mask for name, mask in masks.items()
                   if not np.array_equal(self._computed.get(name), mask)}
        if changed or self._mean_shown is not cube:
            self._start(cube, changed)

    def _start(self, cube, masks):
        from napari.qt.threading import create_worker

        layer = self._layer
        names = list(masks)

        def job():
            mean = mean_pattern(layer)
            images = None
            if names:
                images = yield from iter_virtual_images(
                    cube, [masks[n] for n in names])
            return mean, images

        bar = napari_progress(total=100, desc='Virtual images') \
            if cube.is_lazy else None
        self.worker = create_worker(job, _ignore_errors=True)
        if bar is not None:
            self.worker.yielded.connect(lambda done: _advance(bar, done))
        self.worker.returned.connect(
            lambda result: self._show(layer, masks, *result))
        self.worker.errored.connect(
            lambda error: setattr(self.status, 'value', f'Error: {error}'))
        self.worker.finished.connect(lambda: self._finished(bar))
        self.worker.start()

    def _finished(self, bar):
        if bar is not None:
            bar.close()
        self.worker = None
        if self._pending:
            self._pending = False
            self.update_images()

    def _show(self, layer, masks, mean, images):
        if self._closed or layer is not self._layer:
            return  # closed, or the user picked another cube meanwhile
        cube = self.cube
        if self._mean_shown is not cube:
            self.view.show_pattern('mean pattern', mean, q_scale(cube))
            self._mean_shown = cube
        if images is None:
            return
        step = cube.calibration.scan_step or DEFAULTS['scan_step']
        if cube.calibration.scan_step is None:
            self.status.value = (f'Scan step unknown: {step:g} Å per pixel '
                                 'assumed (set it in Probe calibration).')
        tints = dict(zip(self.shapes.features['detector'],
                         self.shapes.features['tint'], strict=True))
        for (name, mask), image in zip(masks.items(), images, strict=True):
            if name not in tints:
                continue  # removed while computing
            add_or_update(self.viewer, real_space_layer(
                image, image_name(name), step,
                {'detector': name, 'pixels': int(mask.sum()),
                 'source': cube.source},
                colormap=tints[name], blending='additive',
            ))
            if name not in self._images:
                self._tie_colormap(name)
            self._computed[name] = mask
            self._images.add(name)

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


def _advance(bar, done):
    bar.n = int(round(100 * done))
    bar.refresh()
