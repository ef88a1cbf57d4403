"""napari-phase: 4D-STEM phase retrieval (DPC, parallax, direct and
iterative ptychography)."""

from .compute.calibration import Calibration, CalibrationError
from .compute.datacube import DataCube, DataCubeError
from .compute.detectors import (
    adf_mask,
    annulus_mask,
    bf_mask,
    circle_mask,
    ellipse_mask,
    polygon_mask,
    rectangle_mask,
    virtual_images,
)
from .compute.direct import (
    DirectPhase,
    DirectResult,
    ParallaxPhase,
    direct_ptychography,
    direct_ptychography_steps,
    prepare_direct,
    prepare_parallax_phase,
    refine_aberrations,
)
from .compute.dpc import DPCResult, dpc
from .compute.halfturn import adopt
from .compute.parallax import ParallaxResult, parallax, parallax_steps
from .compute.probe import ProbeFit, fit_probe, q_pixel_from_semiangle
from .compute.ptycho import PtychoResult, ptychography, ptychography_iter
from .compute.scheduler import SchedulerError, use_scheduler
from .compute.simulate import simulate
from .io.emd import write_emd, write_emd_probe
from .io.read import ReadError, read_datacube, read_probe
from .io.results import load_results, save_results
from .pipeline import run_pipeline

__version__ = '0.1.0'
__all__ = [
    'Calibration',
    'CalibrationError',
    'DataCube',
    'DataCubeError',
    'DPCResult',
    'DirectPhase',
    'DirectResult',
    'ParallaxPhase',
    'ParallaxResult',
    'PtychoResult',
    'ReadError',
    'adopt',
    'direct_ptychography',
    'direct_ptychography_steps',
    'dpc',
    'load_results',
    'parallax',
    'parallax_steps',
    'prepare_direct',
    'prepare_parallax_phase',
    'ptychography',
    'ptychography_iter',
    'read_datacube',
    'read_probe',
    'refine_aberrations',
    'run_pipeline',
    'save_results',
    'simulate',
    'write_emd',
    'write_emd_probe',
    'ProbeFit',
    'adf_mask',
    'annulus_mask',
    'bf_mask',
    'circle_mask',
    'ellipse_mask',
    'fit_probe',
    'polygon_mask',
    'q_pixel_from_semiangle',
    'rectangle_mask',
    'virtual_images',
    'SchedulerError',
    'use_scheduler',
]
