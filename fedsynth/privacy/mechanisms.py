"""Additive noise mechanisms: Gaussian and Laplace noise scaled to a query's sensitivity.

Noise comes from a generator seeded by the operating system's CSPRNG unless a caller passes its
own (tests do, to check variances over many seeds).
"""

from __future__ import annotations

import math
import secrets

import numpy as np


def noise_rng(rng: np.random.Generator | None = None) -> np.random.Generator:
    """`rng` itself, or a fresh generator seeded with 256 bits from the OS (never predictable)."""
    return rng if rng is not None else np.random.default_rng(secrets.randbits(256))


def gaussian_noise(
    shape: int | tuple[int, ...], sigma: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Gaussian noise of standard deviation `sigma` (sigma = noise multiplier x L2 sensitivity)."""
    _check_scale(sigma, "sigma")
    return noise_rng(rng).normal(0.0, sigma, shape)


def laplace_noise(
    shape: int | tuple[int, ...], scale: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Laplace noise of scale b (b = L1 sensitivity / epsilon for pure epsilon-DP)."""
    _check_scale(scale, "scale")
    return noise_rng(rng).laplace(0.0, scale, shape)


def gaussian_sigma(rho: float, l2_sensitivity: float) -> float:
    """Noise sd that makes one release of a query with this L2 sensitivity `rho`-zCDP."""
    _check_scale(rho, "rho")
    return l2_sensitivity / math.sqrt(2.0 * rho)


def _check_scale(value: float, name: str) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
