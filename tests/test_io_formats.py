"""Detector formats through rosettasciio (the ``formats`` extra, which the
``test`` extra installs): Merlin .mib/.hdr and EMPAD .xml/.raw written as
those instruments write them (layouts.py), a NanoMegas .blo written by
rosettasciio's own writer. Read lazily, they give the same virtual
images and DPC phase as the simulated scan they hold."""

import numpy as np
import pytest
from layouts import sha256, write_empad, write_merlin

from napari_phase import DataCube, dpc, read_datacube, simulate
from napari_phase.compute.calibration import electron_wavelength
from napari_phase.compute.detectors import circle_mask, virtual_images
from napari_phase.io import formats
from napari_phase.io.napari_reader import get_formats_reader
from napari_phase.io.read import ReadError


@pytest.fixture(scope='module')
def sim():
    """A 10×12 scan of integer counts (as a counting detector gives)."""
    sim = simulate(scan_shape=(10, 12), detector_shape=(48, 48), seed=3)
    assert np.all(sim.datacube.data == np.round(sim.datacube.data))
    return sim


def same_science(cube, reference):
    """Virtual BF image and DPC phase of ``cube`` equal those of the
    in-memory ``reference`` cube."""
    shape = reference.detector_shape
    masks = [circle_mask(shape, (shape[0] / 2, shape[1] / 2), shape[0] / 5)]
    np.testing.assert_allclose(virtual_images(cube, masks),
                               virtual_images(reference, masks), rtol=1e-6)
    ours = dpc(cube, rotation_deg=-15.0, transpose=False,
               flip_half_turn=False)
    theirs = dpc(reference, rotation_deg=-15.0, transpose=False,
                 flip_half_turn=False)
    np.testing.assert_allclose(ours.phase, theirs.phase, atol=1e-5)


def test_merlin_mib_read_lazily_gives_the_same_dpc(tmp_path, sim):
    counts = sim.datacube.data.astype(np.uint16)
    frames = counts.reshape(-1, *counts.shape[2:])
    mib = write_merlin(tmp_path, frames, per_line=12)
    before = {p: sha256(p) for p in tmp_path.iterdir()}
    with pytest.warns(UserWarning, match='does not give the scan step'):
        cube = read_datacube(mib, lazy=True)
    assert cube.is_lazy and cube.source == str(mib)
    assert cube.scan_shape == (10, 12) and cube.detector_shape == (48, 48)
    np.testing.assert_array_equal(cube.data.compute(), counts)
    # a .mib holds no calibration: the user gives it (widget or Python)
    cube.calibration = sim.datacube.calibration.copy()
    reference = DataCube(counts.astype(np.float32),
                         sim.datacube.calibration.copy())
    same_science(cube, reference)
    hdr = read_datacube(tmp_path / 'scan.hdr', lazy=False)
    np.testing.assert_array_equal(hdr.data, counts)
    assert get_formats_reader(str(mib)) is not None
    assert get_formats_reader(str(tmp_path / 'scan.hdr')) is not None
    assert {p: sha256(p) for p in tmp_path.iterdir()} == before


def test_merlin_without_hdr_needs_the_scan_shape(tmp_path, sim):
    counts = sim.datacube.data.astype(np.uint16)
    mib = write_merlin(tmp_path, counts.reshape(-1, 48, 48), per_line=12)
    (tmp_path / 'scan.hdr').unlink()
    with pytest.raises(ReadError, match=r'scan\.mib: dataset scan\.mib: 120 '
                       r'frames of \(48, 48\) pixels, and the file does not '
                       r'say the scan shape'):
        read_datacube(mib)
    cube = read_datacube(mib, scan_shape=(10, 12), lazy=True)
    np.testing.assert_array_equal(cube.data.compute(), counts)


def test_empad_read_lazily_with_its_calibration(tmp_path, sim):
    """The EMPAD XML gives the scan step, the voltage and the diffraction
    angle: DPC runs on the file as it is."""
    sim = simulate(scan_shape=(6, 8), detector_shape=(128, 128), seed=4)
    data = sim.datacube.data
    cal = sim.datacube.calibration
    xml = write_empad(tmp_path, data, step_nm=cal.scan_step / 10,
                      voltage_v=cal.energy,
                      angle_rad=cal.q_pixel_mrad * 1e-3, q_per_nm=0.5)
    raw = tmp_path / 'scan_x8_y6.raw'
    before = {p: sha256(p) for p in tmp_path.iterdir()}
    with pytest.warns(UserWarning, match='convergence semiangle'):
        cube = read_datacube(xml, lazy=True)
    assert cube.is_lazy
    np.testing.assert_array_equal(cube.data.compute(), data)
    assert cube.calibration.scan_step == pytest.approx(cal.scan_step)
    assert cube.calibration.energy == pytest.approx(cal.energy)
    assert cube.calibration.q_pixel_mrad == pytest.approx(cal.q_pixel_mrad)
    cube.calibration.semiangle = cal.semiangle
    same_science(cube, sim.datacube)
    from_raw = read_datacube(raw, lazy=False)
    np.testing.assert_array_equal(from_raw.data, data)
    for path in (xml, raw):
        assert get_formats_reader(str(path)) is not None
    assert {p: sha256(p) for p in tmp_path.iterdir()} == before


def test_empad_detector_pixel_from_inverse_length(tmp_path):
    """Without the diffraction angle, 1/nm axes and the voltage give mrad:
    θ = λ·q."""
    data = np.ones((2, 3, 128, 128), np.float32)
    xml = write_empad(tmp_path, data, step_nm=1.0, voltage_v=200e3,
                      angle_rad=None, q_per_nm=0.5)
    cal = read_datacube(xml).calibration
    assert cal.q_pixel_mrad == pytest.approx(
        0.05 * electron_wavelength(200e3) * 1e3)
    assert cal.scan_step == pytest.approx(10.0)


def test_blockfile_written_by_rosettasciio(tmp_path):
    from rsciio.blockfile import file_reader, file_writer

    rng = np.random.default_rng(7)
    data = rng.integers(0, 200, size=(3, 4, 32, 32)).astype(np.uint8)
    axes = [
        {'name': 'y', 'size': 3, 'scale': 0.7, 'offset': 0, 'units': 'nm',
         'navigate': True},
        {'name': 'x', 'size': 4, 'scale': 0.7, 'offset': 0, 'units': 'nm',
         'navigate': True},
        {'name': 'dy', 'size': 32, 'scale': 0.01, 'offset': 0,
         'units': 'cm', 'navigate': False},
        {'name': 'dx', 'size': 32, 'scale': 0.01, 'offset': 0,
         'units': 'cm', 'navigate': False},
    ]
    path = tmp_path / 'scan.blo'
    signal = {'data': data, 'axes': axes, 'metadata': {'General': {}},
              'original_metadata': {}, 'attributes': {'_lazy': False}}
    navigator = data.sum(axis=(2, 3)).astype(np.uint8)
    file_writer(str(path), signal, navigator=navigator,
                show_progressbar=False)
    # the header as written, with the beam energy (V) the NanoMegas
    # software records
    header = file_reader(str(path))[0]['original_metadata']
    header['blockfile_header']['Beam_energy'] = 200_000
    file_writer(str(path), signal | {'original_metadata': header},
                navigator=navigator, show_progressbar=False)
    cube = read_datacube(path)
    np.testing.assert_array_equal(cube.data, data)
    assert cube.calibration.scan_step == pytest.approx(7.0)
    assert cube.calibration.energy == pytest.approx(200e3)
    assert cube.calibration.q_pixel_mrad is None  # 'cm' is no angle
    assert get_formats_reader(str(path)) is not None


def test_formats_reader_declines_what_is_not_4dstem(tmp_path, monkeypatch):
    notes = tmp_path / 'notes.xml'
    notes.write_text('<?xml version="1.0"?><notes>hello</notes>')
    text = tmp_path / 'fake.mib'
    text.write_text('not a Merlin file')
    lone = tmp_path / 'lone.raw'
    lone.write_bytes(bytes(100))
    for path in (notes, text, lone, tmp_path / 'absent.mib', tmp_path):
        assert get_formats_reader(str(path)) is None
    with pytest.raises(ReadError, match='not an EMPAD XML file'):
        read_datacube(notes)
    mib = write_merlin(tmp_path, np.ones((4, 16, 16), np.uint16), 2)
    monkeypatch.setattr(formats, 'available', lambda: False)
    assert get_formats_reader(str(mib)) is None
    with pytest.raises(ReadError, match=r'\.mib files are read through '
                       r'rosettasciio, which is not installed: pip install '
                       r'"napari-phase\[formats\]"'):
        read_datacube(mib)


def test_napari_opens_a_merlin_file(make_napari_viewer, tmp_path, sim):
    """napari's File > Open finds the formats reader through the manifest."""
    from napari_phase.io.layers import META

    counts = sim.datacube.data.astype(np.uint16)
    mib = write_merlin(tmp_path, counts.reshape(-1, 48, 48), per_line=12)
    viewer = make_napari_viewer()
    with pytest.warns(UserWarning, match='does not give the scan step'):
        layer, = viewer.open(mib, plugin='napari-phase')
    cube = layer.metadata[META]['datacube']
    assert layer.name == 'scan' and cube.scan_shape == (10, 12)
    np.testing.assert_array_equal(np.asarray(cube.data), counts)
