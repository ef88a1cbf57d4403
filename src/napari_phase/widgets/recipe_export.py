"""Export recipe: the parameters recorded on the result layers of a viewer,
as one YAML/JSON file that ``napari-phase run --recipe`` replays."""

from __future__ import annotations

from pathlib import Path

from ..compute.compare import check_same_dataset
from ..recipe import recipe_from_parameters, step_of, write_recipe
from ._common import META, LayerError, is_datacube_layer


def result_layers(viewer) -> list:
    """Layers carrying a napari-phase parameter record of a method."""
    return [layer for layer in viewer.layers
            if step_of(layer.metadata.get(META, {}).get('parameters', {}))]


def datacubes(viewer) -> dict:
    """The open datacubes by layer name."""
    return {layer.name: layer.metadata[META]['datacube']
            for layer in viewer.layers if is_datacube_layer(layer)}


def dataset_of(layer, viewer) -> str | None:
    """The dataset (``DataCube.source``) a result layer was computed from;
    a source recorded as the datacube layer's name is resolved to its
    dataset. None: unknown."""
    meta = layer.metadata.get(META, {})
    source = meta.get('source') or meta.get('parameters', {}).get('source')
    cube = datacubes(viewer).get(source)
    return source if cube is None else cube.source


def session_recipe(viewer) -> dict:
    """The recipe of the results in ``viewer`` (one dataset), starting from
    that dataset's calibration."""
    layers = result_layers(viewer)
    if not layers:
        raise LayerError('No DPC, parallax or ptychography result to export: '
                         'run a method first.')
    sources = {layer.name: dataset_of(layer, viewer) for layer in layers}
    check_same_dataset(sources)
    source = next((s for s in sources.values() if s is not None), None)
    records = [layer.metadata[META]['parameters'] for layer in layers]
    return recipe_from_parameters(records, _calibration(viewer, source,
                                                        records))


def _calibration(viewer, source, records) -> dict:
    for cube in datacubes(viewer).values():
        if source is None or cube.source == source:
            return cube.calibration.to_dict()
    recorded = [r['calibration'] for r in records if 'calibration' in r]
    if not recorded:
        raise LayerError(f'The datacube {source!r} is no longer open: its '
                         'calibration is needed for the recipe.')
    return max(recorded, key=len)


def export_recipe(viewer, path, force: bool = False) -> Path:
    """Write the session recipe of ``viewer`` to ``path`` (.yaml/.json)."""
    return write_recipe(path, session_recipe(viewer), force)
