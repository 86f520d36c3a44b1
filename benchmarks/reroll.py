"""Unrolled RNNs (`unroll=True`) before and after the default pipeline (the reroll pass).

For each unrolled fixture of CASES, optimized with the default pipeline (`--target any`):
size and op count before and after, against the TF converter's own fused LSTM file for the same
layer where there is one; TFLM's smallest arena (tflgraph.runtime.tflm_check: bisected, with
print_allocations' total) before and after; the largest error of the re-rolled model against
the unrolled one in LiteRT and in TFLM, relative to max(1, max |output|) (the equivalence
checker's measure: 1e-5 is its bound), over five random inputs invoked in sequence without
reset; and the median TFLM and LiteRT invoke times of both, interleaved.

With --int8: the converter's int8 unrolled models of INT8 instead, optimized with
`--target tflm --requantize STEPS` (reroll.requantize): size, op count, TFLM arena, and the
largest output difference from the input model in quantization steps (and as a share of the
255 steps of an int8 output's range) in LiteRT's builtin kernels and in TFLM, five random
inputs invoked in a row without reset; and both models' error against the float network the
int8 one stands for (its weights dequantized, every value float32: `as_float`), in steps of
the output, in LiteRT.

Usage:  python benchmarks/reroll.py [--invokes N] > benchmarks/reroll.md
        python benchmarks/reroll.py --int8   (the table appended to benchmarks/reroll.md)
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from rnn import FIXTURES, median_invoke_us, optimized, table

import tflgraph
from tflgraph.io.schema import TENSOR_TYPES
from tflgraph.ir import Buffer
from tflgraph.pipeline import optimize
from tflgraph.reference.equivalence import magnitude, max_error
from tflgraph.rnn.reroll_requant import output_steps
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
    ("k3_gru16_unroll_t50", None),  # k3_gru_unroll's layer at T=50
    ("tfk_lstm_unroll_t50", "tfk_lstm_fused"),
    ("tfk_gru_unroll_t50", None),
    ("k3_simplernn_unroll_t50", None),
    ("tfk_simplernn_unroll_t50", None),
    ("k3_custom_cell_unroll_t50", None),
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
# converter int8 unrolled models (every step its own scales) -> the --requantize bound
INT8 = {
    "k3_lstm_unroll_bnone_int8": 20,
    "k3_gru_unroll_int8": 10,
    "k3_simplernn_unroll_seq_int8": 20,
    "k3_lstm_unroll_int8_floatio": 20,
}


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


def steps_error(before: bytes, after: bytes, runtime: str) -> str:
    """Largest |after - before| in quantization steps over five random inputs in a row
    (LiteRT: builtin kernels), and as a share of an int8 output's 255 steps."""
    try:
        s = runtimes.Session(before, "litert", kernels="builtin")
        rng = np.random.default_rng(0)
        feeds = [runtimes.random_inputs(s.inputs, rng) for _ in range(5)]
        want, got = (runtimes.run(d, feeds, runtime, kernels="builtin") for d in (before, after))
    except runtimes.RuntimeUnavailable as e:
        return f"fails: {str(e)[:40]}"
    steps = output_steps(tflgraph.load(before))  # 1, or a float output's DEQUANTIZE scale
    err = max(
        round(float(np.abs(a.astype(np.float64) - b).max()) / step)
        for w, g in zip(want, got)
        for a, b, step in zip(w, g, steps)
    )
    return f"{err} ({100 * err / 255:.1f}%)"


def as_float(data: bytes) -> bytes:
    """The int8 model as the float network it quantizes: constants dequantized, every
    quantized tensor float32, QUANTIZE and DEQUANTIZE ops dropped."""
    model = tflgraph.load(data)
    for sg in model.subgraphs:
        for t in sg.tensors:
            if not t.is_quantized:
                continue
            if t.is_constant:
                q, d = t.quantization, t.data.astype(np.float64)
                shape = [-1 if k == q.get("quantized_dimension", 0) else 1 for k in range(d.ndim)]
                scale = np.reshape(q["scale"], shape if len(q["scale"]) > 1 else ())
                zero = np.reshape(q["zero_point"], shape if len(q["zero_point"]) > 1 else ())
                real = ((d - zero) * scale).astype(np.float32)
                t.buffer = Buffer(np.frombuffer(real.tobytes(), np.uint8))
            t.type, t.quantization = TENSOR_TYPES["FLOAT32"], None
        for op in [op for op in sg.operators if op.type in ("QUANTIZE", "DEQUANTIZE")]:
            sg.replace_all_uses(op.outputs[0], op.inputs[0])
            sg.remove_op(op)
    return tflgraph.to_bytes(model)


def float_error(int8: list[bytes], data: bytes) -> str:
    """Largest error of each int8 model against `as_float(data)` on five random inputs in a
    row (LiteRT builtin kernels), in quantization steps of the output: 'unrolled ->
    re-rolled'."""
    s = runtimes.Session(data, "litert", kernels="builtin")
    rng = np.random.default_rng(0)
    feeds = [runtimes.random_inputs(s.inputs, rng) for _ in range(5)]
    real_feeds = [[x.astype(np.float32) for x in real(f, s.inputs)] for f in feeds]
    want = runtimes.run(as_float(data), real_feeds, "litert", kernels="builtin")
    steps = output_steps(tflgraph.load(data))
    errors = []
    for model in int8:
        got = runtimes.run(model, feeds, "litert", kernels="builtin")
        errors.append(max(
            round(float(np.abs(w - r).max()) / (d.scale or step))
            for ws, gs in zip(want, got)
            for w, r, d, step in zip(ws, real(gs, s.outputs), s.outputs, steps)
        ))  # fmt: skip
    return " -> ".join(map(str, errors))


def real(values: list, details: list) -> list:
    """Quantized arrays as the real values they stand for (float ones as they are)."""
    return [
        (v.astype(np.float64) - d.zero_point) * d.scale if d.scale else v
        for v, d in zip(values, details)
    ]


def int8_row(name: str, bound: float) -> dict:
    data = (FIXTURES / f"{name}.tflite").read_bytes()
    start = time.perf_counter()
    model = tflgraph.load(data)
    optimize(model, "default", target="tflm", options={"reroll": {"requantize": bound}})
    after = tflgraph.to_bytes(model)
    seconds = time.perf_counter() - start
    before_ops = sum(tflgraph.load(data).op_counts().values())
    counts = model.op_counts()
    return {
        "fixture": name,
        "--requantize": f"{bound:g}",
        "bytes before -> after": f"{len(data):,} -> {len(after):,}",
        "ops before -> after": f"{before_ops} -> {sum(counts.values())}",
        "recurrent ops after": ", ".join(f"{k} {v}" for k, v in counts.items() if k in RECURRENT),
        "TFLM arena before -> after": f"{arena(data)} -> {arena(after)}",
        "LiteRT builtin max error, steps": steps_error(data, after, "litert"),
        "TFLM max error, steps": steps_error(data, after, "tflm"),
        "error against the float network, steps": float_error([data, after], data),
        "optimize s": f"{seconds:.2f}",
    }


RECURRENT = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN", "WHILE", "UNPACK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--invokes", type=int, default=200, help="timed TFLM invokes per model")
    ap.add_argument("--int8", action="store_true", help="the int8 models with --requantize")
    ap.add_argument("names", nargs="*", help="fixtures (default: CASES)")
    args = ap.parse_args()
    if args.int8:
        rows = [int8_row(n, b) for n, b in INT8.items() if not args.names or n in args.names]
        print(table("int8 unrolled RNNs re-rolled with --requantize (--target tflm)", rows))
        return
    cases = [c for c in CASES if not args.names or c[0] in args.names]
    rows = []
    for name, converter in cases:
        rows.append(row(name, converter, args.invokes))
        print(f"done {name}", file=sys.stderr, flush=True)
    print(table("Unrolled RNNs re-rolled (default pipeline, --target any)", rows))


if __name__ == "__main__":
    main()
