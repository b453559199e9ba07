"""Distinguishability: can a classifier tell real rows from synthetic ones?

A histogram gradient-boosting classifier is trained on real-vs-synthetic labels; its out-of-fold
propensities give the ROC AUC (0.5 = indistinguishable). The propensity-score pMSE (Snoke et al.)
is, as there defined, the mean of (p - c)^2 with c the synthetic share and p the in-sample
propensity of a logistic regression on the mixed-type row embedding; it is also reported over its
maximum c(1 - c). Identical rows share a cross-validation fold, so a synthetic copy of a real row
is not "recognised" by its real twin carrying the opposite label (which would push the AUC below
0.5).
"""

from __future__ import annotations

from itertools import compress

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, cross_val_predict

from fedsynth.audit.disclosure import row_hashes
from fedsynth.audit.encoding import (
    VALIDATION_FRACTION,
    MixedEmbedding,
    can_stop_early,
    model_matrix,
    observed,
)
from fedsynth.audit.report import DetectionReport
from fedsynth.audit.sampling import sample_rows
from fedsynth.schema import Column

FOLDS = 3
MAX_ITER = 100
LOGISTIC_ITER = 500


def detection(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    columns: list[Column],
    *,
    max_rows: int,
    seed: int,
    notes: list[str],
) -> DetectionReport:
    """Cross-validated AUC and pMSE of a real-vs-synthetic classifier on bounded samples.

    Columns empty in both samples cannot tell the tables apart and are left out of the
    classifier. The AUC is None (with a note in `notes`) when no column is left, or when
    identical rows, which share a fold, leave a fold without rows of one table to train on.
    """
    rng = np.random.default_rng(seed)
    real = sample_rows(real, max_rows, rng)
    synthetic = sample_rows(synthetic, max_rows, rng)
    x_real, categorical = model_matrix(real, columns)
    x_syn, _ = model_matrix(synthetic, columns)
    x = np.vstack([x_real, x_syn])
    y = np.concatenate([np.zeros(len(x_real)), np.ones(len(x_syn))])
    share = len(x_syn) / len(x)
    embedding = MixedEmbedding(columns).fit(real, synthetic)
    design = np.vstack([embedding.transform(real), embedding.transform(synthetic)])
    logistic = LogisticRegression(max_iter=LOGISTIC_ITER).fit(design, y)
    pmse = float(np.mean((logistic.predict_proba(design)[:, 1] - share) ** 2))
    names = [c.name for c in columns]
    groups = np.concatenate([row_hashes(real, names), row_hashes(synthetic, names)])
    return DetectionReport(
        classifier="HistGradientBoostingClassifier",
        folds=FOLDS,
        rows_real=len(x_real),
        rows_synthetic=len(x_syn),
        auc=_auc(x, y, groups, columns, categorical, seed, notes),
        pmse=pmse,
        pmse_ratio=pmse / (share * (1 - share)),
    )


def _auc(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    columns: list[Column],
    categorical: np.ndarray,
    seed: int,
    notes: list[str],
) -> float | None:
    """ROC AUC of out-of-fold propensities; None, with the reason noted, if it cannot be had."""
    keep = observed(x)
    for column in compress(columns, ~keep):
        notes.append(
            f"detection: column {column.name!r} is empty in both tables; the classifier "
            "is trained without it"
        )
    if not keep.any():
        notes.append("detection AUC not measured: every modelled column is empty in both tables")
        return None
    folds = _folds(y, groups, seed)
    if folds is None:
        notes.append(
            "detection AUC not measured: the tables have too few distinct rows for "
            f"{FOLDS}-fold cross-validation (identical rows share a fold)"
        )
        return None
    model = HistGradientBoostingClassifier(
        max_iter=MAX_ITER,
        early_stopping=all(can_stop_early(y[train], stratified=True) for train, _ in folds),
        validation_fraction=VALIDATION_FRACTION,
        categorical_features=categorical[keep],
        random_state=seed,
    )
    propensity = cross_val_predict(model, x[:, keep], y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, propensity))


def _folds(
    y: np.ndarray, groups: np.ndarray, seed: int
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Group folds whose training parts hold rows of both tables; None if there are none.

    Group folds balance sizes, not tables: when a few large groups of identical rows (a
    synthesizer repeating rows) land in one fold, folds stratified by table are tried instead
    (slower on large tables, so only then).
    """
    if len(np.unique(groups)) < FOLDS:
        return None
    for splitter in (
        GroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed),
        StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed),
    ):
        folds = list(splitter.split(y, y, groups))
        if all(len(np.unique(y[train])) == 2 for train, _ in folds):
            return folds
    return None
