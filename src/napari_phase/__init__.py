"""napari-phase: 4D-STEM phase retrieval (DPC, parallax, ptychography)."""

from .compute.calibration import Calibration, CalibrationError
from .compute.datacube import DataCube, DataCubeError
from .compute.simulate import simulate

__version__ = '0.1.0'
__all__ = [
    'Calibration',
    'CalibrationError',
    'DataCube',
    'DataCubeError',
    'simulate',
]
