"""Synthesizers: models that learn from prepared real rows and sample new, synthetic ones.

`REGISTRY` names every model (`copula`, `mvn`, `cart`, `dp-marginal`, `dp-copula`, `tvae`). Names
are imported on first use (PEP 562), and a model's module when it is first looked up, so a command
that never fits or samples does not load scipy, scikit-learn or torch.
"""

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from fedsynth.synth.artifact import Artifact, ArtifactError
    from fedsynth.synth.base import REGISTRY, NotFittedError, Synthesizer, synthesizer_class
    from fedsynth.synth.cart import SequentialCART
    from fedsynth.synth.conditions import ConditionError
    from fedsynth.synth.constraints import ConstraintError, parse_constraints
    from fedsynth.synth.copula import GaussianCopula
    from fedsynth.synth.dp_copula import DPGaussianCopula
    from fedsynth.synth.dp_marginal import DPMarginalSynthesizer
    from fedsynth.synth.mvn import MultivariateNormal
    from fedsynth.synth.sampling import SamplingError, SamplingShortfall
    from fedsynth.synth.stats import StatsError, SufficientStats
    from fedsynth.synth.tvae import TVAESynthesizer

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "artifact": ["Artifact", "ArtifactError"],
        "base": ["REGISTRY", "NotFittedError", "Synthesizer", "synthesizer_class"],
        "cart": [
            "SequentialCART",
        ],
        "conditions": [
            "ConditionError",
        ],
        "constraints": ["ConstraintError", "parse_constraints"],
        "copula": [
            "GaussianCopula",
        ],
        "dp_copula": [
            "DPGaussianCopula",
        ],
        "dp_marginal": [
            "DPMarginalSynthesizer",
        ],
        "mvn": [
            "MultivariateNormal",
        ],
        "sampling": ["SamplingError", "SamplingShortfall"],
        "stats": ["StatsError", "SufficientStats"],
        "tvae": [
            "TVAESynthesizer",
        ],
    },
)

__all__ = [
    "REGISTRY",
    "Artifact",
    "ArtifactError",
    "ConditionError",
    "ConstraintError",
    "DPGaussianCopula",
    "DPMarginalSynthesizer",
    "GaussianCopula",
    "MultivariateNormal",
    "NotFittedError",
    "SamplingError",
    "SamplingShortfall",
    "SequentialCART",
    "StatsError",
    "SufficientStats",
    "Synthesizer",
    "TVAESynthesizer",
    "parse_constraints",
    "synthesizer_class",
]
