"""Detector formats through rosettasciio, the optional extra ``formats``
(``pip install napari-phase[formats]``).

rosettasciio (GPL-3) is imported only here, only when it is installed and
a file of these formats is read; napari-phase itself stays BSD-3. Every
reader is asked for lazy data (memory-mapped or dask), so large scans
stay on disk. Its result (a dict: ``data``, ``axes`` with ``scale``,
``units`` and ``navigate``, ``metadata``) is mapped to a datacube: the two
navigation axes are (Rx, Ry) (slow, fast), the two signal axes (Qx, Qy);
the scan step is the fast axis' scale as Å, the detector pixel the signal
axes' scale as mrad (from mrad/rad, or from 1/nm, 1/Å with the beam
energy); the energy is ``Acquisition_instrument.TEM.beam_energy`` (keV)
and the semiangle ``convergence_angle`` (mrad). EMPAD XML files also
give ``source.get_voltage`` (V) and ``calibrated_diffraction_angle``
(rad per pixel).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import xml.etree.ElementTree as ET
from pathlib import Path

from ..compute.calibration import Calibration
from . import units
from .found import Found
from .generic import MIN_PATTERN, needs_scan_shape

#: File extension -> rosettasciio reader module.
READERS = {
    '.mib': 'quantumdetector', '.hdr': 'quantumdetector',
    '.xml': 'empad', '.raw': 'empad',
    '.mrc': 'mrc',
    '.dm3': 'digitalmicrograph', '.dm4': 'digitalmicrograph',
    '.ser': 'tia', '.emi': 'tia',
    '.blo': 'blockfile',
}
#: What to tell a user without the extra.
INSTALL = 'pip install "napari-phase[formats]"'


def available() -> bool:
    """True when rosettasciio is installed."""
    return importlib.util.find_spec('rsciio') is not None


def handles(file) -> bool:
    """True for a file of a format read through rosettasciio."""
    return Path(file).suffix.lower() in READERS


def can_read(file) -> bool:
    """Cheap check for the napari reader (never raises): rosettasciio is
    installed and ``file`` looks like 4D-STEM data of its format."""
    try:
        file = Path(file)
        return available() and handles(file) and _looks_right(file)
    except Exception:  # noqa: BLE001  (anything unreadable is not ours)
        return False


def find_datacube(file: Path, scan_shape=None) -> Found:
    """The lazy data of ``file`` as (Rx, Ry, Qx, Qy) and its calibration;
    ``scan_shape`` reshapes a flat list of frames (or overrides the scan
    shape the reader found)."""
    if not file.is_file():
        raise ValueError('no such file')
    reader = _reader(file)
    target = _data_file(file)
    kwargs = {'lazy': True}
    if scan_shape and 'navigation_shape' in inspect.signature(
            reader.file_reader).parameters:
        kwargs['navigation_shape'] = tuple(scan_shape)[::-1]  # (x, y)
    try:
        signals = reader.file_reader(str(target), **kwargs)
    except Exception as error:  # noqa: BLE001  (readers raise any type)
        raise ValueError(
            f'rosettasciio ({reader.__name__}) cannot read {target.name}: '
            f'{type(error).__name__}: {error}'
        ) from None
    signal = _datacube_signal(signals, target)
    data, nav, sig = _cube_axes(signal)
    name = target.name
    calibration = _calibration(signal, nav, sig)
    if scan_shape is not None and nav_shape(nav) != tuple(scan_shape):
        data = data.reshape(-1, *data.shape[-2:])
        return Found([data], name, calibration, tuple(scan_shape))
    if len(nav) == 1:
        if scan_shape is None:
            raise ValueError(needs_scan_shape(name, data.shape))
        return Found([data], name, calibration, tuple(scan_shape))
    return Found([data], name, calibration)


def nav_shape(nav) -> tuple[int, ...]:
    return tuple(int(a['size']) for a in nav)


def _reader(file: Path):
    if not available():
        raise ValueError(
            f'{file.suffix} files are read through rosettasciio, which is '
            f'not installed: {INSTALL}'
        )
    return importlib.import_module(f'rsciio.{READERS[file.suffix.lower()]}')


def _data_file(file: Path) -> Path:
    """The file rosettasciio reads: a Merlin .hdr's .mib, an EMPAD .raw's
    XML."""
    suffix = file.suffix.lower()
    if suffix == '.hdr':
        mib = file.with_suffix('.mib')
        if not mib.is_file():
            raise ValueError(f'no Merlin data file {mib.name} beside it')
        return mib
    if suffix == '.raw':
        for xml in sorted(file.parent.glob('*.xml')):
            if _empad_raw(xml) == file.name:
                return xml
        raise ValueError('no EMPAD XML file beside it names this .raw file')
    if suffix == '.xml' and _empad_raw(file) is None:
        raise ValueError('not an EMPAD XML file (no raw_file element)')
    return file


def _looks_right(file: Path) -> bool:
    suffix = file.suffix.lower()
    if suffix in ('.mib', '.hdr'):
        with open(_data_file(file), 'rb') as stream:
            return stream.read(4) == b'MQ1,'
    if suffix in ('.xml', '.raw'):
        _data_file(file)
        return True
    if suffix == '.blo':  # 'IMGBLO' and the magic 0x0102
        with open(file, 'rb') as stream:
            return stream.read(8) == b'IMGBLO\x02\x01'
    signals = _reader(file).file_reader(str(file), lazy=True)
    return _datacube_signal(signals, file, quiet=True) is not None


def _empad_raw(xml: Path) -> str | None:
    """The raw file an EMPAD XML names, or None for other XML."""
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError):
        return None
    raw = root.find('raw_file')
    return None if raw is None else raw.get('filename')


def _datacube_signal(signals, file: Path, quiet: bool = False):
    """The signal that holds diffraction patterns (two signal axes of
    MIN_PATTERN pixels or more and a scan), the largest first."""
    good = [
        s for s in signals
        if len(_axes(s)[1]) == 2 and len(_axes(s)[0]) >= 1
        and min(int(a['size']) for a in _axes(s)[1]) >= MIN_PATTERN
    ]
    if good:
        return max(good, key=lambda s: math.prod(s['data'].shape))
    if quiet:
        return None
    shapes = ', '.join(str(tuple(s['data'].shape)) for s in signals)
    raise ValueError(
        f'{file.name} holds no scan of diffraction patterns (signals of '
        f'shape {shapes or "none"})'
    )


def _axes(signal):
    """(navigation axes, signal axes), each in array order."""
    axes = sorted(signal['axes'],
                  key=lambda a: a.get('index_in_array', 0))
    nav = [a for a in axes if a.get('navigate', True)]
    sig = [a for a in axes if not a.get('navigate', True)]
    return nav, sig


def _cube_axes(signal):
    """(data with at most two navigation axes, nav axes, signal axes):
    singleton navigation axes are dropped."""
    data = signal['data']
    nav, sig = _axes(signal)
    singletons = [i for i, a in enumerate(nav) if int(a['size']) == 1]
    while len(nav) > 2 and singletons:
        i = singletons.pop()
        data = data.squeeze(axis=i)
        del nav[i]
    if len(nav) > 2:
        raise ValueError(f'{len(nav)} scan axes {nav_shape(nav)}: not a 2D '
                         'scan of diffraction patterns')
    return data, nav, sig


def _calibration(signal, nav, sig) -> Calibration:
    tem = _mapped(signal, 'Acquisition_instrument.TEM')
    empad = _empad_measurements(signal)
    energy = _positive(tem.get('beam_energy'))
    energy = energy * 1e3 if energy else _positive(
        empad.get('source', {}).get('get_voltage'))
    angle = _positive(empad.get('calibrated_diffraction_angle'))
    q_pixel = angle * 1e3 if angle else units.angle_mrad(
        sig[-1].get('scale'), sig[-1].get('units'), energy)
    fast = nav[-1]
    return Calibration(
        scan_step=units.length_A(fast.get('scale'), fast.get('units')),
        q_pixel_mrad=q_pixel,
        energy=energy,
        semiangle=_positive(tem.get('convergence_angle')),
    )


def _mapped(signal, path: str) -> dict:
    """``metadata[path]`` with the reader's ``mapping`` applied (what
    HyperSpy does on load: original-metadata entries copied, converted,
    to metadata entries; e.g. a .blo header's beam energy)."""
    found = _get(signal.get('metadata') or {}, path)
    found = dict(found) if isinstance(found, dict) else {}
    prefix = path + '.'
    for source, (target, convert) in (signal.get('mapping') or {}).items():
        value = _get(signal.get('original_metadata') or {}, source)
        if target.startswith(prefix) and value is not None:
            key = target[len(prefix):]
            found.setdefault(key, convert(value) if convert else value)
    return found


def _get(tree, path: str):
    for key in path.split('.'):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _empad_measurements(signal) -> dict:
    """``root.iom_measurements`` of an EMPAD XML (dotted tags nested:
    ``source.get_voltage`` is ``['source']['get_voltage']``), else {}."""
    found = signal.get('original_metadata', {}) or {}
    for key in ('root', 'iom_measurements'):
        found = found.get(key, {}) if isinstance(found, dict) else {}
    return found if isinstance(found, dict) else {}


def _positive(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None
