"""Data preparation (harmonize, standardize, cleanse) and privacy-preserving record linkage."""

from fedsynth.prep.pipeline import PrepResult, output_schema, prepare, run
from fedsynth.prep.report import PrepReport
from fedsynth.prep.spec import PrepSpec, PrepSpecError

__all__ = [
    "PrepReport",
    "PrepResult",
    "PrepSpec",
    "PrepSpecError",
    "output_schema",
    "prepare",
    "run",
]
