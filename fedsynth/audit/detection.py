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

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict

from fedsynth.audit.disclosure import row_hashes
from fedsynth.audit.encoding import MixedEmbedding, model_matrix
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
) -> DetectionReport:
    """Cross-validated AUC and pMSE of a real-vs-synthetic classifier on bounded samples."""
    rng = np.random.default_rng(seed)
    real = sample_rows(real, max_rows, rng)
    synthetic = sample_rows(synthetic, max_rows, rng)
    x_real, categorical = model_matrix(real, columns)
    x_syn, _ = model_matrix(synthetic, columns)
    x = np.vstack([x_real, x_syn])
    y = np.concatenate([np.zeros(len(x_real)), np.ones(len(x_syn))])
    model = HistGradientBoostingClassifier(
        max_iter=MAX_ITER,
        early_stopping=True,
        categorical_features=categorical,
        random_state=seed,
    )
    names = [c.name for c in columns]
    groups = np.concatenate([row_hashes(real, names), row_hashes(synthetic, names)])
    folds = GroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    propensity = cross_val_predict(model, x, y, groups=groups, cv=folds, method="predict_proba")[
        :, 1
    ]
    share = len(x_syn) / len(x)
    embedding = MixedEmbedding(columns).fit(real, synthetic)
    design = np.vstack([embedding.transform(real), embedding.transform(synthetic)])
    logistic = LogisticRegression(max_iter=LOGISTIC_ITER).fit(design, y)
    pmse = float(np.mean((logistic.predict_proba(design)[:, 1] - share) ** 2))
    return DetectionReport(
        classifier="HistGradientBoostingClassifier",
        folds=FOLDS,
        rows_real=len(x_real),
        rows_synthetic=len(x_syn),
        auc=float(roc_auc_score(y, propensity)),
        pmse=pmse,
        pmse_ratio=pmse / (share * (1 - share)),
    )
