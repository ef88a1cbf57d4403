"""HDF5 plumbing shared by the format readers: opening read-only, walking
datasets through external links, and naming where a dataset lives (the
file, the dataset and, for an external link, the linked data file)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle/LZ4 filters)


def split_path(path) -> tuple[Path, str | None]:
    """``'file.h5::/a/b'`` -> (Path('file.h5'), '/a/b')."""
    text = os.fspath(path)
    if '::' in text:
        text, inner = text.rsplit('::', 1)
        return Path(text), '/' + inner.lstrip('/')
    return Path(text), None


def open_hdf5(file: Path) -> h5py.File:
    """Open ``file`` read-only, or raise ValueError saying why not."""
    if not file.is_file():
        raise ValueError('no such file')
    if not h5py.is_hdf5(file):
        raise ValueError('not an HDF5 file (no HDF5 signature)')
    try:
        return h5py.File(file, 'r')
    except OSError as error:
        raise ValueError(
            f'cannot open the HDF5 file (truncated or corrupt?): '
            f'{reason(error)}'
        ) from None


def reason(error: BaseException) -> str:
    """h5py's message without its quotes and 'synchronously' jargon; a
    truncated file says how many bytes it has of how many."""
    text = str(error).strip('"\'')
    sizes = re.search(r'truncated file: eof = (\d+).*stored_eof = (\d+)', text)
    if sizes:
        return (f'the file is truncated: {sizes[1]} of {sizes[2]} bytes '
                'are there')
    return text.replace('synchronously ', '')


def external_file(h5: h5py.File, link: h5py.ExternalLink) -> Path:
    """Where HDF5 looks for an external link's file: relative to the file
    that holds the link."""
    target = Path(link.filename)
    return target if target.is_absolute() else (
        Path(h5.filename).parent / target)


def where(h5: h5py.File, name: str) -> str:
    """'file: dataset /a/b', plus the data file of an external link."""
    text = f'{h5.filename}: dataset {name}'
    link = h5.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        text += (f' (external link to {link.path} in data file '
                 f'{external_file(h5, link)})')
    return text


def open_item(h5: h5py.File, name: str):
    """``h5[name]``, or ValueError naming the dataset and, for an external
    link, its data file (missing, truncated or corrupt)."""
    link = h5.get(name, getlink=True)
    if link is None:
        raise ValueError(f'dataset {name}: there is no such path in the file')
    if isinstance(link, h5py.ExternalLink):
        target = external_file(h5, link)
        if not target.is_file():
            raise ValueError(f'dataset {name}: its data file '
                             f'{link.filename!r} is missing (looked for '
                             f'{target})')
        try:
            return h5[name]
        except (KeyError, OSError) as error:
            raise ValueError(
                f'dataset {name}: cannot open {link.path} in its data file '
                f'{target} ({reason(error)})'
            ) from None
    try:
        return h5[name]
    except (KeyError, OSError) as error:
        raise ValueError(f'dataset {name}: cannot open it ({reason(error)})'
                         ) from None


def dataset_at(h5: h5py.File, inner: str) -> h5py.Dataset:
    """The dataset at ``inner``, or ValueError saying what is there."""
    item = open_item(h5, inner)
    if isinstance(item, h5py.Dataset):
        return item
    raise ValueError(f'dataset {inner}: this is a group, not a dataset')


def datasets(group: h5py.Group):
    """(path, dataset) for every dataset below ``group`` (following hard
    and external links; the path is the one in ``group``'s file), and
    (path, :class:`BrokenLink`) for each external link whose file is
    missing or unreadable. Soft links are not followed (they would repeat
    datasets)."""
    for key in group:
        link = group.get(key, getlink=True)
        path = f'{group.name.rstrip("/")}/{key}'
        if isinstance(link, h5py.SoftLink):
            continue
        if isinstance(link, h5py.ExternalLink):
            if not external_file(group.file, link).is_file():
                yield path, BrokenLink(path, link.filename, link.path)
                continue
            try:
                item = open_item(group.file, path)
            except ValueError as error:
                yield path, BrokenLink(path, link.filename, link.path,
                                       str(error))
                continue
        else:
            item = group.get(key)
        if isinstance(item, h5py.Dataset):
            yield path, item
        elif isinstance(item, h5py.Group):
            yield from _below(item, path)


def _below(group: h5py.Group, path: str):
    """:func:`datasets` of a group reached at ``path`` (which differs from
    ``group.name`` when an external link led there)."""
    for inner, item in datasets(group):
        yield path + inner[len(group.name.rstrip('/')):], item


class BrokenLink:
    """An external link whose target file is missing or unreadable."""

    def __init__(self, name: str, filename: str, target: str,
                 problem: str = ''):
        self.name, self.filename, self.target = name, filename, target
        self.problem = problem

    def __str__(self):
        return self.problem or (
            f'{self.name} is an external link to {self.target} in '
            f'{self.filename!r}, which does not exist'
        )
