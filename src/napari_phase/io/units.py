"""Axis units as files write them, converted to ours (Å, mrad).

Files spell units many ways: py4DSTEM ``'A'``, ``'nm'``, ``'A^-1'``;
EMD 0.x (Prismatic, fpd) ``'[n_m]'``, ``'[Å^-1]'``, ``'[m_rad]'``;
rosettasciio ``'nm'``, ``'µm'``, ``'1 / nm'``, ``'mrad'``. A reciprocal
length q (spatial frequency 1/d, as py4DSTEM, Prismatic and HyperSpy use
it) becomes an angle θ = λ·q, which needs the beam energy.
"""

from __future__ import annotations

import re

from ..compute.calibration import electron_wavelength

#: Length units, in Å.
LENGTH_A = {
    'a': 1.0, 'å': 1.0, 'ang': 1.0, 'angstrom': 1.0, 'nm': 10.0,
    'pm': 0.01, 'um': 1e4, 'µm': 1e4, 'μm': 1e4, 'mm': 1e7, 'cm': 1e8,
    'm': 1e10,
}
#: Angle units, in mrad.
ANGLE_MRAD = {'mrad': 1.0, 'rad': 1e3, 'urad': 1e-3, 'µrad': 1e-3,
              'μrad': 1e-3}
#: Spellings of "no physical unit".
PIXELS = {'', 'pixels', 'pixel', 'pix', 'px', '1', 'none', '<undefined>',
          'undefined', 'unknown', 'counts'}
_RECIPROCAL = re.compile(r'^(?:1/(?P<a>[^/]+)|(?P<b>[^/^]+)\^?-1)$')


def normalize(units) -> str:
    """Lower case, no brackets, spaces or EMD 0.x underscores:
    ``'[n_m^-1]'`` -> ``'nm^-1'``, ``'1 / nm'`` -> ``'1/nm'``."""
    if units is None:
        return ''
    if isinstance(units, bytes):
        units = units.decode('utf-8', 'replace')
    text = str(units).strip().strip('[]').replace('_', '').replace(' ', '')
    return text.lower()


def kind(units) -> str | None:
    """'length', 'reciprocal', 'angle', 'pixels' or None (not understood)."""
    text = normalize(units)
    if text in PIXELS:
        return 'pixels'
    if text in LENGTH_A:
        return 'length'
    if text in ANGLE_MRAD:
        return 'angle'
    match = _RECIPROCAL.match(text)
    if match and (match['a'] or match['b']) in LENGTH_A:
        return 'reciprocal'
    return None


def length_A(size, units) -> float | None:
    """``size`` in ``units`` as Å, or None when the units are no length."""
    text = normalize(units)
    if size is None or text not in LENGTH_A:
        return None
    return float(size) * LENGTH_A[text]


def angle_mrad(size, units, energy: float | None) -> float | None:
    """``size`` in ``units`` (an angle, or a reciprocal length with the
    beam ``energy`` in eV) as mrad; None when it cannot be converted."""
    if size is None:
        return None
    text = normalize(units)
    if text in ANGLE_MRAD:
        return float(size) * ANGLE_MRAD[text]
    if kind(text) != 'reciprocal' or not energy:
        return None
    match = _RECIPROCAL.match(text)
    per_A = float(size) / LENGTH_A[match['a'] or match['b']]
    return per_A * electron_wavelength(energy) * 1e3
