"""Stitcher service: joins a job's video parts in chunk order and muxes the original audio once."""

from .errors import StitchCancelledError, StitchInputError
from .spec import StitchSpec
from .stitch import StitchReport, stitch

__all__ = ["StitchCancelledError", "StitchInputError", "StitchReport", "StitchSpec", "stitch"]
