"""Synthesis without real data (declared simulations), hybrid synthesis, and the demo sources."""

from fedsynth.simulation.hybrid import HybridError, HybridSampler, HybridSpec
from fedsynth.simulation.sampler import SimulationError, Simulator
from fedsynth.simulation.sources import RenderedSource, SourceSpec, SourceSpecError, render
from fedsynth.simulation.spec import SimulationSpec, SimulationSpecError

__all__ = [
    "HybridError",
    "HybridSampler",
    "HybridSpec",
    "RenderedSource",
    "SimulationError",
    "SimulationSpec",
    "SimulationSpecError",
    "Simulator",
    "SourceSpec",
    "SourceSpecError",
    "render",
]
