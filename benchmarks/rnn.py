"""Recurrent layers: WHILE loops before and after the default pipeline, against the converter.

Three tables (Markdown), every number measured in this run:
1. Fusion: each fixture of FUSION_CASES is optimized with the default pipeline; which ops
   remain, and the largest difference from the input model's LiteRT outputs over five random
   inputs invoked in sequence without reset, for the input and the optimized model in LiteRT
   and TFLM. (The input's TFLM column shows the dynamic-shape accumulator of
   return_sequences=True loops going wrong in TFLM.)
2. Speed and size: for each row of SPEED_CASES, the WHILE input, the optimized model and the
   TF converter's own fused model (tf_keras LSTM, same shape) run on the same random input,
   invokes interleaved (input, optimized, converter, input, ...) after a warm-up; median time
   per invoke (setting the input and reading the output included, the same for all three).
3. Optimizer time: load + default pipeline + serialize on the fixtures and on synthetic Keras-3
   style LSTM loops (keras_lstm_loop, the tests' builder in tests/loop_models.py) with growing
   T and u; best of three.

Rows are plain data: add a fixture to FUSION_CASES, or (label, WHILE fixture, converter
fixture or None) to SPEED_CASES, or a builder to SCALING.

Usage:  python benchmarks/rnn.py [--invokes N] [--passes PIPELINE] > benchmarks/rnn.md
        python benchmarks/rnn.py --litert-grid   (LiteRT invoke time of synthetic LSTM loops,
        fused against kept as a loop, over T, F, u, batch and output kind: the measurements
        behind the --target litert rule of fuse-lstm; appended to benchmarks/rnn.md)
        python benchmarks/rnn.py --loops-only > benchmarks/rnn_loops.md   (issue 5 tables:
        GRU, SimpleRNN, custom cell and unfusable LSTM loops; TFLM run in a child process
        so that a hanging input loop shows as "hangs")
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

import tflgraph
from tflgraph.runtime import runtimes

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
sys.path.insert(0, str(ROOT / "tests"))
from loop_models import keras_lstm_loop  # noqa: E402 (the synthetic loops the tests run too)

FUSION_CASES = [
    "k3_lstm", "k3_lstm_seq", "k3_rnn_lstmcell", "k3_lstm_b4", "k3_lstm_t1",
    "k3_lstm_state_in", "k3_seq2seq", "k3_lstm_return_state", "k3_lstm_stacked", "k3_bilstm",
    "k3_lstm_backwards", "k3_conv1d_lstm", "k3_dense_lstm", "tfk_rnn_lstmcell",
    "tfk_lstm_nobias", "tfk_lstm_return_state", "k3_lstm_big",
    "k3_lstm_relu", "k3_lstm_hardsig", "k3_lstm_masked",  # left alone (see --explain)
]  # fmt: skip

SPEED_CASES = [
    ("LSTM T=10 F=8 u=16", "k3_lstm", "tfk_lstm_fused"),
    ("LSTM T=50 F=40 u=128", "k3_lstm_big", "tfk_lstm_big_fused"),
    ("LSTM T=10 F=8 u=16 seq", "k3_lstm_seq", "tfk_lstm_fused_seq"),
]

# (T, F, u) of synthetic Keras-3 LSTM loops timed in TFLM before and after fusion
INVOKE_SWEEP = [(10, 8, 4), (10, 8, 16), (50, 8, 16), (10, 8, 64), (10, 40, 128), (50, 40, 128)]

# (T, F, u, batch, whole sequence) of synthetic loops timed in LiteRT, fused against the loop
# that the litert pipeline keeps when it does not fuse: the measurements behind the rule
# fuse_lstm.litert_keeps_loop. The full T x F x u grid, then the break-even band filled in,
# then whole-sequence outputs and batches 2 and 4.
LITERT_GRID = (
    [(t, f, u, 1, False) for t in (10, 50) for f in (8, 40, 128)
     for u in (8, 16, 32, 48, 64, 96, 128, 256)]
    + [(t, f, u, 1, False) for t in (10, 50)
       for f, u in ((40, 24), (128, 12), (40, 28), (8, 40))]
    + [(t, f, u, 1, True) for t in (10, 50)
       for f, u in ((8, 16), (8, 32), (40, 32), (40, 48), (8, 64), (128, 32), (40, 64), (40, 96),
                    (40, 128))]
    + [(t, f, u, b, False) for b in (2, 4)
       for t, f, u in ((10, 8, 8), (50, 8, 8), (10, 8, 16), (10, 128, 8), (10, 40, 32),
                       (50, 40, 256))]
)  # fmt: skip

SCALING = [("T", t, lambda t: keras_lstm_loop(t, 40, 128)) for t in (10, 50, 200, 1000)] + [
    ("u", u, lambda u: keras_lstm_loop(50, 40, u)) for u in (16, 64, 128, 256, 512)
]


# --------------------------------------------------------------------------- measuring


def optimized(data: bytes, passes: str, explain: bool = False) -> tuple[bytes, float, list]:
    """(optimized bytes, seconds for load + pipeline + serialize, explanations)."""
    start = time.perf_counter()
    model = tflgraph.load(data)
    records = tflgraph.optimize(model, passes, explain=explain)
    out = tflgraph.to_bytes(model)
    seconds = time.perf_counter() - start
    return out, seconds, [e for r in records for e in r.explanations]


def outputs(data: bytes, runtime: str, samples: int = 5):
    """Outputs of `samples` seeded random inputs invoked in sequence, or the error text."""
    try:
        s = runtimes.Session(data, runtime)
        rng = np.random.default_rng(0)
        return [s.invoke(runtimes.random_inputs(s.inputs, rng)) for _ in range(samples)]
    except runtimes.RuntimeUnavailable as e:
        return str(e)


def max_diff(want, got) -> str:
    if isinstance(got, str):
        return "fails"
    err = max(float(np.max(np.abs(a - b))) for w, g in zip(want, got) for a, b in zip(w, g))
    return f"{err:.1e}"


def fusion_row(name: str, passes: str) -> dict:
    data = (FIXTURES / f"{name}.tflite").read_bytes()
    after, _, why = optimized(data, passes, explain=True)
    ref = outputs(data, "litert")
    ops = tflgraph.load(after).op_counts()
    return {
        "fixture": name,
        "WHILE before": tflgraph.load(data).op_counts().get("WHILE", 0),
        "WHILE after": ops.get("WHILE", 0),
        "fused LSTM ops": ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0),
        "LiteRT after": max_diff(ref, outputs(after, "litert")),
        "TFLM before": max_diff(ref, outputs(data, "tflm")),
        "TFLM after": max_diff(ref, outputs(after, "tflm")),
        "left alone because": _reason(why) if ops.get("WHILE") else "",
    }


def _reason(explanations: list[str]) -> str:
    """The first --explain line without the loop's name and the matcher's details."""
    text = explanations[0].split(": ", 1)[-1] if explanations else "?"
    return text.removeprefix("left alone: ").split(" (")[0]


def median_invoke_us(models: list[bytes], runtime: str, invokes: int, warmup: int = 20):
    sessions = [runtimes.Session(m, runtime) for m in models]
    x = runtimes.random_inputs(sessions[0].inputs, np.random.default_rng(0))
    times = [[] for _ in sessions]
    for i in range(warmup + invokes):
        for s, ts in zip(sessions, times):
            start = time.perf_counter()
            s.invoke(x)
            if i >= warmup:
                ts.append(time.perf_counter() - start)
    return [statistics.median(ts) * 1e6 for ts in times]


def speed_row(label: str, name: str, converter: str | None, passes: str, invokes: int) -> dict:
    data = (FIXTURES / f"{name}.tflite").read_bytes()
    after = optimized(data, passes)[0]
    models = [data, after]
    if converter is not None:
        models.append((FIXTURES / f"{converter}.tflite").read_bytes())
    row = {"layer": label, "bytes WHILE": len(data), "bytes ours": len(after)}
    if converter is not None:
        row["bytes converter"] = len(models[2])
        row["size ours/converter"] = f"{len(after) / len(models[2]):.3f}"
    for rt, short in (("tflm", "TFLM"), ("litert", "LiteRT")):
        us = median_invoke_us(models, rt, invokes)
        row[f"{short} us WHILE"] = f"{us[0]:.1f}"
        row[f"{short} us ours"] = f"{us[1]:.1f}"
        row[f"{short} ours/WHILE"] = f"{us[1] / us[0]:.3f}"
        if converter is not None:
            row[f"{short} us converter"] = f"{us[2]:.1f}"
            row[f"{short} ours/converter"] = f"{us[1] / us[2]:.3f}"
    return row


def cli_row(name: str, passes: str, verify: bool) -> dict:
    """Wall time of `python -m tflgraph optimize` in a fresh process (imports included)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "tflgraph", "optimize", str(FIXTURES / f"{name}.tflite"),
               "-o", str(Path(tmp, "o.tflite")), "-q", "--passes", passes]  # fmt: skip
        cmd.append("--verify" if verify else "--no-verify")
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            best = min(best, time.perf_counter() - start)
    flag = "--verify" if verify else "--no-verify"
    return {
        "model": f"CLI: tflgraph optimize {name} {flag} (wall)",
        "optimize ms": f"{best * 1e3:.0f}",
    }


def sweep_row(steps: int, features: int, units: int, passes: str, invokes: int) -> dict:
    data = keras_lstm_loop(steps, features, units)
    after = optimized(data, passes)[0]
    us = median_invoke_us([data, after], "tflm", invokes)
    return {
        "T": steps, "F": features, "u": units, "TFLM us WHILE": f"{us[0]:.1f}",
        "TFLM us fused": f"{us[1]:.1f}", "fused/WHILE": f"{us[1] / us[0]:.3f}",
        "WHILE us per step over fused": f"{(us[0] - us[1]) / steps:.2f}",
    }  # fmt: skip


def litert_grid_row(
    steps: int, features: int, units: int, batch: int, sequences: bool, invokes: int
) -> dict:
    """LiteRT (default delegates, one thread) on one synthetic LSTM loop: the WHILE input, the
    loop as the litert pipeline keeps it without fuse-lstm (hoisted projection, cleanups) and
    the fused model, invokes interleaved; medians in us. "litert picks" is what the default
    pipeline with --target litert does to the loop."""
    from tflgraph.pipeline import PIPELINES

    data = keras_lstm_loop(steps, features, units, batch, sequences)
    without = [p for p in PIPELINES["default"] if p != "fuse-lstm"]
    loop = optimized_for(data, without, "litert")[0]
    fused = optimized_for(data, "default", "any")[0]  # the same fused op as for litert
    picked = optimized_for(data, "default", "litert")[0]
    is_fused = [
        "UNIDIRECTIONAL_SEQUENCE_LSTM" in tflgraph.load(m).op_counts() for m in (fused, picked)
    ]
    assert is_fused[0]
    us = median_invoke_us([data, loop, fused], "litert", invokes)
    pick = us[2] if is_fused[1] else us[1]
    return {
        "T": steps, "F": features, "u": units, "B": batch,
        "output": "sequence" if sequences else "last", "4u(F+u)": 4 * units * (features + units),
        "us WHILE in": f"{us[0]:.1f}", "us loop kept": f"{us[1]:.1f}", "us fused": f"{us[2]:.1f}",
        "fused/loop kept": f"{us[2] / us[1]:.2f}",
        "litert picks": "fused" if is_fused[1] else "loop",
        "picked/faster": f"{pick / min(us[1], us[2]):.2f}",
    }  # fmt: skip


def timing_row(label: str, data: bytes, passes: str) -> dict:
    after, best, _ = optimized(data, passes)
    for _ in range(2):
        best = min(best, optimized(data, passes)[1])
    fused = tflgraph.load(after).op_counts().get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0)
    return {"model": label, "bytes": len(data), "fused": fused, "optimize ms": f"{best * 1e3:.0f}"}


# --------------------------------------------------------------------------- output

NOTES = """### Reading the numbers

- The fused op is the converter's own UNIDIRECTIONAL_SEQUENCE_LSTM (same weights layout, same
  kernel), so its invoke time matches the converter's model; the files differ by the two FILL
  ops that reset h and c at every invoke (the converter's fused model is stateful: it carries
  h and c into the next invoke) and by shorter tensor names.
- Both runtimes run these float kernels as plain matrix-vector loops: the fused LSTM does the
  same multiply-adds per step as the loop body, so fusing saves the per-step overhead of the
  WHILE loop (about 1-1.7 us per step in TFLM, the last column of the T/u table), not the
  arithmetic. That bounds TFLM's gain near 0.6x at u=16 (0.42x at u=4) and makes it vanish
  at u=128. In LiteRT the loop body's FULLY_CONNECTED ops run in XNNPACK (the default
  delegate) while the fused LSTM kernel does not, so at u=128 the WHILE loop is faster than
  either fused model; with OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES the loop is the
  slower one (checked by hand, not in this table).
- return_sequences=True: TFLM cannot run the dynamic-shape accumulator of the WHILE loop
  ("TFLM before" up to 1.0 off); the fused model is right in TFLM.
"""


def table(title: str, rows: list[dict]) -> str:
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r.get(c, "") for c in cols]
        lines.append(
            "| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in cells) + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--invokes", type=int, default=300, help="timed invokes per model (>= 200)")
    ap.add_argument("--passes", default="default", help="pipeline to optimize with")
    ap.add_argument("--loops-only", action="store_true", help="only the issue-5 loop tables")
    ap.add_argument(
        "--litert-grid", action="store_true", help="only the LiteRT fused-or-loop grid table"
    )
    args = ap.parse_args()
    invokes = max(200, args.invokes)
    if args.litert_grid:
        print(f"`python benchmarks/rnn.py --litert-grid --invokes {args.invokes}`: ")
        print(f"{invokes} interleaved invokes per model; times in us; ai-edge-litert "
              f"{version('ai-edge-litert')}, default delegates, num_threads=1.\n")  # fmt: skip
        rows = [litert_grid_row(*shape, invokes) for shape in LITERT_GRID]
        print(table("LiteRT: fused LSTM against the loop (synthetic loops, same weights)", rows))
        return
    if args.loops_only:
        print(f"`python benchmarks/rnn.py --loops-only --invokes {args.invokes}`: ")
        print(f"{invokes} interleaved invokes per model; times in us.\n")
        loops_report(invokes)
        return
    versions = ", ".join(f"{p} {version(p)}" for p in ("ai-edge-litert", "tflite-micro"))
    print(f"`python benchmarks/rnn.py --invokes {args.invokes} --passes {args.passes}`: ")
    print(f"{invokes} interleaved invokes per model; times in us; {versions}.\n")
    print(table("Fusion and correctness (max abs diff vs the input in LiteRT)", [
        fusion_row(name, args.passes) for name in FUSION_CASES
    ]))  # fmt: skip
    speed = [speed_row(*case, args.passes, invokes) for case in SPEED_CASES]
    print(table("Speed and size against the WHILE input and the converter's fused LSTM", speed))
    rows = [timing_row(name, (FIXTURES / f"{name}.tflite").read_bytes(), args.passes)
            for name in ("k3_lstm", "k3_lstm_big", "k3_bilstm", "k3_seq2seq")]  # fmt: skip
    rows += [timing_row(f"synthetic {ax}={v}", build(v), args.passes) for ax, v, build in SCALING]
    rows += [cli_row("k3_lstm_big", args.passes, verify) for verify in (False, True)]
    print(table("Optimizer time (load + pipeline + serialize, best of 3)", rows))
    sweep = [sweep_row(*shape, args.passes, invokes) for shape in INVOKE_SWEEP]
    print(table("TFLM invoke time against T and u (synthetic loops, same weights)", sweep))
    print(table("Issue 4 acceptance, from the rows above", acceptance(speed[0], rows)))
    print(NOTES)
    loops_report(invokes)


def acceptance(small: dict, timing: list[dict]) -> list[dict]:
    """The issue's targets against the small LSTM row and the 350 KB LSTM's optimize time."""
    big_ms = next(r for r in timing if "k3_lstm_big --no-verify" in r["model"])["optimize ms"]
    checks = [
        ("file size ours/converter <= 1.00", small["size ours/converter"], 1.0),
        ("TFLM invoke ours/WHILE <= 0.40", small["TFLM ours/WHILE"], 0.4),
        ("TFLM invoke ours/converter <= 1.05", small["TFLM ours/converter"], 1.05),
        ("LiteRT invoke ours/converter <= 1.05", small["LiteRT ours/converter"], 1.05),
        ("`tflgraph optimize` k3_lstm_big (CLI wall) <= 1000 ms", big_ms, 1000.0),
    ]
    return [
        {"target (small LSTM T=10 F=8 u=16)": name, "measured": value,
         "met": "yes" if float(value) <= limit else "NO"}
        for name, value, limit in checks
    ]  # fmt: skip


# --------------------------------------------------------------------------- issue 5: loops
# WHILE RNNs that stay loops (GRU, SimpleRNN, custom cells, unfusable LSTMs): static shapes
# for TFLM (static-loop-outputs), loop cleanups, hoisting, fuse-simple-rnn for LiteRT.

# (label, fixture or builder, pipeline, target)
LOOP_CASES = [
    ("GRU reset_after=True", "k3_gru", "default", "any"),
    ("GRU reset_after=True, seq", "k3_gru_seq", "default", "any"),
    ("GRU reset_after=True, B=4", "k3_gru_b4", "default", "any"),
    ("GRU reset_after=False", "k3_gru_reset_before", "default", "any"),
    ("tf_keras GRU reset_after=True", "tfk_gru", "default", "any"),
    ("tf_keras GRU reset_after=False", "tfk_gru_reset_before", "default", "any"),
    ("GRU T=50 F=40 u=64", "k3_gru_big", "default", "any"),
    ("SimpleRNN tanh", "k3_simplernn", "default", "any"),
    ("SimpleRNN relu", "k3_simplernn_relu", "default", "any"),
    ("SimpleRNN tanh, seq", "k3_simplernn_seq", "default", "any"),
    ("SimpleRNN tanh (LiteRT)", "k3_simplernn", "default", "litert"),
    ("SimpleRNN tanh, seq (LiteRT)", "k3_simplernn_seq", "default", "litert"),
    ("custom gated cell, seq", "k3_custom_cell", "default", "any"),
    ("LSTM hard_sigmoid", "k3_lstm_hardsig", "default", "any"),
    ("LSTM relu", "k3_lstm_relu", "default", "any"),
    ("LSTM masked (REDUCE_ANY)", "k3_lstm_masked", "default", "any"),
    ("LSTM seq, kept a loop", "k3_lstm_seq", "loops", "any"),
    ("LSTM B=4 seq, kept a loop", lambda: keras_lstm_loop(10, 8, 16, 4, True), "loops", "any"),
]

LOOP_SPEED_CASES = [  # (label, fixture, pipeline, target)
    ("GRU T=50 F=40 u=64", "k3_gru_big", "default", "any"),
    ("GRU T=50 F=40 u=64 (LiteRT)", "k3_gru_big", "default", "litert"),
    ("SimpleRNN T=10 F=8 u=16", "k3_simplernn", "default", "any"),
    ("SimpleRNN T=10 F=8 u=16 (LiteRT)", "k3_simplernn", "default", "litert"),
    # F > 4u: the hoisted projection is narrower than the input, so TFLM gains from it too
    ("LSTM T=50 F=40 u=8, kept a loop", lambda: keras_lstm_loop(50, 40, 8), "loops", "any"),
]

_TFLM_CHILD = """
import sys, numpy as np
from tflgraph.runtime import runtimes
data = open(sys.argv[1], "rb").read()
s = runtimes.Session(data, "tflm")
rng = np.random.default_rng(0)
outs = [s.invoke(runtimes.random_inputs(s.inputs, rng)) for _ in range(int(sys.argv[3]))]
np.savez(sys.argv[2], *[o for out in outs for o in out])
"""


def tflm_outputs_isolated(data: bytes, samples: int = 5, timeout: float = 20.0):
    """Like outputs(data, "tflm"), in a child process: "hangs" after `timeout` seconds (TFLM
    never finishes some dynamic-shape loops), "fails" if it cannot load or run the model."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model, result = Path(tmp, "m.tflite"), Path(tmp, "out.npz")
        model.write_bytes(data)
        cmd = [sys.executable, "-c", _TFLM_CHILD, str(model), str(result), str(samples)]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "hangs"
        if proc.returncode != 0:
            return "fails"
        with np.load(result) as z:
            flat = [z[f"arr_{i}"] for i in range(len(z.files))]
    per = len(flat) // samples
    return [flat[k * per : (k + 1) * per] for k in range(samples)]


def _model_bytes(source) -> bytes:
    return source() if callable(source) else (FIXTURES / f"{source}.tflite").read_bytes()


def optimized_for(data: bytes, passes: str | list[str], target: str) -> tuple[bytes, list[str]]:
    model = tflgraph.load(data)
    records = tflgraph.optimize(model, passes, target=target, explain=True)
    return tflgraph.to_bytes(model), [e for r in records for e in r.explanations]


def loop_row(label: str, source, passes: str, target: str) -> dict:
    from tflgraph.runtime.targets import unsupported_ops

    data = _model_bytes(source)
    after, _ = optimized_for(data, passes, target)
    ref = outputs(data, "litert")
    ops = tflgraph.load(after).op_counts()
    tflm_before = tflm_outputs_isolated(data)
    tflm_after = tflm_outputs_isolated(after) if target != "litert" else "not for TFLM"
    lacks = unsupported_ops(tflgraph.load(after), "tflm")
    return {
        "model": label,
        "pipeline / target": f"{passes} / {target}",
        "loop after": "WHILE" if ops.get("WHILE") else ", ".join(
            k for k in ops if k.startswith("UNIDIRECTIONAL")),
        "bytes before": len(data),
        "bytes after": len(after),
        "LiteRT after": max_diff(ref, outputs(after, "litert")),
        "TFLM before": tflm_before if isinstance(tflm_before, str) else max_diff(ref, tflm_before),
        "TFLM after": tflm_after if isinstance(tflm_after, str) else max_diff(ref, tflm_after),
        "inspect --target tflm": ", ".join(lacks) or "all ops run",
    }  # fmt: skip


def loop_speed_row(label: str, name, passes: str, target: str, invokes: int) -> dict:
    data = _model_bytes(name)
    after, _ = optimized_for(data, passes, target)
    row = {"model": label, "target": target, "bytes WHILE": len(data), "bytes ours": len(after)}
    from tflgraph.runtime.targets import unsupported_ops

    for rt, short in (("tflm", "TFLM"), ("litert", "LiteRT")):
        if rt == "tflm" and unsupported_ops(tflgraph.load(after), "tflm"):
            continue
        us = median_invoke_us([data, after], rt, invokes)
        row[f"{short} us WHILE"] = f"{us[0]:.1f}"
        row[f"{short} us ours"] = f"{us[1]:.1f}"
        row[f"{short} ours/WHILE"] = f"{us[1] / us[0]:.3f}"
    return row


def fc_floor_us(invokes: int) -> dict:
    """TFLM time of the GRU T=50 F=40 u=64 step's two FULLY_CONNECTED ops alone, x 50: the
    arithmetic every exact float rewrite still has to do (a lower bound for the loop)."""

    def fc(rows: int, k: int, n: int) -> bytes:
        m = tflgraph.Model()
        sg = m.add_subgraph("main")
        x, y = sg.new_tensor("x", (rows, k)), sg.new_tensor("y", (rows, n))
        w = sg.new_constant(np.ones((n, k), np.float32), "w")
        b = sg.new_constant(np.ones(n, np.float32), "b")
        sg.inputs, sg.outputs = [x], [y]
        sg.add_op("FULLY_CONNECTED", [x, w, b], [y], {})
        return tflgraph.to_bytes(m)

    empty = fc(1, 1, 1)  # the invoke overhead of the harness, subtracted
    us = [
        median_invoke_us([m], "tflm", invokes)[0] for m in (empty, fc(1, 40, 192), fc(1, 64, 192))
    ]
    per_step = (us[1] - us[0]) + (us[2] - us[0])
    return {"x W (1x40 by 40x192) us": f"{us[1] - us[0]:.2f}",
            "h U (1x64 by 64x192) us": f"{us[2] - us[0]:.2f}",
            "x 50 steps us": f"{50 * per_step:.1f}"}  # fmt: skip


def _close(cell: str) -> bool:
    """A max-diff cell of the tables is within 1e-5 (not "hangs", "fails" or nan)."""
    try:
        return float(cell) <= 1e-5
    except ValueError:
        return False


def loop_acceptance(rows: list[dict], speed: list[dict], floor: dict) -> list[dict]:
    big = next(r for r in speed if r["model"] == "GRU T=50 F=40 u=64")
    wrong = [f"{r['model']} ({r['TFLM before']})" for r in rows if not _close(r["TFLM before"])]
    ok = [r for r in rows if r["TFLM after"] != "not for TFLM"]
    tflm_fixed = [r["model"] for r in ok if _close(r["TFLM after"])]
    litert_ok = all(float(r["LiteRT after"]) <= 1e-5 for r in rows)
    masked = next(r for r in rows if r["model"].startswith("LSTM masked"))
    floor_ratio = float(floor["x 50 steps us"]) / float(big["TFLM us WHILE"])
    return [
        {"target": "LiteRT outputs equal the input (<= 1e-5), all rows", "measured": "",
         "met": "yes" if litert_ok else "NO"},
        {"target": "TFLM gives the input's LiteRT outputs (rows run on TFLM)",
         "measured": f"{len(tflm_fixed)} of {len(ok)}",
         "met": "yes" if len(tflm_fixed) == len(ok) - 1 else "NO"},  # the masked LSTM cannot
        {"target": "inputs wrong / hanging / failing in TFLM before", "measured":
         "; ".join(wrong), "met": ""},
        {"target": "GRU T=50 TFLM invoke ours/WHILE <= 0.65", "measured": big["TFLM ours/WHILE"],
         "met": "yes" if float(big["TFLM ours/WHILE"]) <= 0.65 else "NO"},
        {"target": "(its two FULLY_CONNECTED alone / WHILE: the exact-float floor)",
         "measured": f"{floor_ratio:.3f}", "met": ""},
        {"target": "GRU T=50 file ours <= input", "measured":
         f"{big['bytes ours']} <= {big['bytes WHILE']}",
         "met": "yes" if big["bytes ours"] <= big["bytes WHILE"] else "NO"},
        {"target": "masked LSTM: correct in LiteRT, reported by inspect --target tflm",
         "measured": f"{masked['LiteRT after']}; {masked['inspect --target tflm']}",
         "met": "yes" if float(masked["LiteRT after"]) <= 1e-5
         and "REDUCE_ANY" in masked["inspect --target tflm"] else "NO"},
    ]  # fmt: skip


def loops_report(invokes: int) -> None:
    rows = [loop_row(*case) for case in LOOP_CASES]
    print(table("Loops that stay loops: correctness (max abs diff vs the input in LiteRT)", rows))
    speed = [loop_speed_row(*case, invokes) for case in LOOP_SPEED_CASES]
    print(table("Loops: speed and size against the WHILE input", speed))
    floor = fc_floor_us(invokes)
    print(table("GRU T=50 F=40 u=64: TFLM time of its FULLY_CONNECTED arithmetic alone", [floor]))
    print(table("Issue 5 acceptance, from the rows above", loop_acceptance(rows, speed, floor)))
    print(LOOP_NOTES)


LOOP_NOTES = """### Reading the loop numbers

- "TFLM before": the converter's whole-sequence accumulator (dynamic-shape SLICE/CONCATENATION)
  makes TFLM hang (GRU, SimpleRNN, custom cell) or return wrong values (LSTM); tf_keras'
  GRU(reset_after=False) splits with SPLIT_V([u, u, -1]), whose zero-size output TFLM cannot
  allocate. After static-loop-outputs (DYNAMIC_UPDATE_SLICE into the preallocated [T, B, u]
  accumulator, static SPLIT) every row that TFLM can run at all gives the input's LiteRT
  outputs. The masked LSTM needs REDUCE_ANY, which TFLM lacks: `inspect --target tflm` says so.
- TFLM's WHILE copies every loop-carried tensor three times per step (into the body, out of
  it, into the condition). Hoisting the GRU's input projection carries [T, B, 3u] instead of
  [T, B, F]: the "(LiteRT)" GRU row is that model, faster in LiteRT, slower in TFLM, which is
  why hoist-input-projection only runs for --target litert when it carries more.
- The GRU T=50 loop is bound by its two FULLY_CONNECTED ops per step: TFLM's float kernel is a
  plain dot-product loop that costs the same per multiply-add whether it runs per step or
  once over all steps, and the step's other ~20 ops and the copies cost about a fifth. No
  exact float rewrite of the loop gets under the FULLY_CONNECTED floor in the table, so the
  0.65x target is out of reach here; the cleanups remove the second counter, the LOGICAL_AND
  condition, the one-row output accumulator and dead carried values (the few percent
  measured). Where F is larger than the projection (the LSTM u=8 row), hoisting also pays in
  TFLM, and hoist-input-projection does it for every target.
"""


if __name__ == "__main__":
    main()
