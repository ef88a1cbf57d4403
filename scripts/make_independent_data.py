"""Simulate the small independent validation datasets with abTEM and store
them under tests/data/independent/ (see benchmarks/independent.py).

Usage (needs the ``validation`` extra, i.e. abTEM)::

    python scripts/make_independent_data.py            # every dataset
    python scripts/make_independent_data.py NAME ...   # some of them
    python scripts/make_independent_data.py --workers 1

Each dataset takes a few minutes on two cores. The files are deterministic
for a given abTEM version and generator source (seeded).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import independent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('names', nargs='*',
                        help='datasets (default: all): '
                        + ', '.join(independent.SPECS))
    parser.add_argument('--workers', type=int, default=2,
                        help='dask threads for abTEM (default 2)')
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(independent.SPECS)
    if unknown:
        parser.error(f'unknown dataset(s) {sorted(unknown)}')
    for name in args.names or independent.SPECS:
        start = time.perf_counter()
        path = independent.SMALL_DIR / f'{name}.h5'
        independent.write(path, *independent.simulate(
            independent.SPECS[name], args.workers))
        print(f'{path}: {path.stat().st_size / 1e6:.2f} MB in '
              f'{time.perf_counter() - start:.0f} s', flush=True)


if __name__ == '__main__':
    main()
