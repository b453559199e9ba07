"""Privacy accounting by Renyi DP: per-release RDP curves, composition by addition, (eps, delta).

Curves are tabulated on opacus's default orders, and the subsampled-Gaussian analysis and the
RDP-to-(eps, delta) conversion follow opacus's `opacus.accountants.analysis.rdp` line by line, so
the epsilon reported for a DP-SGD run is the number opacus's RDP accountant reports.
zCDP fits in directly: a rho-zCDP release has the RDP curve alpha * rho.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import special

from fedsynth.privacy.orders import ORDERS, check_epsilon_reachable

_ORDERS = np.asarray(ORDERS, dtype=np.float64)


@dataclass(frozen=True)
class PrivacyCost:
    """What one release spends: an RDP curve on `ORDERS` and/or an approximate (eps, delta) part.

    Releases priced by RDP compose by adding curves; an (eps, delta) part composes by addition.
    """

    rdp: tuple[float, ...] | None = None
    epsilon: float = 0.0
    delta: float = 0.0
    label: str = ""

    def __post_init__(self) -> None:
        check_budget_number(self.epsilon, "epsilon")
        check_budget_number(self.delta, "delta")
        if self.delta >= 1:
            raise ValueError(f"delta must be below 1, got {self.delta!r}")
        if self.rdp is not None:
            if len(self.rdp) != len(ORDERS):
                raise ValueError(f"an RDP curve has {len(ORDERS)} points, got {len(self.rdp)}")
            for value in self.rdp:
                check_budget_number(value, "RDP value")

    def __add__(self, other: PrivacyCost) -> PrivacyCost:
        return compose([self, other])

    def epsilon_at(self, delta: float) -> float:
        """Epsilon of this cost at total `delta` (its own delta part counted in)."""
        if self.rdp is None:
            return self.epsilon
        remaining = delta - self.delta
        if remaining <= 0:
            return math.inf
        return self.epsilon + epsilon_from_rdp(np.asarray(self.rdp), remaining)


def check_budget_number(value: float, name: str) -> None:
    """Refuse a negative, NaN or infinite budget quantity with a message naming it."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and non-negative, got {value!r}")


def compose(costs: Iterable[PrivacyCost]) -> PrivacyCost:
    """Sequential composition: RDP curves add, (eps, delta) parts add."""
    curve = np.zeros(len(ORDERS))
    any_rdp = False
    eps = delta = 0.0
    labels = []
    for cost in costs:
        if cost.rdp is not None:
            curve += np.asarray(cost.rdp)
            any_rdp = True
        eps += cost.epsilon
        delta += cost.delta
        labels.append(cost.label)
    rdp = tuple(float(v) for v in curve) if any_rdp else None
    return PrivacyCost(rdp=rdp, epsilon=eps, delta=delta, label=" + ".join(filter(None, labels)))


def zcdp_cost(rho: float, label: str = "") -> PrivacyCost:
    """A rho-zCDP release (for instance Gaussian noise with rho = sensitivity^2 / (2 sigma^2))."""
    check_budget_number(rho, "rho")
    return PrivacyCost(rdp=tuple(float(a * rho) for a in ORDERS), label=label)


def gaussian_cost(
    sigma: float, l2_sensitivity: float = 1.0, count: int = 1, label: str = ""
) -> PrivacyCost:
    """`count` Gaussian releases of noise sd `sigma` on queries of this L2 sensitivity."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    return zcdp_cost(count * l2_sensitivity**2 / (2.0 * sigma**2), label)


def laplace_cost(scale: float, l1_sensitivity: float = 1.0, label: str = "") -> PrivacyCost:
    """A Laplace release of scale b; RDP curve of Mironov (2017), Proposition 6."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    lam = scale / l1_sensitivity
    curve = []
    for a in ORDERS:
        terms = (
            math.log(a / (2 * a - 1)) + (a - 1) / lam,
            math.log((a - 1) / (2 * a - 1)) - a / lam,
        )
        curve.append(float(special.logsumexp(terms)) / (a - 1))
    return PrivacyCost(rdp=tuple(curve), label=label)


def approximate_cost(epsilon: float, delta: float = 0.0, label: str = "") -> PrivacyCost:
    """A release known only by its (epsilon, delta) guarantee; composes by addition."""
    return PrivacyCost(epsilon=epsilon, delta=delta, label=label)


def subsampled_gaussian_cost(
    sample_rate: float, noise_multiplier: float, steps: int, label: str = ""
) -> PrivacyCost:
    """`steps` DP-SGD steps with Poisson sampling rate q and noise multiplier sigma."""
    if not 0 <= sample_rate <= 1:
        raise ValueError(f"sample rate must be in [0, 1], got {sample_rate!r}")
    curve = [steps * _subsampled_rdp(sample_rate, noise_multiplier, a) for a in ORDERS]
    return PrivacyCost(rdp=tuple(float(v) for v in curve), label=label)


def epsilon_from_rdp(rdp: np.ndarray, delta: float) -> float:
    """Smallest epsilon over the orders (conversion of Balle et al. 2020, as in opacus)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        eps = (
            rdp
            - (np.log(delta) + np.log(_ORDERS)) / (_ORDERS - 1)
            + np.log((_ORDERS - 1) / _ORDERS)
        )
    if np.isnan(eps).all():
        return math.inf
    return float(np.nanmin(eps))


def rho_for_epsilon(epsilon: float, delta: float) -> float:
    """Largest rho whose zCDP curve converts to at most `epsilon` at `delta` (bisection)."""
    check_budget_number(epsilon, "epsilon")
    if epsilon == 0:
        raise ValueError("epsilon must be positive to release anything")
    check_epsilon_reachable(epsilon, delta)
    lo, hi = 0.0, max(1.0, epsilon)
    while epsilon_from_rdp(_ORDERS * hi, delta) < epsilon:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if epsilon_from_rdp(_ORDERS * mid, delta) <= epsilon:
            lo = mid
        else:
            hi = mid
    return lo


def _subsampled_rdp(q: float, sigma: float, alpha: float) -> float:
    if q == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    if q == 1.0:
        return alpha / (2 * sigma**2)
    if float(alpha).is_integer():
        return _log_a_int(q, sigma, int(alpha)) / (alpha - 1)
    return _log_a_frac(q, sigma, alpha) / (alpha - 1)


def _log_add(logx: float, logy: float) -> float:
    a, b = min(logx, logy), max(logx, logy)
    if a == -math.inf:
        return b
    return math.log1p(math.exp(a - b)) + b


def _log_sub(logx: float, logy: float) -> float:
    if logx < logy:
        raise ValueError("the result of a log-space subtraction must be non-negative")
    if logy == -math.inf:
        return logx
    if logx == logy:
        return -math.inf
    try:
        return math.log(math.expm1(logx - logy)) + logy
    except OverflowError:
        return logx


def _log_erfc(x: float) -> float:
    return math.log(2) + float(special.log_ndtr(-x * 2**0.5))


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    log_a = -math.inf
    for i in range(alpha + 1):
        log_coef = (
            math.log(special.binom(alpha, i)) + i * math.log(q) + (alpha - i) * math.log(1 - q)
        )
        log_a = _log_add(log_a, log_coef + (i * i - i) / (2 * sigma**2))
    return float(log_a)


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    log_a0, log_a1 = -math.inf, -math.inf
    i = 0
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    while True:
        coef = special.binom(alpha, i)
        log_coef = math.log(abs(coef))
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log(1 - q)
        log_t1 = log_coef + j * math.log(q) + i * math.log(1 - q)
        log_e0 = math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * sigma**2) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * sigma**2) + log_e1
        if coef > 0:
            log_a0 = _log_add(log_a0, log_s0)
            log_a1 = _log_add(log_a1, log_s1)
        else:
            log_a0 = _log_sub(log_a0, log_s0)
            log_a1 = _log_sub(log_a1, log_s1)
        i += 1
        if max(log_s0, log_s1) < -30:
            break
    return _log_add(log_a0, log_a1)
