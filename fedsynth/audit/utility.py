"""Utility: train on synthetic, test on real (TSTR) against train on real, test on real (TRTR).

Both models are the same histogram gradient-boosting learner, trained on equally many rows and
tested on the same real holdout, so the ratio measures what the synthetic data lost for the task.
"""

from __future__ import annotations

from itertools import compress

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

from fedsynth.audit.columns import as_codes, as_float, is_discrete, labels
from fedsynth.audit.encoding import VALIDATION_FRACTION, can_stop_early, model_matrix, observed
from fedsynth.audit.report import UtilityReport
from fedsynth.audit.sampling import sample_rows
from fedsynth.schema import Column

MAX_ITER = 100
LOWER_IS_BETTER = frozenset({"mae"})
TABLES = {"tstr": "synthetic table", "trtr": "training table"}


def utility(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    columns: list[Column],
    target: Column,
    *,
    max_rows: int,
    seed: int,
    notes: list[str],
) -> UtilityReport | None:
    """TSTR and TRTR scores for predicting `target` from the other `columns`.

    A feature empty in a training table is left out of that table's model; a model left with
    no feature predicts the training target's distribution. None (with a note in `notes`) when
    a table has no value in the target.
    """
    rng = np.random.default_rng(seed)
    features = [c for c in columns if c.name != target.name]
    if not features:
        raise ValueError(f"utility target {target.name!r} is the only modelled column")
    size = min(len(train), len(synthetic), max_rows)
    train = sample_rows(train, size, rng)
    synthetic = sample_rows(synthetic, size, rng)
    x_test, y_test = _xy(holdout, features, target)
    if len(y_test) == 0:
        notes.append(_no_target("holdout table", target))
        return None
    classification = is_discrete(target)
    _, categorical = model_matrix(holdout.iloc[:0], features)
    scores = {}
    for name, frame in (("tstr", synthetic), ("trtr", train)):
        x, y = _xy(frame, features, target)
        if len(y) == 0:
            notes.append(_no_target(TABLES[name], target))
            return None
        keep = observed(x)
        for column in compress(features, ~keep):
            notes.append(
                f"utility: column {column.name!r} is empty in the {TABLES[name]}; "
                f"the {name.upper()} model is trained without it"
            )
        fit = (x[:, keep], y, x_test[:, keep], y_test, categorical[keep], seed)
        if classification:
            scores[name] = _classify(*fit, n_labels=len(labels(target)))
        else:
            scores[name] = _regress(*fit)
    ratio = {m: _ratio(m, scores["tstr"][m], scores["trtr"][m]) for m in scores["tstr"]}
    primary = "macro_f1" if classification else "r2"
    return UtilityReport(
        target=target.name,
        task="classification" if classification else "regression",
        model="HistGradientBoosting" + ("Classifier" if classification else "Regressor"),
        rows_train=size,
        rows_test=len(y_test),
        tstr=scores["tstr"],
        trtr=scores["trtr"],
        ratio=ratio,
        primary_metric=primary,
        primary_ratio=ratio[primary],
    )


def _no_target(table: str, target: Column) -> str:
    return f"utility not measured: the {table} has no value in target {target.name!r}"


def _xy(df: pd.DataFrame, features: list[Column], target: Column) -> tuple[np.ndarray, np.ndarray]:
    x, _ = model_matrix(df, features)
    if is_discrete(target):
        y = as_codes(df[target.name], target)
        keep = y >= 0
    else:
        y = as_float(df[target.name], target)
        keep = ~np.isnan(y)
    return x[keep], y[keep]


def _classify(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    categorical: np.ndarray,
    seed: int,
    *,
    n_labels: int,
) -> dict[str, float | None]:
    if x.shape[1] == 0 or len(np.unique(y)) < 2:
        # nothing to learn from: predict the training class shares
        shares = np.bincount(y, minlength=n_labels) / len(y)
        predicted = np.full(len(y_test), shares.argmax())
        proba = np.tile(shares, (len(y_test), 1))
    else:
        model = HistGradientBoostingClassifier(
            max_iter=MAX_ITER,
            early_stopping=can_stop_early(y, stratified=True),
            validation_fraction=VALIDATION_FRACTION,
            categorical_features=categorical,
            random_state=seed,
        ).fit(x, y)
        predicted = model.predict(x_test)
        proba = np.zeros((len(y_test), n_labels))
        proba[:, model.classes_.astype(np.int64)] = model.predict_proba(x_test)
    return {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "macro_f1": float(f1_score(y_test, predicted, average="macro", zero_division=0)),
        "roc_auc": _roc_auc(y_test, proba),
    }


def _roc_auc(y_test: np.ndarray, proba: np.ndarray) -> float | None:
    present = np.unique(y_test)
    if len(present) < 2:
        return None
    if len(present) == 2:
        return float(roc_auc_score(y_test == present[1], proba[:, present[1]]))
    sub = proba[:, present]
    totals = sub.sum(axis=1, keepdims=True)
    sub = np.where(totals > 0, sub / np.where(totals > 0, totals, 1), 1.0 / len(present))
    return float(roc_auc_score(y_test, sub, multi_class="ovr", labels=present))


def _regress(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    categorical: np.ndarray,
    seed: int,
) -> dict[str, float | None]:
    if x.shape[1] == 0:
        predicted = np.full(len(y_test), y.mean())
    else:
        model = HistGradientBoostingRegressor(
            max_iter=MAX_ITER,
            early_stopping=can_stop_early(y, stratified=False),
            validation_fraction=VALIDATION_FRACTION,
            categorical_features=categorical,
            random_state=seed,
        ).fit(x, y)
        predicted = model.predict(x_test)
    return {
        "r2": float(r2_score(y_test, predicted)),
        "mae": float(mean_absolute_error(y_test, predicted)),
    }


def _ratio(metric: str, tstr: float | None, trtr: float | None) -> float | None:
    if tstr is None or trtr is None:
        return None
    numerator, denominator = (trtr, tstr) if metric in LOWER_IS_BETTER else (tstr, trtr)
    if denominator <= 0:
        return None
    return float(numerator / denominator)
