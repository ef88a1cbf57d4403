"""The seed workflow in py4DSTEM 0.14.18, timed stage by stage.

Runs INSIDE py4DSTEM's own virtual environment (numpy 1.26), so it never
imports napari_phase. Usage::

    python benchmarks/py4dstem_runner.py CONFIG.json

CONFIG holds ``files`` (cube_emd, probe_emd, cube_npy, probe_npy),
``parameters`` (scan_step Å, energy eV, semiangle mrad), ``truth``
(rotation_deg, transpose, C1 Å), ``out`` (folder), ``repeats`` (for the
cheap stages), ``ptycho_iterations``, ``ptycho_batch`` and
``ptycho_geometry`` ('parallax': rotation and defocus from the parallax
fit, as the seed does; 'truth': the simulator's values). It writes
``result.json`` and the phase images (.npy) to ``out``.

Parameters are the seed's (shared/README.md): probe radius with
thresh_upper 0.7 on the vacuum probe; BF = circle of radius + 2 px, ADF =
annulus from radius + 2 px; DPC with dp_mask = dp_mean > 0.8·max; parallax
threshold_intensity 0.6, edge_blend 2, object_padding_px (4, 4),
min_alignment_bin 8, num_iter_at_min_bin 6, KDE upsampling ×4,
aberration_fit, aberration_correct; ptychography with the vacuum probe,
defocus = −C1, batch 512, step 0.5, fix_probe, on the CPU. No angle is
forced by hand (the seed's user adds 180° after looking at the images):
the fitted values are reported as they come. Plots are off.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.measure import (  # noqa: E402
    GROUPS,
    Recorder,
    ptycho_geometry,
    save_image,
    write_result,
)

OFF = dict(plot_center_of_mass=False, plot_rotation=False)


def main(config_path: str) -> None:
    import py4DSTEM

    config = json.loads(Path(config_path).read_text())
    out = Path(config['out'])
    rec = Recorder()
    result = {'tool': 'py4DSTEM',
              'versions': {'py4DSTEM': py4DSTEM.__version__,
                           'numpy': np.__version__},
              'images': {}, 'fits': {}, 'notes': []}
    cube, probe = _read(py4DSTEM, config, rec, result)
    dp_mean, (radius, qx0, qy0) = _calibrate(cube, probe, config, rec,
                                             result)
    methods = {
        'virtual': lambda: _virtual(cube, radius, (qx0, qy0), config, rec),
        'dpc': lambda: _dpc(py4DSTEM, cube, dp_mean, config, rec, result,
                            out),
        'parallax': lambda: _parallax(cube, config, rec, result, out),
        'ptycho': lambda: _ptychography(cube, probe, config, rec, result,
                                        out),
    }
    for group, names in GROUPS.items():
        if group in config['stages']:
            rec.guarded(names, methods[group])
    result['stages'] = rec.stages
    write_result(out, result)


def _read(py4DSTEM, config, rec, result):
    """The EMD files, or (if py4DSTEM cannot read them) the raw arrays in a
    DataCube whose pixel sizes are set by hand."""
    files, step = config['files'], config['parameters']['scan_step']

    def read():
        cube = py4DSTEM.read(files['cube_emd'])
        return cube, py4DSTEM.read(files['probe_emd']).data

    loaded = rec.run('read', read, config['repeats'])
    result['source'] = 'emd'
    if loaded is None:
        loaded = (_datacube(py4DSTEM, np.load(files['cube_npy']), step,
                            config['calibration']['q_pixel_mrad']),
                  np.load(files['probe_npy']))
        result['notes'].append('read: EMD failed, DataCube built from .npy')
        result['source'] = 'npy'
    cal = loaded[0].calibration
    result['read_calibration'] = {
        'R_pixel_size': cal.get_R_pixel_size(),
        'R_pixel_units': cal.get_R_pixel_units(),
        'Q_pixel_size': cal.get_Q_pixel_size(),
        'Q_pixel_units': cal.get_Q_pixel_units(),
    }
    return loaded


def _calibrate(cube, probe, config, rec, result):
    """Mean pattern; probe radius and centre (vacuum probe, thresh_upper
    0.7); R pixel = scan step, Q pixel = semiangle / radius."""
    from py4DSTEM.process.calibration import get_probe_size

    par, repeats = config['parameters'], config['repeats']
    dp_mean = rec.run('mean pattern', lambda: cube.get_dp_mean().data,
                      repeats)
    probe_fit = rec.run(
        'probe fit', lambda: get_probe_size(probe, thresh_upper=0.7),
        repeats)
    radius = probe_fit[0]
    cal = cube.calibration
    cal.set_R_pixel_size(par['scan_step'])
    cal.set_R_pixel_units('A')
    cal.set_Q_pixel_size(par['semiangle'] / radius)
    cal.set_Q_pixel_units('mrad')
    result['fits']['probe'] = {'radius_px': radius,
                               'center': list(probe_fit[1:])}
    return dp_mean, probe_fit


def _virtual(cube, radius, centre, config, rec):
    def virtual():
        kw = dict(verbose=False, returncalc=True)
        bf = cube.get_virtual_image(
            'circle', (centre, radius + 2), name='bf', **kw)
        adf = cube.get_virtual_image(
            'annulus', (centre, (radius + 2, 1e3)), name='adf', **kw)
        return bf, adf

    rec.run('virtual BF+ADF', virtual, config['repeats'])


def _dpc(py4DSTEM, cube, dp_mean, config, rec, result, out):
    """DPC on a copy of the cube (its preprocess may modify its input;
    whether it did is noted)."""
    from py4DSTEM.process.phase import DPC

    par = config['parameters']
    own = _datacube(py4DSTEM, cube.data.copy(), par['scan_step'],
                    cube.calibration.get_Q_pixel_size())
    mask = dp_mean > 0.8 * dp_mean.max()

    def dpc():
        return DPC(datacube=own, energy=par['energy'], verbose=False,
                   device='cpu').preprocess(
            dp_mask=mask, **OFF).reconstruct(progress_bar=False)

    solved = rec.run('DPC', dpc, config['repeats'])
    if not np.array_equal(own.data, cube.data):
        result['notes'].append('DPC.preprocess modified its input datacube')
    if solved is not None:
        result['fits']['dpc'] = {
            'rotation_deg': float(np.rad2deg(solved._rotation_best_rad)),
            'transpose': bool(solved._rotation_best_transpose),
        }
        save_image(result, out, 'dpc', solved.object_phase,
                   par['scan_step'])


def _parallax(cube, config, rec, result, out):
    """The seed's parallax steps, each timed."""
    from py4DSTEM.process.phase import Parallax

    par = config['parameters']
    steps = [
        ('parallax: preprocess', lambda p: Parallax(
            energy=par['energy'], datacube=cube, verbose=False,
            device='cpu', object_padding_px=(4, 4)).preprocess(
            edge_blend=2, threshold_intensity=0.6, plot_average_bf=False)),
        ('parallax: align', lambda p: p.reconstruct(
            min_alignment_bin=8, num_iter_at_min_bin=6, progress_bar=False,
            plot_aligned_bf=False, plot_convergence=False)),
        ('parallax: upsample (KDE x4)', lambda p: p.subpixel_alignment(
            kde_upsample_factor=4, plot_upsampled_BF_comparison=False,
            plot_upsampled_FFT_comparison=False, progress_bar=False)),
        ('parallax: aberration fit', lambda p: p.aberration_fit(
            plot_CTF_comparison=False, plot_BF_shifts_comparison=False)),
        ('parallax: CTF correct', lambda p: p.aberration_correct(
            plot_corrected_phase=False)),
    ]
    parallax = None
    for name, step in steps:
        parallax = rec.run(name, lambda: step(parallax))
        if parallax is None:
            return
    rec.total('parallax: fit + upsample',
              ['parallax: upsample (KDE x4)', 'parallax: aberration fit'])
    rec.total('parallax (total)', [name for name, _ in steps])
    result['fits']['parallax'] = {
        'rotation_deg': float(np.rad2deg(parallax.rotation_Q_to_R_rads)),
        'transpose': bool(parallax.transpose),
        'C1': float(parallax.aberrations_C1),
    }
    save_image(result, out, 'parallax', parallax.object_cropped,
               par['scan_step'] / parallax._kde_upsample_factor)


def _ptychography(cube, probe, config, rec, result, out):
    """Preprocess, then ``ptycho_iterations`` iterations timed together;
    per iteration = their mean; 64 iterations = preprocess + 64 × that."""
    from py4DSTEM.process.phase import SingleslicePtychography

    geometry = ptycho_geometry(config, result['fits'].get('parallax'))
    result['fits']['ptycho_input'] = geometry

    def preprocess():
        return SingleslicePtychography(
            energy=config['parameters']['energy'], datacube=cube,
            vacuum_probe_intensity=probe,
            defocus=-geometry['C1'], verbose=False, device='cpu',
        ).preprocess(
            force_com_rotation=geometry['rotation_deg'],
            force_com_transpose=geometry['transpose'],
            plot_probe_overlaps=False, **OFF)

    ptycho = rec.run('ptycho: preprocess', preprocess)
    if ptycho is None:
        return
    n = config['ptycho_iterations']
    ptycho = rec.run('ptycho: iterations', lambda: ptycho.reconstruct(
        num_iter=n, max_batch_size=config['ptycho_batch'], step_size=0.5,
        fix_probe=True, progress_bar=False, seed_random=0))
    if ptycho is None:
        return
    rec.per_iteration(n)
    save_image(result, out, 'ptycho', np.angle(ptycho.object_cropped),
               float(ptycho.sampling[0]))


def _datacube(py4DSTEM, data, step, q_pixel_mrad):
    """A py4DSTEM DataCube with its R and Q pixel sizes set by hand."""
    cube = py4DSTEM.DataCube(data=data)
    cube.calibration.set_R_pixel_size(step)
    cube.calibration.set_R_pixel_units('A')
    cube.calibration.set_Q_pixel_size(q_pixel_mrad)
    cube.calibration.set_Q_pixel_units('mrad')
    return cube


if __name__ == '__main__':
    start = time.perf_counter()
    main(sys.argv[1])
    print(f'py4DSTEM runner done in {time.perf_counter() - start:.1f} s')
