"""Scan (R) ↔ detector (Q) frame mapping: one rotation and one transpose.

py4DSTEM 0.14.18 convention (docs/conventions.md), with vectors stacked
along axis 0 as (x, y) = (array axis 0, array axis 1):

- detector → scan: ``v_R = R(θ) · swap?(v_Q)``  (DPC's CoM rotation);
- scan → detector: ``v_Q = swap?(R(−θ) · v_R)``  (ptychography positions),

where ``R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]]``. The two are inverses.
"""

from __future__ import annotations

import numpy as np


def rotation_matrix(theta_deg: float) -> np.ndarray:
    """R(θ), counter-clockwise in the (x, y) plane, θ in degrees."""
    t = np.deg2rad(theta_deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def detector_to_scan(v, rotation_deg: float, transpose: bool):
    """Map vectors ``v`` (2, ...) from the detector to the scan frame."""
    vx, vy = (v[1], v[0]) if transpose else (v[0], v[1])
    (a, b), (c, d) = rotation_matrix(rotation_deg)
    return np.stack([a * vx + b * vy, c * vx + d * vy])


def scan_to_detector(v, rotation_deg: float, transpose: bool):
    """Map vectors ``v`` (2, ...) from the scan to the detector frame."""
    (a, b), (c, d) = rotation_matrix(-rotation_deg)
    x, y = a * v[0] + b * v[1], c * v[0] + d * v[1]
    return np.stack([y, x] if transpose else [x, y])


def wrap_degrees(angle: float) -> float:
    """An angle in degrees wrapped into (−180, 180]."""
    wrapped = (angle + 180.0) % 360.0 - 180.0
    return 180.0 if wrapped == -180.0 else wrapped


def wrap_half_turn(angle: float) -> float:
    """An angle in degrees modulo 180°, in (−90, 90]."""
    wrapped = (angle + 90.0) % 180.0 - 90.0
    return 90.0 if wrapped == -90.0 else float(wrapped)
