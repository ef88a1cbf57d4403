"""napari-phase: 4D-STEM phase retrieval (DPC, parallax, ptychography)."""

from .compute.calibration import Calibration, CalibrationError
from .compute.datacube import DataCube, DataCubeError
from .compute.simulate import simulate
from .io.emd import write_emd, write_emd_probe
from .io.read import ReadError, read_datacube, read_probe

__version__ = '0.1.0'
__all__ = [
    'Calibration',
    'CalibrationError',
    'DataCube',
    'DataCubeError',
    'ReadError',
    'read_datacube',
    'read_probe',
    'simulate',
    'write_emd',
    'write_emd_probe',
]
