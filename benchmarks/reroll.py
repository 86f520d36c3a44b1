"""Unrolled RNNs (`unroll=True`) before and after the default pipeline (the reroll pass).

For each unrolled fixture of CASES, optimized with the default pipeline (`--target any`):
size and op count before and after, against the TF converter's own fused LSTM file for the same
layer where there is one; TFLM's smallest arena (tflgraph.runtime.tflm_check: bisected, with
print_allocations' total) before and after; the largest error of the re-rolled model against
the unrolled one in LiteRT and in TFLM, relative to max(1, max |output|) (the equivalence
checker's measure: 1e-5 is its bound), over five random inputs invoked in sequence without
reset; and the median TFLM and LiteRT invoke times of both, interleaved.

Usage:  python benchmarks/reroll.py [--invokes N] > benchmarks/reroll.md
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from rnn import FIXTURES, median_invoke_us, optimized, table

import tflgraph
from tflgraph.reference.equivalence import magnitude, max_error
from tflgraph.runtime import runtimes, tflm_check

# (unrolled fixture, the converter's fused file for the same layer or None)
CASES = [
    ("k3_lstm_unroll", "tfk_lstm_fused"),
    ("tfk_lstm_unroll", "tfk_lstm_fused"),
    ("k3_lstm_unroll_seq", "tfk_lstm_fused_seq"),
    ("tfk_lstm_unroll_seq", "tfk_lstm_fused_seq"),
    ("k3_lstm_unroll_t50", "tfk_lstm_big_fused"),
    ("k3_lstm_unroll_stacked", None),
    ("k3_bilstm_unroll", None),
    ("k3_lstm_unroll_dense", None),
    ("k3_lstm_unroll_backwards", "tfk_lstm_fused"),
    ("k3_lstm_unroll_b4", None),
    ("k3_lstm_unroll_bnone", "tfk_lstm_fused"),
    ("k3_gru_unroll", None),
    ("tfk_gru_unroll", None),
    ("k3_gru_unroll_seq", None),
    ("k3_gru_unroll_t50", None),
    ("k3_simplernn_unroll", None),
    ("tfk_simplernn_unroll", None),
    ("k3_simplernn_unroll_seq", None),
    ("k3_custom_cell_unroll", None),
    ("k3_relu_lstm_unroll_stacked", None),  # relu: the last step fuses ADD + RELU of c_T
    ("k3_relu_lstm_unroll_dynrange", None),
    ("k3_gru_unroll_dynrange", None),
    ("k2_lstm_unroll_tf215", "tfk_lstm_fused"),
    ("k2_gru_unroll_bnone_tf215", None),
    ("k3_lstm_unroll_bnone_int8", None),
]


def relative_error(want: list, got: list) -> float:
    """max over invokes and outputs of |want - got| / max(1, max |want|)."""
    return max(max_error(a, b) / magnitude(a) for w, g in zip(want, got) for a, b in zip(w, g))


def runs(data: bytes, runtime: str, samples: int = 5) -> list:
    s = runtimes.Session(data, runtime)
    rng = np.random.default_rng(0)
    return [s.invoke(runtimes.random_inputs(s.inputs, rng)) for _ in range(samples)]


def arena(data: bytes) -> str:
    report = tflm_check.check(tflgraph.load(data), data)
    return f"{report.arena_bytes:,}" if report.arena_bytes else report.verdict


def row(name: str, converter: str | None, invokes: int) -> dict:
    data = (FIXTURES / f"{name}.tflite").read_bytes()
    after, seconds, _ = optimized(data, "default")
    before_ops = sum(tflgraph.load(data).op_counts().values())
    counts = tflgraph.load(after).op_counts()
    out = {
        "fixture": name,
        "bytes before -> after": f"{len(data):,} -> {len(after):,}",
        "after/before": f"{len(after) / len(data):.2f}x",
        "after/converter's fused": "",
        "ops before -> after": f"{before_ops} -> {sum(counts.values())}",
        "recurrent ops after": ", ".join(f"{k} {v}" for k, v in counts.items() if k in RECURRENT),
    }
    if converter is not None:
        fused = (FIXTURES / f"{converter}.tflite").stat().st_size
        out["after/converter's fused"] = f"{len(after) / fused:.3f}x ({converter})"
    out["TFLM arena before -> after"] = f"{arena(data)} -> {arena(after)}"
    for rt, short in (("litert", "LiteRT"), ("tflm", "TFLM")):
        try:
            err = relative_error(runs(data, rt), runs(after, rt))
            out[f"{short} rel. error"] = f"{err:.1e}"
        except runtimes.RuntimeUnavailable as e:
            out[f"{short} rel. error"] = f"fails: {str(e)[:40]}"
    for rt, short in (("tflm", "TFLM"), ("litert", "LiteRT")):
        try:
            us = median_invoke_us([data, after], rt, invokes)
            out[f"{short} us before -> after"] = f"{us[0]:.0f} -> {us[1]:.0f}"
        except runtimes.RuntimeUnavailable:
            out[f"{short} us before -> after"] = f"(input fails in {short})"
    out["optimize s"] = f"{seconds:.2f}"
    return out


RECURRENT = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN", "WHILE", "UNPACK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--invokes", type=int, default=200, help="timed TFLM invokes per model")
    ap.add_argument("names", nargs="*", help="fixtures (default: CASES)")
    args = ap.parse_args()
    cases = [c for c in CASES if not args.names or c[0] in args.names]
    rows = []
    for name, converter in cases:
        rows.append(row(name, converter, args.invokes))
        print(f"done {name}", file=sys.stderr, flush=True)
    print(table("Unrolled RNNs re-rolled (default pipeline, --target any)", rows))


if __name__ == "__main__":
    main()
