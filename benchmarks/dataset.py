"""The benchmark dataset: a simulated scan with its truth, on disk.

Written once per parameter set under ``benchmarks/.build/data/`` and reused:

- ``cube.emd`` / ``probe.emd``: EMD 1.0 files (napari_phase.io.emd), what
  both programs read;
- ``cube.npy`` / ``probe.npy``: the raw arrays (the py4DSTEM runner's
  fallback when it cannot read the EMD file);
- ``truth.npy``: the true phase (radians, scan frame) on a grid of
  ``truth_pixel`` Å whose pixel (0, 0) is scan position (0, 0);
- ``dataset.json``: simulation parameters, truth and file names.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

SEED = dict(
    scan_shape=(48, 48),
    detector_shape=(192, 192),
    scan_step=2.39,
    energy=300e3,
    semiangle=22.6,
    C1=400.0,
    rotation_deg=-15.0,
    dose=1e4,
    seed=0,
)
# Small and fast; C1 smaller so that the defocused probe fits the 12 Å
# ptychography window of a 64² detector.
QUICK = SEED | dict(scan_shape=(16, 16), detector_shape=(64, 64), C1=100.0)
TRUTH_UPSAMPLING = 4  # truth pixel = scan step / 4


def prepare(build_dir: Path, parameters: dict) -> dict:
    """Simulate and write the dataset for ``parameters`` (unless it is
    already there); return its description (``dataset.json``)."""
    key = hashlib.sha1(json.dumps(parameters, sort_keys=True).encode()
                       + _writers_source()).hexdigest()[:10]
    folder = build_dir.resolve() / 'data' / f'{_label(parameters)}-{key}'
    described = folder / 'dataset.json'
    if described.exists():
        return json.loads(described.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    description = _write(folder, parameters)
    described.write_text(json.dumps(description, indent=1))
    return description


def _writers_source() -> bytes:
    """The simulator's and the EMD writer's code: a change re-simulates."""
    import napari_phase.compute.simulate as simulate
    import napari_phase.io.emd as emd

    return b''.join(Path(m.__file__).read_bytes() for m in (simulate, emd))


def _label(parameters: dict) -> str:
    rx, ry = parameters['scan_shape']
    qx, qy = parameters['detector_shape']
    return f'{rx}x{ry}x{qx}x{qy}'


def _write(folder: Path, parameters: dict) -> dict:
    from napari_phase import simulate
    from napari_phase.io.emd import write_emd, write_emd_probe

    sim = simulate(**parameters)
    cube = sim.datacube
    truth_pixel = parameters['scan_step'] / TRUTH_UPSAMPLING
    files = {
        'cube_emd': 'cube.emd',
        'probe_emd': 'probe.emd',
        'cube_npy': 'cube.npy',
        'probe_npy': 'probe.npy',
        'truth': 'truth.npy',
    }
    write_emd(folder / files['cube_emd'], cube)
    write_emd_probe(folder / files['probe_emd'], sim.vacuum_probe,
                    cube.calibration)
    np.save(folder / files['cube_npy'], cube.data)
    np.save(folder / files['probe_npy'], sim.vacuum_probe)
    np.save(folder / files['truth'], sim.true_phase(truth_pixel))
    truth = {k: v for k, v in sim.truth.items() if k != 'aberrations'}
    return {
        'parameters': parameters,
        'truth': truth | {'truth_pixel': truth_pixel},
        'calibration': {
            k: v for k, v in cube.calibration.to_dict().items()
            if v not in (None, {})
        },
        'files': {k: str(folder / v) for k, v in files.items()},
        'bytes': int(cube.data.nbytes),
    }
