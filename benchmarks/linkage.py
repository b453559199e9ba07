"""Record linkage at scale: fedsynth's blocked Dice linker beside anonlink on the same encodings.

Generates two sources of `--n` records each from one population (typos, swapped name parts,
missing middle names, date typos), encodes them with fedsynth's keyed Bloom filters and
blocking tokens, then links them twice, each in its own process so peak RSS is its own:
fedsynth's `Linker`, and the peer anonlink (candidate generation with the same blocks and
its greedy solver). Prints a table and writes benchmarks/results/linkage.json.

    python benchmarks/linkage.py --n 100000 [--peer-python /path/to/python-with-anonlink]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "linkage.json"
TARGET_SECONDS = 60.0
NAME_STEPS = ["strip_accents", "lower", "letters_only", "remove_spaces"]
LINKAGE = {
    "fields": [
        {"column": "first_name", "bloom_hashes": 15, "group": "name", "normalize": NAME_STEPS},
        {"column": "middle_name", "bloom_hashes": 4, "group": "name", "normalize": NAME_STEPS},
        {"column": "last_name", "bloom_hashes": 15, "group": "name", "normalize": NAME_STEPS},
        {"column": "birth_date", "bloom_hashes": 25, "normalize": ["digits_only"]},
    ],
    "exact_key": ["first_name", "last_name", "birth_date"],
    "blocking": [
        {"name": "dob", "parts": [{"column": "birth_date"}]},
        {
            "name": "names",
            "sorted": True,
            "parts": [
                {"column": "first_name", "transform": "soundex"},
                {"column": "last_name", "transform": "soundex"},
            ],
        },
    ],
}


def _peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM resets on exec; ru_maxrss would carry the parent's)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def prepare_data(n: int, seed: int, workdir: Path) -> dict[str, float]:
    """Generate, encode and save both sources; returns the encoding time."""
    from fedsynth.prep.population import two_sources
    from fedsynth.prep.spec import LinkageSpec
    from fedsynth.prep.tokens import LinkageSecret, bloom_from_text, tokenize

    persons = int(np.ceil(n / 0.75)) + 1000
    a, b = two_sources(persons, overlap=0.5, seed=seed)
    a, b = a.iloc[:n].reset_index(drop=True), b.iloc[:n].reset_index(drop=True)
    spec = LinkageSpec.model_validate(LINKAGE)
    secret = LinkageSecret(np.random.default_rng(seed).bytes(32))
    started = time.perf_counter()
    ta, tb = tokenize(a, spec, secret), tokenize(b, spec, secret)
    encode = time.perf_counter() - started
    ta.to_parquet(workdir / "a.parquet", index=False)
    tb.to_parquet(workdir / "b.parquet", index=False)
    arrays = {"truth_a": a["person_id"].to_numpy(), "truth_b": b["person_id"].to_numpy()}
    for side, table in (("a", ta), ("b", tb)):
        arrays[f"bloom_{side}"] = bloom_from_text(table["bf_record"])
        for column in ("blk_dob", "blk_names"):
            arrays[f"{column}_{side}"] = table[column].fillna("").to_numpy().astype("U32")
    np.savez(workdir / "data.npz", **arrays)
    return {"encode_seconds": encode, "records_per_side": float(n)}


def run_ours(workdir: Path, threshold: float) -> None:
    """Child process: link with fedsynth's Linker and write the matched pairs."""
    import pandas as pd

    from fedsynth.prep.linker import Linker

    left = pd.read_parquet(workdir / "a.parquet")
    right = pd.read_parquet(workdir / "b.parquet")
    started = time.perf_counter()
    result = Linker(threshold=threshold).link(left, right)
    seconds = time.perf_counter() - started
    pairs = result.pairs[["left", "right"]].to_numpy(np.int64)
    _write_child(
        workdir / "ours", pairs, seconds, {"pairs_compared": result.report.candidate_pairs}
    )


def run_peer(workdir: Path, threshold: float) -> None:
    """Child process: link the same Bloom filters and blocks with anonlink."""
    from anonlink import candidate_generation, similarities, solving
    from bitarray import bitarray

    with np.load(workdir / "data.npz", allow_pickle=False) as npz:
        data = {key: npz[key] for key in npz.files}
    datasets = []
    for side in ("a", "b"):
        rows = []
        for packed in data[f"bloom_{side}"]:
            bits = bitarray(endian="big")
            bits.frombytes(packed.tobytes())
            rows.append(bits)
        datasets.append(rows)
    blocks = [
        [
            [k for k in (dob, names) if k]
            for dob, names in zip(
                data[f"blk_dob_{side}"].tolist(), data[f"blk_names_{side}"].tolist(), strict=True
            )
        ]
        for side in ("a", "b")
    ]
    started = time.perf_counter()
    candidates = candidate_generation.find_candidate_pairs(
        datasets,
        similarities.dice_coefficient_accelerated,
        threshold,
        blocking_f=lambda ds, rec, _record: blocks[ds][rec],
    )
    groups = solving.greedy_solve(candidates)
    seconds = time.perf_counter() - started
    pairs = []
    for group in groups:
        members = dict(group)
        if len(group) == 2 and 0 in members and 1 in members:
            pairs.append((members[0], members[1]))
    found = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    _write_child(workdir / "peer", found, seconds, {"pairs_above_threshold": len(candidates[0])})


def _write_child(prefix: Path, pairs: np.ndarray, seconds: float, extra: dict[str, int]) -> None:
    np.save(prefix.with_suffix(".npy"), pairs, allow_pickle=False)
    stats = {"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), **extra}
    prefix.with_suffix(".json").write_text(json.dumps(stats))


def _score(workdir: Path, name: str) -> dict[str, float]:
    data = np.load(workdir / "data.npz", allow_pickle=False)
    truth_a, truth_b = data["truth_a"], data["truth_b"]
    pairs = np.load(workdir / f"{name}.npy", allow_pickle=False)
    stats = json.loads((workdir / f"{name}.json").read_text())
    correct = truth_a[pairs[:, 0]] == truth_b[pairs[:, 1]] if len(pairs) else np.array([])
    true_links = len(np.intersect1d(truth_a, truth_b))
    stats["matches"] = len(pairs)
    stats["precision"] = float(correct.mean()) if len(pairs) else 0.0
    stats["recall"] = float(correct.sum() / true_links) if true_links else 0.0
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="records per source")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer-python", default=sys.executable, help="python with anonlink")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--peer-timeout", type=float, default=300.0, help="seconds for the peer")
    parser.add_argument("--role", choices=["main", "ours", "peer"], default="main")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.role == "ours":
        run_ours(args.workdir, args.threshold)
        return
    if args.role == "peer":
        run_peer(args.workdir, args.threshold)
        return
    with tempfile.TemporaryDirectory(prefix="fedsynth-linkage-") as tmp:
        workdir = Path(tmp)
        peer_timeout: float | None = None
        setup = prepare_data(args.n, args.seed, workdir)
        script = str(Path(__file__).resolve())
        common = ["--workdir", tmp, "--threshold", str(args.threshold)]
        subprocess.run([sys.executable, script, "--role", "ours", *common], check=True)
        results = {"fedsynth": _score(workdir, "ours")}
        if not args.no_peer:
            try:
                peer = subprocess.run(
                    [args.peer_python, script, "--role", "peer", *common],
                    timeout=args.peer_timeout,
                )
                if peer.returncode == 0:
                    results["anonlink"] = _score(workdir, "peer")
                else:
                    print("peer run failed (is anonlink installed for --peer-python?)")
            except subprocess.TimeoutExpired:
                peer_timeout = args.peer_timeout
                print(f"anonlink did not finish within {peer_timeout} s")
    ours = results["fedsynth"]
    report = {
        "benchmark": "linkage",
        "records_per_side": args.n,
        "threshold": args.threshold,
        "encode_seconds_both_sides": round(setup["encode_seconds"], 3),
        "results": results,
        "target_seconds": TARGET_SECONDS,
        "peer_timed_out_after_seconds": peer_timeout,
        "meets_target": ours["seconds"] < TARGET_SECONDS
        and ours["precision"] >= 0.99
        and ours["recall"] >= 0.95,
    }
    if "anonlink" in results:
        report["speed_ratio_peer_over_ours"] = round(
            results["anonlink"]["seconds"] / max(ours["seconds"], 1e-9), 2
        )
    print(
        f"{args.n:,} x {args.n:,} records, threshold {args.threshold}; "
        f"encoding both sides: {setup['encode_seconds']:.1f} s"
    )
    print(
        f"{'linker':<10} {'seconds':>9} {'peak RSS MB':>12} {'matches':>8} "
        f"{'precision':>9} {'recall':>7}"
    )
    for name, r in results.items():
        print(
            f"{name:<10} {r['seconds']:>9.2f} {r['peak_rss_mb']:>12.0f} {r['matches']:>8,} "
            f"{r['precision']:>9.4f} {r['recall']:>7.4f}"
        )
    if "speed_ratio_peer_over_ours" in report:
        print(f"anonlink time / fedsynth time: {report['speed_ratio_peer_over_ours']}")
    from fedsynth.files import atomic_write_text

    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
