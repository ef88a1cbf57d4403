"""DataCube: a 4D-STEM scan (Rx, Ry, Qx, Qy) and its calibration."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backend import ProgressCallback, is_dask
from .calibration import Calibration
from .reduce import mean_and_max_pattern


class DataCubeError(ValueError):
    """The array cannot be a 4D-STEM datacube (wrong rank, dtype, size)."""


def check_4dstem_array(data, source: str = 'array') -> None:
    """Raise :class:`DataCubeError` unless ``data`` is a real 4D array."""
    shape = tuple(getattr(data, 'shape', ()))
    if len(shape) != 4:
        raise DataCubeError(
            f'{source}: a 4D-STEM datacube needs 4 axes (Rx, Ry, Qx, Qy), '
            f'got {len(shape)} with shape {shape}'
        )
    if 0 in shape:
        raise DataCubeError(f'{source}: an axis is empty (shape {shape})')
    kind = np.dtype(data.dtype).kind
    if kind not in 'uif':
        raise DataCubeError(
            f'{source}: dtype {data.dtype} is not a real number type '
            '(complex, string and object data cannot be diffraction counts)'
        )


@dataclass
class DataCube:
    """A 4D-STEM scan: ``data[rx, ry, qx, qy]`` plus its :class:`Calibration`.

    ``data`` may be numpy, cupy or dask (lazy). ``source`` names where it
    came from (``file.h5::/dataset``) for messages and provenance.
    """

    data: object
    calibration: Calibration = field(default_factory=Calibration)
    source: str = 'array'

    def __post_init__(self):
        check_4dstem_array(self.data, self.source)

    @property
    def scan_shape(self) -> tuple[int, int]:
        return tuple(self.data.shape[:2])

    @property
    def detector_shape(self) -> tuple[int, int]:
        return tuple(self.data.shape[2:])

    @property
    def is_lazy(self) -> bool:
        return is_dask(self.data)

    def mean_and_max_pattern(
        self, progress: ProgressCallback | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and max diffraction pattern (float32), in one pass."""
        return mean_and_max_pattern(self.data, progress)
