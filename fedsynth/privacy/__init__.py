"""Differential privacy: noise mechanisms, RDP accounting, the budget ledger, secure aggregation.

Every DP release in fedsynth is priced by `accountant` as a `PrivacyCost`, charged to a supplier's
`PrivacyLedger` before it leaves, and (when parties pool statistics) summed under `secagg`.
Names are imported on first use (PEP 562): a privacy spec loads no scipy.
"""

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from fedsynth.privacy.accountant import (
        ORDERS,
        PrivacyCost,
        epsilon_from_rdp,
        gaussian_cost,
        laplace_cost,
        rho_for_epsilon,
        subsampled_gaussian_cost,
    )
    from fedsynth.privacy.ledger import BudgetExceeded, LedgerError, PrivacyLedger
    from fedsynth.privacy.mechanisms import gaussian_noise, laplace_noise, noise_rng
    from fedsynth.privacy.secagg import (
        DropoutError,
        FixedPoint,
        KeyAnnouncement,
        SecAggError,
        SecAggParty,
        SecAggRound,
        secure_sum,
        unmask_sum,
    )
    from fedsynth.privacy.spec import BudgetCap, PrivacySpec

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "accountant": [
            "ORDERS",
            "PrivacyCost",
            "epsilon_from_rdp",
            "gaussian_cost",
            "laplace_cost",
            "rho_for_epsilon",
            "subsampled_gaussian_cost",
        ],
        "ledger": ["BudgetExceeded", "LedgerError", "PrivacyLedger"],
        "mechanisms": ["gaussian_noise", "laplace_noise", "noise_rng"],
        "secagg": [
            "DropoutError",
            "FixedPoint",
            "KeyAnnouncement",
            "SecAggError",
            "SecAggParty",
            "SecAggRound",
            "secure_sum",
            "unmask_sum",
        ],
        "spec": ["BudgetCap", "PrivacySpec"],
    },
)

__all__ = [
    "ORDERS",
    "BudgetCap",
    "BudgetExceeded",
    "DropoutError",
    "FixedPoint",
    "KeyAnnouncement",
    "LedgerError",
    "PrivacyCost",
    "PrivacyLedger",
    "PrivacySpec",
    "SecAggError",
    "SecAggParty",
    "SecAggRound",
    "epsilon_from_rdp",
    "gaussian_cost",
    "gaussian_noise",
    "laplace_cost",
    "laplace_noise",
    "noise_rng",
    "rho_for_epsilon",
    "secure_sum",
    "subsampled_gaussian_cost",
    "unmask_sum",
]
