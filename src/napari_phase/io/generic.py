"""Generic HDF5: the largest 4D numeric dataset is the datacube.

With several 4D datasets the choice is reported (a warning, and
``DataCube.source``); ``file::/path`` picks another one.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np

from .read import Found


def find_4d(h5: h5py.File, inner: str | None) -> Found:
    """The datacube dataset: ``inner``, or the largest 4D numeric one."""
    if inner is not None:
        dset = dataset_at(h5, inner)
        return Found([dset], dset.name)
    dset = _largest(h5, ndim=4, what='4D datacube')
    return Found([dset], dset.name)


def find_2d(h5: h5py.File, inner: str | None) -> h5py.Dataset:
    """A vacuum probe dataset: ``inner``, or the largest 2D numeric one."""
    if inner is not None:
        return dataset_at(h5, inner)
    return _largest(h5, ndim=2, what='2D probe image')


def candidates(h5: h5py.File, ndim: int = 4) -> list[h5py.Dataset]:
    """Numeric datasets with ``ndim`` axes, none empty."""
    return [
        d for d in datasets(h5)
        if isinstance(d, h5py.Dataset) and d.ndim == ndim
        and d.dtype.kind in 'uif' and d.size > 0
    ]


def datasets(group: h5py.Group):
    """Every dataset below ``group`` (following hard and external links),
    and a :class:`BrokenLink` for each external link whose file is
    missing. Soft links are not followed (they would repeat datasets)."""
    for key in group:
        link = group.get(key, getlink=True)
        path = f'{group.name.rstrip("/")}/{key}'
        if isinstance(link, h5py.SoftLink):
            continue
        if isinstance(link, h5py.ExternalLink):
            target = external_file(group.file, link)
            if not target.is_file():
                yield BrokenLink(path, link.filename, link.path)
                continue
        item = group.get(key)
        if isinstance(item, h5py.Dataset):
            yield item
        elif isinstance(item, h5py.Group):
            yield from datasets(item)


class BrokenLink:
    """An external link whose target file does not exist."""

    def __init__(self, name: str, filename: str, target: str):
        self.name, self.filename, self.target = name, filename, target

    def __str__(self):
        return (
            f'{self.name} is an external link to {self.target} in '
            f'{self.filename!r}, which does not exist'
        )


def external_file(h5: h5py.File, link: h5py.ExternalLink) -> Path:
    """Where HDF5 looks for an external link's file: relative to the file
    that holds the link."""
    target = Path(link.filename)
    return target if target.is_absolute() else (
        Path(h5.filename).parent / target)


def dataset_at(h5: h5py.File, inner: str) -> h5py.Dataset:
    """The dataset at ``inner``, or ValueError saying what is there."""
    link = h5.get(inner, getlink=True)
    if link is None:
        raise ValueError(f'dataset {inner}: there is no such path in the file')
    broken = isinstance(link, h5py.ExternalLink) and not external_file(
        h5, link).is_file()
    if broken:
        raise ValueError(str(BrokenLink(inner, link.filename, link.path)))
    item = h5.get(inner)
    if not isinstance(item, h5py.Dataset):
        raise ValueError(f'dataset {inner}: this is a group, not a dataset')
    return item


def _largest(h5: h5py.File, ndim: int, what: str) -> h5py.Dataset:
    found = [d for d in datasets(h5) if isinstance(d, h5py.Dataset)]
    broken = [str(d) for d in datasets(h5) if isinstance(d, BrokenLink)]
    good = candidates(h5, ndim)
    if not good:
        raise ValueError(_nothing_found(found, broken, ndim, what))
    chosen = max(good, key=lambda d: d.size * d.dtype.itemsize)
    if len(good) > 1 or broken:
        others = ', '.join(_summary(d) for d in good if d != chosen)
        warnings.warn(
            f'{h5.filename}: reading {_summary(chosen)} as the {what} '
            f'(the largest; others: {others or "none"}'
            + (f'; broken links: {"; ".join(broken)}' if broken else '')
            + '). Choose another with "file::/dataset".',
            UserWarning,
            stacklevel=4,
        )
    return chosen


def _nothing_found(found, broken, ndim: int, what: str) -> str:
    """Why no dataset fits: the closest candidates and broken links."""
    same_rank = [d for d in found if d.ndim == ndim]
    if same_rank:
        d = same_rank[0]
        problem = (
            f'an empty axis (shape {d.shape})' if d.size == 0
            else f'dtype {d.dtype}, not a real number type'
        )
        return f'dataset {d.name}: {ndim}D but has {problem}'
    seen = ', '.join(_summary(d) for d in found[:6]) or 'no datasets'
    text = f'no {ndim}D numeric dataset ({what}) in the file; found: {seen}'
    if broken:
        text += '; broken links: ' + '; '.join(broken)
    return text


def _summary(d: h5py.Dataset) -> str:
    return f'{d.name} ({d.ndim}D {d.shape} {np.dtype(d.dtype)})'
