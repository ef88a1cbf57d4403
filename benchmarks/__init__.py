"""Benchmarks: napari-phase against py4DSTEM 0.14.18 and the hardware floor.

Run ``python -m benchmarks`` (see benchmarks/README.md). This package is
imported by the py4DSTEM runner in py4DSTEM's own environment too, so it
imports nothing at package level.
"""
