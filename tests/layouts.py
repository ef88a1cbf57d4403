"""Files written to mirror the layouts instruments and other programs write
(DECTRIS ARINA, fpd/Merlin HDF5, Prismatic EMD 0.5, Merlin .mib/.hdr,
EMPAD .xml/.raw), for the reader tests. Each docstring says where the
layout comes from."""

from __future__ import annotations

import hashlib
import struct

import h5py
import hdf5plugin
import numpy as np


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_arina(folder, frames, side=None, name='scan', nimages=1,
                compression=None):
    """A DECTRIS ARINA acquisition: ``<name>_master.h5`` linking
    ``/entry/data/data_000001`` to ``<name>_data_000001.h5`` (frames
    (N, Qx, Qy), bitshuffle-LZ4, one frame per chunk), the detector group
    (x_pixel_size 100 µm, detector_distance, ntrigger = N / nimages), and,
    when ``side`` is given, the side metadata file ``<name>.h5`` with
    those attributes on group ``STEM Metadata`` (as rosettasciio's ARINA
    reader reads ``Pixel Size``)."""
    compression = compression or hdf5plugin.Bitshuffle(cname='lz4')
    master = folder / f'{name}_master.h5'
    data_name = f'{name}_data_000001.h5'
    with h5py.File(folder / data_name, 'w') as h5:
        h5.create_dataset('entry/data/data', data=frames,
                          chunks=(1, *frames.shape[1:]), **compression)
    with h5py.File(master, 'w') as h5:
        h5['entry/data/data_000001'] = h5py.ExternalLink(
            data_name, '/entry/data/data')
        detector = h5.create_group('entry/instrument/detector')
        detector['x_pixel_size'] = 100e-6
        detector['y_pixel_size'] = 100e-6
        detector['detector_distance'] = 1.0  # a placeholder on ARINA
        specific = detector.create_group('detectorSpecific')
        specific['ntrigger'] = len(frames) // nimages
        specific['nimages'] = nimages
        specific['photon_energy'] = 200e3
    if side is not None:
        with h5py.File(folder / f'{name}.h5', 'w') as h5:
            group = h5.create_group('STEM Metadata')
            for key, value in side.items():
                group.attrs[key] = np.atleast_1d(value)
    return master


def write_fpd(path, data, scan_step_nm=0.5):
    """An fpd (Merlin HDF5) file, as fpd.fpd_file.MerlinBinary.write_hdf5
    writes it: EMD 0.2 root attributes, ``/fpd_expt/fpd_data`` with
    ``data`` (scanY, scanX, colour, detY, detX) and ``dim1``..``dim5``,
    the summed images, and one group per binary-header parameter with the
    value at each scan position: ``Threshold`` (8 values), ``DACs``
    (27), ``Exposure`` (1), all (scanY, scanX, colour, n)."""
    sy, sx, nc, dy, dx = data.shape
    with h5py.File(path, 'w') as h5:
        h5.attrs.update(version_major=0, version_minor=2,
                        fpd_version='0.1.1')
        expt = h5.create_group('fpd_expt')
        axes = [
            ('scanY', np.arange(sy) * scan_step_nm, 'nm'),
            ('scanX', np.arange(sx) * scan_step_nm, 'nm'),
            ('colour', np.arange(1, nc + 1), 'colour_index'),
            ('detY', np.arange(dy), 'pixels'),
            ('detX', np.arange(dx), 'pixels'),
        ]
        _emd_group(expt, 'fpd_data', data, axes, chunks=(sy, sx, 1, 16, 16),
                   compression='gzip')
        _emd_group(expt, 'fpd_sum_im', data.sum(axis=(-2, -1)), axes[:3])
        _emd_group(expt, 'fpd_sum_dif', data.sum(axis=(0, 1, 2)), axes[3:])
        for name, n in (('Threshold', 8), ('DACs', 27), ('Exposure', 1)):
            table = np.ones((sy, sx, nc, n), np.float64)
            _emd_group(expt, name, table,
                       axes[:3] + [(name, np.arange(n), 'value')])


def _emd_group(parent, name, data, axes, **kwargs):
    group = parent.create_group(name)
    group.attrs['emd_group_type'] = 1
    group.create_dataset('data', data=data, **kwargs)
    for n, (label, vector, units) in enumerate(axes):
        dim = group.create_dataset(f'dim{n + 1}', data=vector)
        dim.attrs['name'] = label
        dim.attrs['units'] = units


def write_prismatic(path, data, step_nm=0.5, dq_per_A=0.02, energy_kv=300.0,
                    semiangle=20.0):
    """A Prismatic EMD 0.5 output, as Prismatic's fileIO.cpp writes it:
    ``/4DSTEM_simulation`` (version 0.5) with
    ``data/datacubes/CBED_array_depth0000/datacube`` (Rx, Ry, Qx, Qy) and
    ``dim1``..``dim4`` (R_x, R_y in ``[n_m]``, Q_x, Q_y in ``[Å^-1]``),
    an annular and a virtual-detector output, the projected potential
    slices, and the simulation parameters (``E`` kV, ``sa`` mrad);
    ``energy_kv=None`` leaves the parameters out."""
    rx, ry, qx, qy = data.shape
    with h5py.File(path, 'w') as h5:
        sim = h5.create_group('4DSTEM_simulation')
        sim.attrs.update(version_major=0, version_minor=5, emd_group_type=2)
        cubes = sim.create_group('data/datacubes')
        r_axes = [('R_x', np.arange(rx) * step_nm, '[n_m]'),
                  ('R_y', np.arange(ry) * step_nm, '[n_m]')]
        q_axes = [
            ('Q_x', (np.arange(qx) - qx // 2) * dq_per_A, '[Å^-1]'),
            ('Q_y', (np.arange(qy) - qy // 2) * dq_per_A, '[Å^-1]'),
        ]
        _emd_group(cubes, 'CBED_array_depth0000', data, r_axes + q_axes)
        cubes['CBED_array_depth0000'].move('data', 'datacube')
        slices = sim.create_group('data/realslices')
        _emd_group(slices, 'annular_detector_depth0000',
                   data.sum(axis=(2, 3)), r_axes)
        _emd_group(slices, 'virtual_detector_depth0000',
                   np.ones((rx, ry, 12), np.float32),
                   r_axes + [('bin_outer_angle', np.arange(12.0), '[mrad]')])
        _emd_group(slices, 'ppotential_fp0000',
                   np.ones((48, 48, 6), np.float32),
                   [('R_x', np.arange(48.0), '[Å]'),
                    ('R_y', np.arange(48.0), '[Å]'),
                    ('R_z', np.arange(6.0), '[Å]')])
        if energy_kv is not None:
            params = sim.create_group(
                'metadata/metadata_0/original/simulation_parameters')
            params.attrs.update(E=energy_kv, sa=semiangle, df=0.0)


#: The Merlin acquisition header (.hdr), as Merlin software writes it.
MERLIN_HDR = (
    'HDR,\t\n'
    'Time and Date Stamp (day, mnth, yr, hr, min, s):\t18/05/2020 16:51:48\n'
    'Chip ID:\tW529_F5,-,-,-\n'
    'Chip Type (Medipix 3.0, Medipix 3.1, Medipix 3RX):\tMedipix 3RX\n'
    'Assembly Size (NX1, 2X2):\t   1x1\n'
    'Chip Mode  (SPM, CSM, CM, CSCM):\tSPM\n'
    'Counter Depth (number):\t12\n'
    'Acquisition Type (Normal, Th_scan, Config):\tNormal\n'
    'Frames in Acquisition (Number):\t{frames}\n'
    'Frames per Trigger (Number):\t{per_line}\n'
    'Trigger Start (Positive, Negative, Internal):\tRising Edge\n'
    'Readout System:\tMerlin Quad\n'
    'End\t'
)


def write_merlin(folder, frames, per_line, name='scan'):
    """A Merlin acquisition: ``<name>.mib`` with one 384-byte header per
    frame (single chip, big-endian U16, the header fields a Merlin writes)
    and ``<name>.hdr`` giving the frames per line trigger. Frames are
    stored bottom row first (rosettasciio flips them back)."""
    n, rows, cols = frames.shape
    body = bytearray()
    for i, frame in enumerate(frames):
        header = (
            f'MQ1,{i + 1:06d},00384,01,{cols:04d},{rows:04d},U16,   1x1,01,'
            '2020-05-18 16:51:49.971626,0.000555,0,0,0,1.200000E+2,'
            '5.110000E+2,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,'
            '0.000000E+0,0.000000E+0,3RX,175,511,000,000,000,000,000,000,125,'
            '255,125,125,100,100,082,100,087,030,128,004,255,129,128,176,168,'
            '511,511,MQ1A,2020-05-18T14:51:49.971626178Z,555000ns,12,'
        ).encode()
        body += header.ljust(384, b'\0')
        body += frame[::-1].astype('>u2').tobytes()
    mib = folder / f'{name}.mib'
    mib.write_bytes(bytes(body))
    (folder / f'{name}.hdr').write_text(
        MERLIN_HDR.format(frames=n, per_line=per_line))
    return mib


def write_empad(folder, data, step_nm, voltage_v, angle_rad, q_per_nm):
    """An EMPAD acquisition: ``scan_x{Ry}_y{Rx}.raw`` (frames of 128×130
    little-endian float32, the last two rows metadata) and the XML the
    EMPAD software writes beside it (raw_file, pix_x/pix_y, and the
    iom_measurements of the microscope: full-scan field of view (m),
    calibrated_pixelsize (1/m per pixel), voltage (V), diffraction angle
    (rad per pixel; None leaves it out)). rosettasciio reads the XML only
    without whitespace between elements, as the EMPAD software writes it."""
    rx, ry = data.shape[:2]
    raw_name = f'scan_x{ry}_y{rx}.raw'
    frames = np.zeros((rx, ry, 130, 128), '<f4')
    frames[:, :, :128] = data
    frames[:, :, 128:] = 7.0  # metadata rows, not data
    (folder / raw_name).write_bytes(frames.tobytes())
    fov = [rx * step_nm * 1e-9, ry * step_nm * 1e-9]
    xml = (  # no whitespace between elements, as rosettasciio needs
        '<?xml version="1.0"?>\n<root>'
        '<timestamp><isoformat>2019-06-06T13:30:00.164675</isoformat>'
        '</timestamp>'
        f'<pix_x>{ry}</pix_x><pix_y>{rx}</pix_y>'
        f'<raw_file filename="{raw_name}"/>'
        '<iom_measurements>'
        f'<optics.get_full_scan_field_of_view>[{fov[0]!r}, {fov[1]!r}]'
        '</optics.get_full_scan_field_of_view>'
        f'<calibrated_pixelsize>{q_per_nm * 1e-9!r}</calibrated_pixelsize>'
        f'<source.get_voltage>{voltage_v!r}</source.get_voltage>'
        + ('' if angle_rad is None else
           f'<calibrated_diffraction_angle>{angle_rad!r}'
           '</calibrated_diffraction_angle>')
        + '</iom_measurements></root>\n'
    )
    path = folder / 'acquisition.xml'
    path.write_text(xml)
    return path


def corrupt_block_size(path, dataset, index, value=1 << 20):
    """Overwrite the size of the first compressed block in the chunk at
    ``index`` (bitshuffle-LZ4 or LZ4 filter: after the 12-byte header)
    with ``value``, as a damaged disk or transfer would."""
    _overwrite(path, dataset, index, 12, struct.pack('>I', value))


def corrupt_total_size(path, dataset, index):
    """Multiply the uncompressed size in the header of the chunk at
    ``index`` by 1000."""
    with h5py.File(path, 'r') as h5:
        dset = h5[dataset]
        nbytes = int(np.prod(dset.chunks)) * dset.dtype.itemsize
    _overwrite(path, dataset, index, 0, struct.pack('>Q', 1000 * nbytes))


def _overwrite(path, dataset, index, at, data: bytes):
    with h5py.File(path, 'r') as h5:
        info = h5[dataset].id.get_chunk_info_by_coord(index)
    raw = bytearray(path.read_bytes())
    start = info.byte_offset + at
    raw[start:start + len(data)] = data
    path.write_bytes(bytes(raw))


def corrupt_payload(path, dataset, index, seed=0):
    """Flip bytes inside the compressed data (not the headers) of the chunk
    at ``index``."""
    with h5py.File(path, 'r') as h5:
        info = h5[dataset].id.get_chunk_info_by_coord(index)
    raw = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for i in rng.integers(info.byte_offset + 20,
                          info.byte_offset + info.size, 24):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
