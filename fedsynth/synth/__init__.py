"""Synthesizers: models that learn from prepared real rows and sample new, synthetic ones.

Importing this package registers every model (`copula`, `mvn`, `cart`, `dp-marginal`,
`dp-copula`, `tvae`) in `REGISTRY`.
"""

from fedsynth.synth.artifact import Artifact, ArtifactError
from fedsynth.synth.base import REGISTRY, NotFittedError, Synthesizer, synthesizer_class
from fedsynth.synth.cart import SequentialCART
from fedsynth.synth.conditions import ConditionError
from fedsynth.synth.constraints import ConstraintError, parse_constraints
from fedsynth.synth.copula import GaussianCopula
from fedsynth.synth.dp_copula import DPGaussianCopula
from fedsynth.synth.dp_marginal import DPMarginalSynthesizer
from fedsynth.synth.mvn import MultivariateNormal
from fedsynth.synth.sampling import SamplingError
from fedsynth.synth.stats import StatsError, SufficientStats
from fedsynth.synth.tvae import TVAESynthesizer

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
    "SequentialCART",
    "StatsError",
    "SufficientStats",
    "Synthesizer",
    "TVAESynthesizer",
    "parse_constraints",
    "synthesizer_class",
]
