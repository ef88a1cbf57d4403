"""py4DSTEM 0.14.18's mixed-state and multislice ptychography, timed.

Runs INSIDE py4DSTEM's own virtual environment (it never imports
napari_phase); ``benchmarks/ptycho_models.py`` starts it once per model::

    python benchmarks/py4dstem_ptycho_models.py CONFIG.json

CONFIG: ``files``, ``parameters``, ``truth`` (θ, transpose, C1),
``iterations``, ``batch``, ``model`` (napari-phase's keys: num_probes,
num_slices, slice_thickness, position_correction) and ``out``. The read
and the calibration (probe radius with thresh_upper 0.7) are the main
runner's (py4dstem_runner.py); then the class of the model (vacuum probe,
defocus = −C1, CPU), ``preprocess`` with the forced rotation and
transpose, and ``reconstruct`` with the same iterations, batch, step 0.5,
free probe, seed 0 (``fix_positions=False`` for position correction),
py4DSTEM's defaults otherwise. Writes result.json and phase.npy (the sum
of the slices' phases, scan frame).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.measure import (
    Recorder,
    per_iteration,
    save_image,
    write_result,
)
from benchmarks.py4dstem_runner import OFF, _calibrate, _read


def main(config_path: str) -> None:
    import py4DSTEM
    from py4DSTEM.process import phase

    config = json.loads(Path(config_path).read_text())
    out, truth, model = Path(config['out']), config['truth'], config['model']
    rec = Recorder()
    result = {'tool': 'py4DSTEM', 'images': {}, 'fits': {}, 'notes': [],
              'versions': {'py4DSTEM': py4DSTEM.__version__,
                           'numpy': np.__version__}}
    cube, probe = _read(py4DSTEM, config, rec, result)
    _calibrate(cube, probe, config, rec, result)
    kwargs = {'energy': config['parameters']['energy'], 'datacube': cube,
              'vacuum_probe_intensity': probe, 'defocus': -truth['C1'],
              'verbose': False, 'device': 'cpu'}
    slices = model.get('num_slices', 1)
    if model.get('num_probes', 1) > 1:
        kwargs['num_probes'] = model['num_probes']
    if slices > 1:
        kwargs |= {'num_slices': slices,
                   'slice_thicknesses': model['slice_thickness']}
    kind = {(True, False): phase.MixedstatePtychography,
            (False, True): phase.MultislicePtychography,
            (True, True): phase.MixedstateMultislicePtychography}[
        ('num_probes' in kwargs, slices > 1)]
    ptycho = rec.run('preprocess', lambda: kind(**kwargs).preprocess(
        force_com_rotation=truth['rotation_deg'],
        force_com_transpose=truth['transpose'], plot_probe_overlaps=False,
        **OFF))
    if ptycho is None:
        write_result(out, result | {'stages': rec.stages})
        return
    n = config['iterations']
    solved = rec.run('iterations', lambda: ptycho.reconstruct(
        num_iter=n, max_batch_size=config['batch'], step_size=0.5,
        fix_probe=False, fix_positions=not model.get('position_correction'),
        progress_bar=False, seed_random=0))
    per_iteration(rec, n)
    if solved is not None:
        obj = np.angle(solved.object_cropped)
        projected = obj.sum(axis=0) if obj.ndim == 3 else obj
        save_image(result, out, 'phase', projected,
                   float(solved.sampling[0]))
    result['stages'] = rec.stages
    write_result(out, result)


if __name__ == '__main__':
    main(sys.argv[1])
