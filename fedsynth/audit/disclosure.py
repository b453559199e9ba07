"""Identity disclosure, overfitting (distance to closest record) and membership inference, by
distance and by exact quasi-identifier values.

Copies beyond chance: a synthetic row that copies a training row hits an equal-size training
sample with probability |sample| / |train|, while chance coincidences hit it as often as they hit
the holdout; so (sample rate - holdout rate) * |train| / |sample| estimates the share of
synthetic rows that are copies, whatever duplicates the population has by nature.

Membership by exact quasi-identifiers: an attacker who knows a person's quasi-identifiers asks
whether that exact combination occurs in the synthetic data. Members (training rows) answering yes
more often than non-members (holdout rows) is a leak the distance attack can miss, e.g. when a
synthesizer reuses training values column by column without copying whole rows.

Exact copies and combinations are found by hashing rows. Distances are the mixed-type distance of
`MixedEmbedding`; nearest neighbours are searched by scikit-learn's brute-force kneighbors in
bounded query chunks, so no full distance matrix is ever held in memory.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from fedsynth.audit.encoding import MixedEmbedding
from fedsynth.audit.report import (
    DistanceToClosestRecord,
    Histogram,
    IdentityDisclosure,
    MembershipInference,
    QuasiIdentifierMembership,
)
from fedsynth.audit.sampling import equal_size_pair, sample_rows
from fedsynth.schema import Column

QUERY_CHUNK = 2048
HISTOGRAM_BINS = 30
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)


def row_hashes(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One 64-bit hash per row over `columns` (equal rows, equal hashes)."""
    if not columns:
        return np.zeros(len(df), dtype=np.uint64)
    return pd.util.hash_pandas_object(df[columns], index=False).to_numpy()


def identity_disclosure(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame | None,
    columns: list[Column],
    quasi_identifiers: list[Column],
    rng: np.random.Generator,
) -> IdentityDisclosure:
    """Exact copies of training rows, overall and of rows unique on their quasi-identifiers."""
    names = [c.name for c in columns]
    qi_names = [c.name for c in quasi_identifiers]
    syn = row_hashes(synthetic, names)
    exact = float(np.isin(syn, row_hashes(train, names)).mean()) if len(syn) else 0.0
    unique_rate, unique_count = _unique_match_rate(train, syn, names, qi_names)
    report = IdentityDisclosure(
        columns=names,
        quasi_identifiers=qi_names,
        exact_match_rate=exact,
        qi_unique_records=unique_count,
        unique_match_rate=unique_rate,
    )
    if holdout is None:
        return report
    train_ref, holdout_ref = equal_size_pair(train, holdout, len(holdout), rng)
    reference = float(np.isin(syn, row_hashes(train_ref, names)).mean())
    control = float(np.isin(syn, row_hashes(holdout_ref, names)).mean())
    report.reference_exact_match_rate = reference
    report.holdout_exact_match_rate = control
    excess = (reference - control) * len(train) / len(train_ref)
    report.exact_match_excess = float(np.clip(excess, -1.0, 1.0))
    report.holdout_unique_match_rate = _unique_match_rate(holdout, syn, names, qi_names)[0]
    return report


def _unique_match_rate(
    real: pd.DataFrame, synthetic_hashes: np.ndarray, names: list[str], qi_names: list[str]
) -> tuple[float | None, int]:
    qi = row_hashes(real, qi_names)
    values, counts = np.unique(qi, return_counts=True)
    unique = np.isin(qi, values[counts == 1])
    if not unique.any():
        return None, 0
    copied = np.isin(row_hashes(real.loc[unique], names), synthetic_hashes)
    return float(copied.mean()), int(unique.sum())


def quasi_identifier_membership(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame | None,
    quasi_identifiers: list[Column],
    *,
    max_rows: int,
    rng: np.random.Generator,
) -> QuasiIdentifierMembership:
    """Shares of training and holdout rows whose exact quasi-identifier combination occurs in
    `synthetic`, and their difference (the attacker's advantage).

    The shares are per-row rates, so each side is sampled on its own (at most `max_rows` rows)
    rather than cut to a common size.
    """
    names = [c.name for c in quasi_identifiers]
    present = row_hashes(synthetic, names)
    members = sample_rows(train, max_rows, rng)
    member_rate = _combination_rate(members, present, names)
    report = QuasiIdentifierMembership(
        quasi_identifiers=names, members=len(members), member_match_rate=member_rate
    )
    if holdout is None:
        return report
    non_members = sample_rows(holdout, max_rows, rng)
    non_member_rate = _combination_rate(non_members, present, names)
    report.non_members = len(non_members)
    report.non_member_match_rate = non_member_rate
    report.advantage = member_rate - non_member_rate
    return report


def _combination_rate(rows: pd.DataFrame, synthetic_hashes: np.ndarray, names: list[str]) -> float:
    if len(rows) == 0:
        return 0.0
    return float(np.isin(row_hashes(rows, names), synthetic_hashes).mean())


def nearest_distances(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row, chunk by chunk."""
    index = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(reference)
    out = np.empty(len(queries), dtype=np.float64)
    for start in range(0, len(queries), QUERY_CHUNK):
        stop = start + QUERY_CHUNK
        out[start:stop] = index.kneighbors(queries[start:stop], return_distance=True)[0][:, 0]
    return out


def distance_to_closest_record(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame | None,
    embedding: MixedEmbedding,
    *,
    max_queries: int,
    max_reference: int,
    rng: np.random.Generator,
) -> DistanceToClosestRecord:
    """DCR from a synthetic sample to training rows, and to an equal-size holdout if given."""
    queries = embedding.transform(sample_rows(synthetic, max_queries, rng))
    if holdout is None:
        train_ref = sample_rows(train, max_reference, rng)
        to_train = nearest_distances(queries, embedding.transform(train_ref))
        return DistanceToClosestRecord(
            synthetic_rows=len(queries),
            reference_rows=len(train_ref),
            train_quantiles=_quantiles(to_train),
            histogram=_histogram(to_train, None),
        )
    train_ref, holdout_ref = equal_size_pair(train, holdout, max_reference, rng)
    to_train = nearest_distances(queries, embedding.transform(train_ref))
    to_holdout = nearest_distances(queries, embedding.transform(holdout_ref))
    closer = np.mean(to_train < to_holdout) + 0.5 * np.mean(to_train == to_holdout)
    return DistanceToClosestRecord(
        synthetic_rows=len(queries),
        reference_rows=len(train_ref),
        train_quantiles=_quantiles(to_train),
        holdout_quantiles=_quantiles(to_holdout),
        share_closer_to_train=float(closer),
        histogram=_histogram(to_train, to_holdout),
    )


def membership_inference(
    train: pd.DataFrame,
    synthetic: pd.DataFrame,
    holdout: pd.DataFrame,
    embedding: MixedEmbedding,
    *,
    max_queries: int,
    max_reference: int,
    rng: np.random.Generator,
) -> MembershipInference:
    """AUC of scoring members above non-members by closeness to the synthetic data."""
    half = max(max_queries // 2, 1)
    members, non_members = equal_size_pair(train, holdout, half, rng)
    reference = embedding.transform(sample_rows(synthetic, max_reference, rng))
    distances = nearest_distances(
        embedding.transform(pd.concat([members, non_members], ignore_index=True)), reference
    )
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(non_members))])
    return MembershipInference(
        members=len(members),
        non_members=len(non_members),
        auc=float(roc_auc_score(labels, -distances)),
    )


def _quantiles(distances: np.ndarray) -> dict[str, float]:
    return {f"p{round(q * 100):02d}": float(np.quantile(distances, q)) for q in QUANTILES}


def _histogram(train: np.ndarray, holdout: np.ndarray | None) -> Histogram:
    pooled = train if holdout is None else np.concatenate([train, holdout])
    edges = np.histogram_bin_edges(pooled, bins=HISTOGRAM_BINS)
    return Histogram(
        edges=edges.tolist(),
        train=np.histogram(train, bins=edges)[0].tolist(),
        holdout=None if holdout is None else np.histogram(holdout, bins=edges)[0].tolist(),
    )
