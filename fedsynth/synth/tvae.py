"""TVAE-style neural synthesizer in torch, optionally trained with DP-SGD through opacus.

Rows are encoded as in TVAE: each continuous column by mode-specific normalisation (a one-hot
mode plus a value scaled within that mode, in [-1, 1]), each category, boolean and null as a
one-hot. A variational autoencoder learns to reconstruct them: each one-hot block is a
categorical, each scaled value a Gaussian with a learned per-column sigma. Sampling decodes
normal noise and draws every column from the decoder's distribution (softmax draws for one-hots,
Gaussian noise on scaled values), so rare categories and nulls keep their shares.
Runs on a CUDA GPU when torch sees one, on CPU otherwise. Weights are stored as named arrays in
the synth artifact format (never torch.save / pickle).

With `epsilon` set, training is DP-SGD (opacus, Poisson sampling, per-sample clipping to
`max_grad_norm`, noise chosen by opacus for the target epsilon) and the model is DP end to end:
- modes of continuous columns: a public grid of `modes` equal-width modes between the schema's
  declared min and max (no mixture is fitted to real values);
- category domains and nullability: the schema;
- output rounding and constraints: the schema and declared constraints only;
- the number of rows sets the sampling rate and is treated as public, as opacus does;
- DP-SGD's noise and batches come from a generator reseeded by the OS, never from `seed`.
`epsilon_` is the RDP accountant's epsilon (the same number opacus's RDP accountant reports).
Without `epsilon`, modes come from a Bayesian Gaussian mixture fitted to each column (not DP).
In a `federated` job the network is trained by federated averaging (`start`, then per round
`measure` at each supplier and `absorb` of the sum), each supplier running DP-SGD on its rows.
"""

from __future__ import annotations

import functools
import math
import secrets
import warnings
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import pandas as pd
import torch
from sklearn.mixture import BayesianGaussianMixture
from torch import nn

from fedsynth.frame import conform
from fedsynth.privacy.accountant import PrivacyCost, subsampled_gaussian_cost
from fedsynth.schema import Column, SchemaError, TableSchema
from fedsynth.synth.base import MAX_ONE_HOT_CATEGORIES, Progress, Synthesizer, register
from fedsynth.synth.conditions import Condition
from fedsynth.synth.dp_public import public_constraints, public_rounding
from fedsynth.synth.encoding import bounds, cardinality, encode, is_discrete

_MAX_MODES = 10
_MODE_WEIGHT_FLOOR = 0.005
_GMM_ROWS = 5000
_MIN_FIT_ROWS = 2
"""The mixture that places a column's modes needs two values (DP modes need none)."""
_ONE_VALUE_STD = 1e-3
"""The std of a mode at a column's only value: about what the mixture gives a constant column."""
_SIGMA = 0.1
_SIGMA_RANGE = (0.01, 1.0)
_ALPHA_LIMIT = 0.99


@dataclass(frozen=True)
class ColumnCode:
    """How one column becomes network inputs: modes (continuous) or codes, plus a null slot."""

    name: str
    discrete: bool
    codes: int
    means: tuple[float, ...]
    stds: tuple[float, ...]
    nullable: bool

    @property
    def one_hot(self) -> int:
        return (self.codes if self.discrete else len(self.means)) + int(self.nullable)

    @property
    def width(self) -> int:
        return self.one_hot + (0 if self.discrete else 1)

    def transform(self, values: np.ndarray) -> np.ndarray:
        n = values.size
        null = np.isnan(values)
        out = np.zeros((n, self.width), dtype=np.float32)
        start = 0 if self.discrete else 1
        if self.discrete:
            slot = np.where(null, self.codes, np.nan_to_num(values)).astype(int)
        else:
            means, stds = np.asarray(self.means), np.asarray(self.stds)
            filled = np.nan_to_num(values, nan=means[0])
            slot = np.argmin(np.abs(filled[:, None] - means[None, :]) / stds[None, :], axis=1)
            alpha = (filled - means[slot]) / (4 * stds[slot])
            out[:, 0] = np.where(null, 0.0, np.clip(alpha, -_ALPHA_LIMIT, _ALPHA_LIMIT))
            slot = np.where(null, len(self.means), slot)
        out[np.arange(n), start + slot] = 1.0
        return out

    def inverse(self, slot: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Values of one-hot slots and scaled values (unused for discrete columns); NaN = null."""
        null_slot = self.codes if self.discrete else len(self.means)
        if self.discrete:
            values = slot.astype(np.float64)
        else:
            k = np.minimum(slot, len(self.means) - 1)
            alpha = np.clip(alpha, -1.0, 1.0)
            values = np.asarray(self.means)[k] + alpha * 4 * np.asarray(self.stds)[k]
        return np.where(self.nullable & (slot == null_slot), np.nan, values)

    def draw(self, block: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """Values drawn from the decoder's output `block` for this column, as p(x|z) says.

        The slot (code, mode or null) is drawn from the softmax of its logits and a scaled value
        from a Gaussian around tanh of its output with the learned `sigma`: taking the argmax
        and the mean instead would collapse every column onto its most likely value.
        """
        start = 0 if self.discrete else 1
        slot = _categorical(block[:, start:], rng)
        alpha = np.zeros(len(block))
        if not self.discrete:
            alpha = np.tanh(block[:, 0]) + sigma * rng.standard_normal(len(block))
        return self.inverse(slot, alpha)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "discrete": self.discrete,
            "codes": self.codes,
            "means": list(self.means),
            "stds": list(self.stds),
            "nullable": self.nullable,
        }


def _categorical(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row, drawn from the softmax of that row's `logits`."""
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cumulative = np.cumsum(weights, axis=1)
    threshold = rng.random(len(logits)) * cumulative[:, -1]
    slot = (cumulative <= threshold[:, None]).sum(axis=1)
    return np.minimum(slot, logits.shape[1] - 1)


def public_code(column: Column, modes: int) -> ColumnCode:
    """A column's coding from the schema alone (the DP path)."""
    if is_discrete(column):
        return ColumnCode(column.name, True, cardinality(column), (), (), column.nullable)
    lo, hi = bounds(column)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise SchemaError(
            f"column {column.name!r}: DP-TVAE places modes on public bounds only; declare its "
            "min and max in the schema"
        )
    width = max(hi - lo, 1e-9) / modes
    means = tuple(lo + width * (i + 0.5) for i in range(modes))
    return ColumnCode(column.name, False, 0, means, (width / 2,) * modes, column.nullable)


def fitted_code(column: Column, values: np.ndarray, seed: int) -> ColumnCode:
    """A column's coding with modes from a Bayesian Gaussian mixture (the non-DP path).

    A null slot only where the rows have nulls: sampling draws every slot with the probability
    the decoder gives it, so an unused slot would still put a few nulls into a full column.
    """
    nullable = bool(np.isnan(values).any())
    if is_discrete(column):
        return ColumnCode(column.name, True, cardinality(column), (), (), nullable)
    present = values[~np.isnan(values)]
    if present.size == 0:
        return ColumnCode(column.name, False, 0, (0.0,), (1.0,), True)
    if present.size == 1:
        return ColumnCode(column.name, False, 0, (float(present[0]),), (_ONE_VALUE_STD,), nullable)
    sample = np.random.default_rng(seed).permutation(present)[:_GMM_ROWS]
    components = min(_MAX_MODES, max(1, np.unique(sample).size))
    mixture = BayesianGaussianMixture(
        n_components=components,
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=0.001,
        max_iter=100,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixture.fit(sample.reshape(-1, 1))
    keep = mixture.weights_ > _MODE_WEIGHT_FLOOR
    means = mixture.means_.ravel()[keep]
    stds = np.sqrt(mixture.covariances_.ravel()[keep])
    spread = max(float(np.std(sample)), 1e-6)
    stds = np.maximum(stds, spread * 1e-3)
    return ColumnCode(
        column.name, False, 0, tuple(map(float, means)), tuple(map(float, stds)), nullable
    )


class _VAE(nn.Module):
    """Encoder, decoder and the decoder's Gaussian sigmas in one module, so opacus sees every
    trained parameter."""

    def __init__(self, width: int, hidden: int, latent: int, continuous: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, width),
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            self.log_sigma = nn.Linear(1, continuous, bias=False)
        nn.init.constant_(self.log_sigma.weight, math.log(_SIGMA))

    def sigma(self, rows: int) -> torch.Tensor:
        """The decoder's sigma of each continuous column's scaled value, repeated for `rows` rows.

        The log-sigmas are the weights of a linear layer on a constant 1, so opacus clips and
        noises their per-sample gradients like every other weight.
        """
        ones = torch.ones(rows, 1, device=self.log_sigma.weight.device)
        low, high = (math.log(v) for v in _SIGMA_RANGE)
        return torch.exp(self.log_sigma(ones).clamp(low, high))

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction logits, the posterior's mean and log-variance, and the sigmas."""
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h).clamp(-10, 10)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar, self.sigma(x.shape[0])


def _opacus() -> Any:
    try:
        import opacus
        import opacus.accountants.utils
    except ImportError as exc:
        raise ImportError(
            "DP-TVAE trains with opacus; install it (pip install opacus) or leave epsilon unset"
        ) from exc
    return opacus


def _unpredictable_noise() -> None:
    """Reseed torch from the OS before DP-SGD: noise and batches must not follow `seed`.

    Opacus draws its noise and its Poisson batches from torch's global generator; a known
    seed would let anyone recompute the noise and subtract it.
    """
    torch.manual_seed(secrets.randbits(63))


@functools.lru_cache(maxsize=64)
def _noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """Opacus's noise multiplier for `steps` Poisson-sampled steps to spend `epsilon` (RDP)."""
    return float(
        _opacus().accountants.utils.get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant="rdp",
        )
    )


def _private(
    module: nn.Module, optimizer: torch.optim.Optimizer, loader: Any, sigma: float, norm: float
) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    """Opacus's DP-SGD around a module: per-sample clipping, Gaussian noise, Poisson batches."""
    opacus = _opacus()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = opacus.PrivacyEngine(accountant="rdp")
        return engine.make_private(
            module=module,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=norm,
        )


@register
class TVAESynthesizer(Synthesizer):
    """Variational autoencoder over mode-normalised rows; DP-SGD when `epsilon` is set."""

    name = "tvae"
    max_categories = MAX_ONE_HOT_CATEGORIES

    def __init__(
        self,
        *,
        epochs: int = 100,
        batch_size: int = 500,
        hidden: int = 128,
        latent: int = 64,
        learning_rate: float = 1e-3,
        epsilon: float | None = None,
        delta: float = 1e-6,
        max_grad_norm: float = 1.0,
        modes: int = 8,
        seed: int = 0,
        fedavg_rounds: int = 5,
        local_epochs: int = 1,
        constraints: list[Any] | None = None,
    ) -> None:
        super().__init__(constraints=constraints)
        if epsilon is not None and not (math.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"epsilon must be positive and finite, or None, got {epsilon!r}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        for name, value in (("learning_rate", learning_rate), ("max_grad_norm", max_grad_norm)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if min(epochs, batch_size, hidden, latent, modes, fedavg_rounds, local_epochs) < 1:
            raise ValueError(
                "epochs, batch_size, hidden, latent, modes, fedavg_rounds and local_epochs must "
                "be positive"
            )
        self.epochs = epochs
        self.batch_size = batch_size
        self.hidden = hidden
        self.latent = latent
        self.learning_rate = learning_rate
        self.epsilon = epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.modes = modes
        self.seed = seed
        self.fedavg_rounds = fedavg_rounds
        self.local_epochs = local_epochs

    def get_params(self) -> dict[str, Any]:
        return {
            **super().get_params(),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "hidden": self.hidden,
            "latent": self.latent,
            "learning_rate": self.learning_rate,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "max_grad_norm": self.max_grad_norm,
            "modes": self.modes,
            "seed": self.seed,
            "fedavg_rounds": self.fedavg_rounds,
            "local_epochs": self.local_epochs,
        }

    def fit(
        self, df: pd.DataFrame, schema: TableSchema, *, progress: Progress | None = None
    ) -> Self:
        """Train; with `epsilon`, rounding and constraints come from the schema, not the rows."""
        if self.epsilon is None:
            return super().fit(df, schema, progress=progress)
        df = conform(df, schema).reset_index(drop=True)
        if len(df) == 0:
            raise ValueError("cannot fit a synthesizer on a table without rows")
        self.schema_ = schema
        self.constraints_ = public_constraints(self.constraints, schema)
        self.rounding_ = public_rounding(schema)
        self._fit(df, schema, progress)
        return self

    def _fit(self, df: pd.DataFrame, schema: TableSchema, progress: Progress | None) -> None:
        torch.manual_seed(self.seed)
        columns = schema.modelled_columns
        values = {c.name: encode(df[c.name], c) for c in columns}
        if self.epsilon is None:
            if len(df) < _MIN_FIT_ROWS:
                raise ValueError(
                    f"tvae needs at least {_MIN_FIT_ROWS} rows to fit; got {len(df)}. Fix: fit "
                    "it on more rows"
                )
            self.codes_ = [fitted_code(c, values[c.name], self.seed) for c in columns]
        else:
            self.codes_ = [public_code(c, self.modes) for c in columns]
        self._build()
        loader = self._loader(df)
        optimizer = torch.optim.Adam(self.network_.parameters(), lr=self.learning_rate)
        module: nn.Module = self.network_
        if self.epsilon is not None:
            _unpredictable_noise()
            module, optimizer, loader = self._make_private(module, optimizer, loader)
        self.steps_ = self._train(module, optimizer, loader, self.epochs, progress)
        if self.epsilon is not None:
            self.privacy_cost_: PrivacyCost = subsampled_gaussian_cost(
                self.sample_rate_, self.noise_multiplier_, self.steps_, label=f"{self.name} DP-SGD"
            )
            self.epsilon_ = self.privacy_cost_.epsilon_at(self.delta)
        self.network_.eval()

    def start(self, schema: TableSchema) -> None:
        """Federated training (FedAvg): the public plan and the initial global network.

        Codes come from the schema alone (public modes), so every supplier encodes alike; the
        initial weights come from `seed`, so the broker and every supplier build the same ones.
        """
        self._check_categories(schema)
        self.schema_ = schema
        self.constraints_ = public_constraints(self.constraints, schema)
        self.rounding_ = public_rounding(schema)
        self.codes_ = [public_code(c, self.modes) for c in schema.modelled_columns]
        torch.manual_seed(self.seed)
        self._build()
        self.rounds_ = self.planned_rounds(schema)
        self.round_ = 1

    def planned_rounds(self, schema: TableSchema) -> int:
        """FedAvg rounds of a federated fit: `fedavg_rounds`, whatever the schema."""
        return self.fedavg_rounds

    def round_costs(self, rows: int | None = None) -> list[PrivacyCost]:
        """Each FedAvg round's DP-SGD cost at a supplier training on `rows` rows.

        The noise is set so that all `fedavg_rounds` rounds together spend `epsilon`; the row
        count sets the sampling rate and is treated as public, as opacus does.
        """
        if self.epsilon is None:
            raise ValueError("federated TVAE trains with DP-SGD only: set epsilon")
        if rows is None or rows < 1:
            raise ValueError("a DP-SGD round's cost needs the supplier's number of rows")
        sample_rate, steps, sigma = self._dp_plan(rows)
        return [
            subsampled_gaussian_cost(sample_rate, sigma, steps, label=f"{self.name} round {n}")
            for n in range(1, self.fedavg_rounds + 1)
        ]

    def _dp_plan(self, rows: int) -> tuple[float, int, float]:
        """Sampling rate, steps per round and noise multiplier of one supplier's DP-SGD."""
        assert self.epsilon is not None
        batches = math.ceil(rows / min(self.batch_size, rows))
        steps = self.local_epochs * batches
        sample_rate = 1 / batches
        sigma = _noise_multiplier(self.epsilon, self.delta, sample_rate, self.fedavg_rounds * steps)
        return sample_rate, steps, sigma

    def weights(self) -> dict[str, np.ndarray]:
        """The global network's weights as named arrays (what the broker sends to suppliers)."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.network_.state_dict().items()}

    def local_update(self, df: pd.DataFrame) -> tuple[dict[str, np.ndarray], PrivacyCost | None]:
        """A supplier's FedAvg step: train a copy of the global network on `df`; return deltas.

        With `epsilon`, training is DP-SGD whose noise is set so that `fedavg_rounds` such
        updates together spend `epsilon`; the returned cost is this update's share, to be
        charged to the supplier's ledger before the deltas leave.
        """
        df = conform(df, self.schema_).reset_index(drop=True)
        start = self.weights()
        local = self._network().to(self.device_)
        local.load_state_dict(self.network_.state_dict())
        loader = self._loader(df)
        optimizer = torch.optim.Adam(local.parameters(), lr=self.learning_rate)
        module: nn.Module = local
        cost = None
        if self.epsilon is not None:
            sample_rate, steps, sigma = self._dp_plan(len(df))
            _unpredictable_noise()
            module, optimizer, loader = _private(
                module, optimizer, loader, sigma, self.max_grad_norm
            )
            cost = subsampled_gaussian_cost(sample_rate, sigma, steps, label="tvae FedAvg update")
        self._train(module, optimizer, loader, self.local_epochs, None)
        after = {k: v.detach().cpu().numpy() for k, v in local.state_dict().items()}
        return {k: after[k] - start[k] for k in start}, cost

    def measure(
        self, df: pd.DataFrame, share: float = 1.0, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """A supplier's round vector: its flattened weight deltas, then a 1 that counts it.

        DP-SGD noises every step inside local training at the full level, so each update is
        private on its own and `share` (a split of additive noise) does not apply.
        """
        deltas, _ = self.local_update(df)
        return np.concatenate([*(deltas[k].ravel() for k in deltas), [1.0]]).astype(np.float64)

    def absorb(self, total: np.ndarray) -> None:
        """Take the sum of the round's vectors: add the suppliers' mean delta to the network."""
        if not 1 <= getattr(self, "round_", 0) <= getattr(self, "rounds_", 0):
            raise ValueError("no FedAvg round is open: call start(schema) first")
        shapes = {k: v.shape for k, v in self.network_.state_dict().items()}
        sizes = [int(np.prod(shape)) for shape in shapes.values()]
        total = np.asarray(total, dtype=np.float64)
        if total.shape != (sum(sizes) + 1,) or not np.all(np.isfinite(total)):
            raise ValueError(f"a FedAvg round needs {sum(sizes) + 1} finite sums")
        parties = round(float(total[-1]))
        if parties < 1:
            raise ValueError("a FedAvg round's sum counts no supplier")
        parts = np.split(total[:-1] / parties, np.cumsum(sizes)[:-1])
        self.apply_updates(
            [{k: p.reshape(shape) for (k, shape), p in zip(shapes.items(), parts, strict=True)}]
        )
        self.round_ += 1

    def apply_updates(
        self, deltas: list[dict[str, np.ndarray]], weights: list[float] | None = None
    ) -> None:
        """The broker's FedAvg step: add the weighted average of the suppliers' deltas."""
        if not deltas:
            raise ValueError("FedAvg needs at least one supplier's update")
        weights = [1.0] * len(deltas) if weights is None else list(weights)
        if len(weights) != len(deltas) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("one non-negative weight per update, not all zero")
        state = self.network_.state_dict()
        for name, tensor in state.items():
            if any(d[name].shape != tuple(tensor.shape) for d in deltas):
                raise ValueError(f"an update for {name!r} does not have the network's shape")
            mean = sum(w * d[name] for w, d in zip(weights, deltas, strict=True)) / sum(weights)
            state[name] = tensor + torch.from_numpy(np.asarray(mean, dtype=np.float32)).to(
                tensor.device
            )
        self.network_.load_state_dict(state)
        self.network_.eval()

    def _network(self) -> _VAE:
        """A fresh network for the current codes (weights from torch's global generator)."""
        width = sum(c.width for c in self.codes_)
        continuous = sum(not c.discrete for c in self.codes_)
        return _VAE(width, self.hidden, self.latent, continuous)

    def _build(self) -> None:
        self.device_ = "cuda" if torch.cuda.is_available() else "cpu"
        self.network_ = self._network().to(self.device_)

    def _loader(self, df: pd.DataFrame) -> torch.utils.data.DataLoader:
        columns = self.schema_.modelled_columns
        data = np.hstack(
            [
                code.transform(encode(df[c.name], c))
                for c, code in zip(columns, self.codes_, strict=True)
            ]
        )
        dataset = torch.utils.data.TensorDataset(torch.from_numpy(data))
        return torch.utils.data.DataLoader(
            dataset, batch_size=min(self.batch_size, len(dataset)), shuffle=True
        )

    def _train(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        loader: Any,
        epochs: int,
        progress: Progress | None,
    ) -> int:
        module.train()
        steps = 0
        for epoch in range(epochs):
            finite = torch.ones((), dtype=torch.bool, device=self.device_)
            for (batch,) in loader:
                if batch.shape[0] == 0:
                    continue
                optimizer.zero_grad()
                loss = self._loss(module, batch.to(self.device_))
                finite &= torch.isfinite(loss)
                loss.backward()
                optimizer.step()
                steps += 1
            self._check_finite(module, finite, epoch + 1)
            if progress is not None:
                progress(epoch + 1, epochs)
        return steps

    def _check_finite(self, module: nn.Module, finite: torch.Tensor, epoch: int) -> None:
        """Stop a fit whose loss or weights left the finite numbers: its model would sample
        empty values. Checked once an epoch, so a GPU is not made to wait at every step."""
        if bool(finite) and all(bool(torch.isfinite(p).all()) for p in module.parameters()):
            return
        raise ValueError(
            f"TVAE training diverged in epoch {epoch}: the loss or the weights are no longer "
            f"finite; fit again with a learning_rate smaller than {self.learning_rate!r}"
        )

    def _make_private(
        self, module: nn.Module, optimizer: torch.optim.Optimizer, loader: Any
    ) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
        assert self.epsilon is not None
        sample_rate = 1 / len(loader)
        sigma = _noise_multiplier(self.epsilon, self.delta, sample_rate, self.epochs * len(loader))
        self.noise_multiplier_ = sigma
        self.sample_rate_ = sample_rate
        return _private(module, optimizer, loader, sigma, self.max_grad_norm)

    def _loss(self, module: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """Negative ELBO: categorical and Gaussian (learned sigma) likelihoods plus the KL term.

        A scaled value counts only in rows where its column is not null.
        """
        recon, mu, logvar, sigmas = module(batch)
        loss = torch.zeros(batch.shape[0], device=batch.device)
        start, index = 0, 0
        for code in self.codes_:
            if not code.discrete:
                sigma = sigmas[:, index]
                diff = torch.tanh(recon[:, start]) - batch[:, start]
                nll = diff**2 / (2 * sigma**2) + torch.log(sigma)
                if code.nullable:
                    nll = nll * (1 - batch[:, start + code.one_hot])
                loss = loss + nll
                start, index = start + 1, index + 1
            end = start + code.one_hot
            target = batch[:, start:end].argmax(dim=1)
            loss = loss + nn.functional.cross_entropy(recon[:, start:end], target, reduction="none")
            start = end
        kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp(), dim=1)
        return (loss + kl).mean()

    def _draw(
        self, n: int, rng: np.random.Generator, conditions: list[Condition]
    ) -> dict[str, np.ndarray]:
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        noise = torch.randn(n, self.latent, generator=generator)
        with torch.no_grad():
            out = self.network_.decoder(noise.to(self.device_)).cpu().numpy().astype(np.float64)
            sigmas = iter(self.network_.sigma(1)[0].cpu().numpy().astype(np.float64).tolist())
        result, start = {}, 0
        for code in self.codes_:
            sigma = 0.0 if code.discrete else next(sigmas)
            result[code.name] = code.draw(out[:, start : start + code.width], sigma, rng)
            start += code.width
        return result

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {
            f"weight:{k}": v.detach().cpu().numpy() for k, v in self.network_.state_dict().items()
        }
        state: dict[str, Any] = {"codes": [c.to_dict() for c in self.codes_]}
        if hasattr(self, "noise_multiplier_"):
            state["dp"] = {
                "noise_multiplier": self.noise_multiplier_,
                "sample_rate": self.sample_rate_,
                "steps": self.steps_,
            }
        return state, arrays

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.codes_ = [
            ColumnCode(
                name=str(c["name"]),
                discrete=bool(c["discrete"]),
                codes=int(c["codes"]),
                means=tuple(float(v) for v in c["means"]),
                stds=tuple(float(v) for v in c["stds"]),
                nullable=bool(c["nullable"]),
            )
            for c in state["codes"]
        ]
        if [c.name for c in self.codes_] != [c.name for c in self.schema_.modelled_columns]:
            raise ValueError("the column codes do not match the modelled columns")
        self._build()
        expected = self.network_.state_dict()
        weights = {k.removeprefix("weight:"): v for k, v in arrays.items()}
        # Files from before sigmas were learned: those models trained with the fixed _SIGMA.
        legacy = np.full(tuple(expected["log_sigma.weight"].shape), math.log(_SIGMA), np.float32)
        weights.setdefault("log_sigma.weight", legacy)
        if set(weights) != set(expected) or any(
            tuple(weights[k].shape) != tuple(expected[k].shape) for k in expected
        ):
            raise ValueError("the stored weights do not fit the network these parameters build")
        if not all(np.all(np.isfinite(v)) for v in weights.values()):
            raise ValueError("the stored weights are not finite (a diverged fit); fit it again")
        self.network_.load_state_dict(
            {k: torch.from_numpy(np.array(v)) for k, v in weights.items()}
        )
        self.network_.to(self.device_).eval()
        if "dp" in state:
            dp = state["dp"]
            self.noise_multiplier_ = float(dp["noise_multiplier"])
            self.sample_rate_ = float(dp["sample_rate"])
            self.steps_ = int(dp["steps"])
            self.privacy_cost_ = subsampled_gaussian_cost(
                self.sample_rate_, self.noise_multiplier_, self.steps_, label=f"{self.name} DP-SGD"
            )
            self.epsilon_ = self.privacy_cost_.epsilon_at(self.delta)
