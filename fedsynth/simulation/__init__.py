"""Synthesis without real data (declared simulations), hybrid synthesis, and the demo sources.

Names are imported on first use (PEP 562): a simulation spec loads no model code.
"""

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from fedsynth.simulation.hybrid import HybridError, HybridSampler, HybridSpec
    from fedsynth.simulation.sampler import SimulationError, Simulator
    from fedsynth.simulation.sources import RenderedSource, SourceSpec, SourceSpecError, render
    from fedsynth.simulation.spec import SimulationSpec, SimulationSpecError

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "hybrid": ["HybridError", "HybridSampler", "HybridSpec"],
        "sampler": ["SimulationError", "Simulator"],
        "sources": [
            "RenderedSource",
            "SourceSpec",
            "SourceSpecError",
            "render",
        ],
        "spec": ["SimulationSpec", "SimulationSpecError"],
    },
)

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
