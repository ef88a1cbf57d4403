"""Automatic aberration refinement on a prepared quick phase: the
aberrations that maximise its ``score`` (for SSB/OBF the part of the
data's power the weak-phase model explains, i.e. the least-squares fit;
for the parallax quick phase the aligned image's contrast power).

C1 first, by a grid over ``C1 ± span`` and a bounded scalar search around
the best grid point (the score is smooth but its range is unknown); then,
if asked, C1 with the astigmatism, coma or trefoil together by
Nelder–Mead on their Cartesian components ``C·(cos nφ, sin nφ)``, which
have no wrap-around. Every evaluation costs one update of the prepared
phase (tens of ms), nothing is read again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

#: Points of the C1 grid.
GRID_POINTS = 21
#: Smallest default half-width (Å) of the C1 search.
MIN_SPAN = 100.0
FITTABLE = ('C10', 'C12', 'C21', 'C23')


@dataclass
class Refinement:
    """What :func:`refine_aberrations` found."""

    aberrations: dict  # polar, C10 = C1 (Å, degrees)
    score: float
    start_score: float
    evaluations: int
    stopped: bool = False  # ``stop()`` ended the search early


class _Stopped(Exception):
    """``stop()`` turned true during the search."""


def refine_aberrations(
    prepared,
    fit: tuple[str, ...] = ('C10',),
    aberrations: dict | None = None,
    rotation_deg: float | None = None,
    transpose: bool | None = None,
    span: float | None = None,
    progress: Callable[[float], None] | None = None,
    stop: Callable[[], bool] | None = None,
    **score_options,
) -> Refinement:
    """Aberrations of ``prepared`` (a DirectPhase or ParallaxPhase) that
    maximise ``prepared.score``, starting from ``aberrations`` (polar,
    C10 = C1; default the calibration's), at the given rotation and
    transpose. ``fit``: 'C10' and any of 'C12', 'C21', 'C23'; ``span``
    (Å): half-width of the C1 grid (default max(|C1|, 100 Å));
    ``stop()``, asked before every evaluation after the first, ends the
    search when true with the best aberrations evaluated so far
    (``stopped``); ``score_options`` go to the score (e.g.
    method='obf')."""
    unknown = set(fit) - set(FITTABLE)
    if unknown or 'C10' not in fit:
        raise ValueError(
            f'fit must contain C10 and only {", ".join(FITTABLE)}; got {fit}'
        )
    start, rotation, transpose = prepared.settings(
        aberrations, rotation_deg, transpose
    )
    report = progress or (lambda fraction: None)
    calls, best = [0], [-np.inf, start]

    def score(values: dict) -> float:
        if calls[0] and stop is not None and stop():
            raise _Stopped
        calls[0] += 1
        value = prepared.score(values, rotation, transpose, **score_options)
        if value > best[0]:
            best[:] = [value, dict(values)]
        return value

    start_score = score(start)
    try:
        found = _search(start, start_score, fit, score, span, report)
        found_score = score(found)
    except _Stopped:
        return Refinement(best[1], best[0], start_score, calls[0], True)
    report(1.0)
    return Refinement(found, found_score, start_score, calls[0])


def _search(start: dict, start_score, fit, score, span, report) -> dict:
    """C1 on a grid, then a bounded line search, then (if ``fit`` has
    more) Nelder–Mead over all of them; ``report`` gets fractions."""
    c1 = start['C10']
    half_width = span or max(abs(c1), MIN_SPAN)
    grid = np.linspace(c1 - half_width, c1 + half_width, GRID_POINTS)
    scores = []
    for i, value in enumerate(grid):
        scores.append(score(start | {'C10': value}))
        report(0.5 * (i + 1) / GRID_POINTS)
    best = int(np.argmax(scores))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    line = minimize_scalar(
        lambda value: -score(start | {'C10': value}),
        bounds=(low, high),
        method='bounded',
        options={'xatol': 1e-3 * half_width},
    )
    found = start | {'C10': float(line.x)}
    report(0.75)
    others = [key for key in fit if key != 'C10']
    if others:
        found = _refine_together(found, others, score, half_width,
                                 1e-6 * abs(start_score))
    return found


def _refine_together(start: dict, keys, score, scale, tolerance) -> dict:
    """Nelder–Mead over C1 and the Cartesian components of ``keys``."""
    def unpack(x) -> dict:
        values = dict(start) | {'C10': float(x[0])}
        for i, key in enumerate(keys):
            n = int(key[2])
            a, b = x[1 + 2 * i : 3 + 2 * i]
            values[key] = float(np.hypot(a, b))
            values[f'phi{key[1:]}'] = float(np.rad2deg(np.arctan2(b, a)) / n)
        return values

    x0 = [start['C10']]
    for key in keys:
        n = int(key[2])
        c = start.get(key, 0.0)
        angle = np.deg2rad(start.get(f'phi{key[1:]}', 0.0)) * n
        x0 += [c * np.cos(angle), c * np.sin(angle)]
    step = 0.05 * scale
    simplex = np.vstack([x0, np.asarray(x0) + step * np.eye(len(x0))])
    best = minimize(
        lambda x: -score(unpack(x)),
        x0,
        method='Nelder-Mead',
        options={'initial_simplex': simplex, 'xatol': 1e-3 * scale,
                 'fatol': tolerance, 'maxfev': 400},
    )
    return unpack(best.x)
