"""The seed workflow with napari-phase's public API, timed stage by stage.

Usage (the harness runs it in a fresh process per repeat)::

    python -m benchmarks.ours CONFIG.json

Same CONFIG and output as ``py4dstem_runner.py`` (result.json + .npy phase
images), same parameters (shared/README.md): probe fit with thresh_upper
0.7 on the vacuum probe, BF = radius + 2 px and ADF outside it, DPC with
the mask mean > 0.8·max, parallax with threshold 0.6, edge blend 2,
padding (4, 4), bins down to 8 repeated 6 times, upsampling ×4, aberration
fit and CTF correction; ptychography from the parallax geometry (or the
truth), batch 512, step 0.5, fixed probe, on the CPU.

A method that is not importable yet is reported as "not available yet";
any other failure of a method is reported on its rows, and the other
methods still run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.measure import (
    GROUPS,
    Recorder,
    ptycho_geometry,
    save_image,
    write_result,
)

#: Parallax steps, by the progress fraction that ends them in
#: ``parallax_steps`` (bright-field stack ≤ 0.15, alignment ≤ 0.75, fit and
#: upsampling ≤ 0.9, CTF correction and half-turn ≤ 1).
PARALLAX_STEPS = (
    (0.15, 'parallax: preprocess'),
    (0.75, 'parallax: align'),
    (0.9, 'parallax: fit + upsample'),
    (1.0, 'parallax: CTF correct'),
)


def main(config_path: str) -> None:
    import napari_phase
    from napari_phase import fit_probe, q_pixel_from_semiangle

    config = json.loads(Path(config_path).read_text())
    out, files = Path(config['out']), config['files']
    repeats = config['repeats']
    rec = Recorder()
    result = {'tool': 'napari-phase',
              'versions': {'napari-phase': napari_phase.__version__,
                           'numpy': np.__version__},
              'images': {}, 'fits': {}, 'notes': [], 'source': 'emd'}

    def read():
        cube = napari_phase.read_datacube(files['cube_emd'], lazy=False)
        probe, _ = napari_phase.read_probe(files['probe_emd'])
        return cube, probe

    cube, probe = rec.run('read', read, repeats)
    cal = cube.calibration
    mean, _ = rec.run('mean pattern', cube.mean_and_max_pattern, repeats)
    fit = rec.run('probe fit', lambda: fit_probe(probe, thresh_upper=0.7),
                  repeats)
    cal.update(probe_center=fit.center, probe_radius=fit.radius,
               q_pixel_mrad=q_pixel_from_semiangle(cal.semiangle, fit.radius))
    result['fits']['probe'] = {'radius_px': fit.radius,
                               'center': list(fit.center)}

    methods = {
        'virtual': lambda: _virtual(rec, cube, repeats),
        'dpc': lambda: _dpc(rec, cube, mean, repeats, result, out),
        'parallax': lambda: _parallax(rec, cube, result, out),
        'ptycho': lambda: _ptychography(rec, cube, probe, config, result,
                                        out),
    }
    for group, names in GROUPS.items():
        if group in config['stages']:
            rec.guarded(names, methods[group])
    result['stages'] = rec.stages
    write_result(out, result)


def _virtual(rec, cube, repeats):
    from napari_phase import adf_mask, bf_mask, virtual_images

    shape = cube.detector_shape
    masks = [bf_mask(cube.calibration, shape),
             adf_mask(cube.calibration, shape)]
    rec.run('virtual BF+ADF', lambda: virtual_images(cube, masks), repeats)


def _dpc(rec, cube, mean, repeats, result, out):
    from napari_phase import dpc

    mask = mean > 0.8 * mean.max()
    solved = rec.run('DPC', lambda: dpc(cube, mask=mask), repeats)
    if solved is not None:
        result['fits']['dpc'] = {'rotation_deg': solved.rotation_deg,
                                 'transpose': bool(solved.transpose)}
        save_image(result, out, 'dpc', solved.phase, solved.pixel_size)


def _parallax(rec, cube, result, out):
    """Parallax timed step by step, from the progress it yields."""
    from napari_phase import parallax_steps

    steps = parallax_steps(
        cube, threshold_intensity=0.6, edge_blend=2,
        object_padding_px=(4, 4), min_alignment_bin=8,
        num_iter_at_min_bin=6, upsample_factor=4)
    times = {}

    def run():
        start = time.perf_counter()
        while True:
            try:
                fraction = next(steps)
            except StopIteration as done:
                return done.value
            times[fraction] = time.perf_counter() - start

    solved = rec.run('parallax (total)', run)
    if solved is None:
        return
    previous = 0.0
    for end, name in PARALLAX_STEPS:
        reached = max(t for f, t in times.items() if f <= end)
        rec.record(name, seconds=[reached - previous])
        previous = reached
    cube.calibration.update(rotation_deg=solved.rotation_deg,
                            transpose=bool(solved.transpose), C1=solved.C1)
    result['fits']['parallax'] = {'rotation_deg': solved.rotation_deg,
                                  'transpose': bool(solved.transpose),
                                  'C1': solved.C1}
    save_image(result, out, 'parallax', solved.phase,
          solved.pixel_size['phase'], solved.origin['phase'])


def _ptychography(rec, cube, probe, config, result, out):
    """Preprocessing (building the reconstruction), then
    ``ptycho_iterations`` iterations timed together; the final cropping
    into the scan frame is not timed (as for py4DSTEM's object_cropped)."""
    from napari_phase import ptychography_iter

    geometry = ptycho_geometry(config, result['fits'].get('parallax'))
    result['fits']['ptycho_input'] = geometry
    n = config['ptycho_iterations']
    steps = rec.run('ptycho: preprocess', lambda: ptychography_iter(
        cube, probe, defocus=-geometry['C1'],
        rotation_deg=geometry['rotation_deg'],
        transpose=geometry['transpose'], aberrations={}, num_iter=n,
        max_batch_size=config['ptycho_batch'], step_size=0.5,
        fix_probe=True, device='cpu', seed=0))
    if steps is None:
        return
    if rec.run('ptycho: iterations',
               lambda: [next(steps) for _ in range(n)]) is None:
        return
    rec.per_iteration(n)
    solved = _finish(steps)
    save_image(result, out, 'ptycho', solved.phase, solved.pixel_size,
               solved.origin)


def _finish(generator):
    """The return value of a generator that has nothing left to yield."""
    try:
        next(generator)
    except StopIteration as done:
        return done.value
    raise RuntimeError('the reconstruction ran more iterations than asked')


if __name__ == '__main__':
    main(sys.argv[1])
