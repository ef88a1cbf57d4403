"""Read HDF5 datasets so that a damaged compressed chunk is an error, never
a crash of the process.

The HDF5 filters DECTRIS detectors use trust what they decode: the
bitshuffle filter (32008) follows the block sizes written in the chunk
(a damaged one makes it read past the chunk: a segfault), and the LZ4
filter (32004) decodes with ``LZ4_decompress_fast``, which trusts the
compressed stream. So before HDF5 decodes such a chunk, its raw bytes
(``read_direct_chunk``) are checked once: the header must give the
chunk's size, every block must lie inside the chunk, and each LZ4 block
must decode with the bounds-checked decoder (python-lz4). Bitshuffle
blocks are then decoded by HDF5's filter, whose LZ4 step is the
bounds-checked ``LZ4_decompress_safe``. A chunk is checked once per
opened dataset. An eager read pass from the page cache took 1.3× the
plain h5py read for bitshuffle-LZ4 and 1.8× for LZ4 (whose check decodes
every block once more) on 2 busy cores (benchmarks/io_read_pass.py).
"""

from __future__ import annotations

import itertools
import os
import struct

import numpy as np

from .found import ReadError
from .hdf5 import reason

BITSHUFFLE, LZ4 = 32008, 32004
_UINT32 = struct.Struct('>I')
_HEADER = struct.Struct('>QI')


class CheckedDataset:
    """An h5py dataset whose reads check compressed chunks first and raise
    :class:`ReadError` naming ``where`` (file, dataset, data file).

    Array-like for numpy and dask: ``shape``, ``dtype``, ``ndim``,
    ``chunks`` and ``__getitem__``.
    """

    def __init__(self, dset, where: str):
        self.dset, self.where = dset, where
        self.shape, self.dtype = dset.shape, dset.dtype
        self.ndim, self.chunks = dset.ndim, dset.chunks
        self.name = dset.name
        self._check = _chunk_check(dset)
        self._checked: set[tuple] = set()
        self._raw = None  # reads raw chunks, made on first use
        self._chunk_bytes = (int(np.prod(dset.chunks)) * dset.dtype.itemsize
                             if dset.chunks else 0)

    def __getitem__(self, key):
        if self._check is not None:
            for offset in self._chunk_offsets(key):
                if offset not in self._checked:
                    self._check_chunk(offset)
                    self._checked.add(offset)
        try:
            return self.dset[key]
        except (OSError, RuntimeError) as error:
            raise ReadError(
                f'{self.where}: cannot read the data (truncated or corrupt '
                f'file, or a missing compression filter?): {reason(error)}'
            ) from None

    def _check_chunk(self, offset):
        if self._raw is None:
            self._raw = RawChunks(self.dset)
        try:
            found = self._raw.read(offset)
        except (OSError, RuntimeError) as error:
            raise ReadError(f'{self.where}: cannot read the chunk at '
                            f'{offset}: {reason(error)}') from None
        if found is None:  # never written: the fill value
            return
        mask, raw = found
        nbytes = self._chunk_bytes
        if mask & 1:  # stored without the filter
            problem = (None if len(raw) == nbytes else
                       f'{len(raw)} bytes stored raw, expected {nbytes}')
        else:
            problem = self._check(raw, nbytes, self.dtype.itemsize)
        if problem:
            raise ReadError(
                f'{self.where}: the compressed chunk at {offset} is damaged '
                f'({problem}); it was not decoded'
            )

    def _chunk_offsets(self, key):
        spans = _spans(key, self.shape)
        axes = [range(start // c * c, stop, c)
                for (start, stop), c in zip(spans, self.chunks, strict=True)]
        return itertools.product(*axes)


class RawChunks:
    """The stored bytes of a dataset's chunks: located once with
    ``chunk_iter`` and read with ``os.pread`` from the file opened
    read-only (``read_direct_chunk`` costs ~20 µs a chunk, as much as
    decoding it). Falls back to ``read_direct_chunk`` when the addresses
    cannot be trusted (checked on the first chunk). The file stays open
    (read-only) as long as the dataset is read."""

    def __init__(self, dset):
        self.dset = dset
        self.index = None
        try:
            found = {}
            dset.id.chunk_iter(
                lambda info: found.__setitem__(info.chunk_offset, info))
        except (AttributeError, RuntimeError, OSError):
            return
        self.file = open(dset.file.filename, 'rb')  # noqa: SIM115
        if found and self._agrees(found):
            self.index = found

    def _agrees(self, found) -> bool:
        offset, info = next(iter(found.items()))
        raw = os.pread(self.file.fileno(), info.size, info.byte_offset)
        return raw == self.dset.id.read_direct_chunk(offset)[1]

    def read(self, offset):
        """(filter mask, bytes) of the chunk at ``offset``; None when it
        was never written."""
        if self.index is None:
            try:
                return self.dset.id.read_direct_chunk(offset)
            except (OSError, RuntimeError) as error:
                if 'not allocated' in str(error):
                    return None
                raise
        info = self.index.get(offset)
        if info is None:
            return None
        raw = os.pread(self.file.fileno(), info.size, info.byte_offset)
        if len(raw) != info.size:
            raise OSError(f'the file ends {info.size - len(raw)} bytes '
                          'short of this chunk (truncated)')
        return info.filter_mask, raw


def _chunk_check(dset):
    """The raw-chunk check for ``dset``'s filter pipeline, or None when it
    needs none (no filter, or filters HDF5 decodes safely)."""
    if dset.chunks is None:
        return None
    plist = dset.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if filters == [BITSHUFFLE]:
        return bitshuffle_problem
    if filters == [LZ4]:
        return lz4_problem
    if BITSHUFFLE in filters or LZ4 in filters:
        raise ReadError(f'dataset {dset.name}: filter pipeline {filters} '
                        'cannot be checked before decoding; not read')
    return None


def _spans(key, shape) -> list[tuple[int, int]]:
    """(start, stop) covered by an index ``key`` along each axis."""
    key = key if isinstance(key, tuple) else (key,)
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[
            i + 1:]
    key = key + (slice(None),) * (len(shape) - len(key))
    spans = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, slice) and (k.step or 1) > 0:
            start, stop, _ = k.indices(n)
            spans.append((start, max(start, stop)))
        elif isinstance(k, int | np.integer):
            i = int(k) % n
            spans.append((i, i + 1))
        else:  # arrays, reversed slices: every chunk of the axis
            spans.append((0, n))
    return spans


def bitshuffle_problem(raw: bytes, nbytes: int, itemsize: int):
    """Why a bitshuffle-LZ4 chunk cannot be decoded safely, or None."""
    if len(raw) < _HEADER.size:
        return 'shorter than its 12-byte header'
    total, block_bytes = _HEADER.unpack_from(raw)
    if total != nbytes:
        return f'its header says {total} bytes, the chunk holds {nbytes}'
    if block_bytes == 0:  # the filter's default block
        block = max(8192 // itemsize // 8 * 8, 128)
    else:
        block = block_bytes // itemsize
    if block_bytes % itemsize or block <= 0 or block % 8:
        return f'block size {block_bytes} bytes is not 8·k elements'
    size, pos, done = total // itemsize, _HEADER.size, 0
    while size - done >= 8:
        if pos + 4 > len(raw):
            return 'its block list runs past the end of the chunk'
        (compressed,) = _UINT32.unpack_from(raw, pos)
        if compressed > len(raw) - pos - 4:
            return (f'the block at byte {pos} claims {compressed} bytes, past '
                    'the end of the chunk')
        pos += 4 + compressed
        done += min(block, (size - done) // 8 * 8)
    if len(raw) - pos != (size - done) * itemsize:
        return f'{len(raw) - pos} bytes follow the last block'
    return None


def lz4_problem(raw: bytes, nbytes: int, itemsize: int):
    """Why an LZ4-filter chunk cannot be decoded safely, or None: every
    block must decode with the bounds-checked decoder."""
    import lz4.block

    if len(raw) < _HEADER.size:
        return 'shorter than its 12-byte header'
    total, block = _HEADER.unpack_from(raw)
    if total != nbytes:
        return f'its header says {total} bytes, the chunk holds {nbytes}'
    if block == 0:
        return 'block size 0'
    block, pos, done = min(block, total), _HEADER.size, 0
    while done < total:
        n = min(block, total - done)
        if pos + 4 > len(raw):
            return 'its block list runs past the end of the chunk'
        (compressed,) = _UINT32.unpack_from(raw, pos)
        pos += 4
        if compressed > len(raw) - pos:
            return (f'the block at byte {pos - 4} claims {compressed} bytes, '
                    'past the end of the chunk')
        if compressed != n:  # stored compressed (else copied as is)
            try:
                decoded = len(lz4.block.decompress(
                    raw[pos:pos + compressed], uncompressed_size=n))
            except lz4.block.LZ4BlockError as error:
                return f'the block at byte {pos - 4} does not decode: {error}'
            if decoded != n:
                return (f'the block at byte {pos - 4} decodes to {decoded} '
                        f'bytes, not {n}')
        pos += compressed
        done += n
    if pos != len(raw):
        return f'{len(raw) - pos} bytes follow the last block'
    return None
