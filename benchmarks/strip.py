"""strip-dead-channels: file bytes and TFLM invoke time before/after, on channel-pruned models.

Fixtures strip_cnn_{25,50,75} (Conv 16-32-32, max-pool, GAP, Dense 10 on 16x16x3) and
strip_mlp_{25,50,75} (Dense 128-128-10) have that percentage of each hidden layer's channels
zeroed (kernel columns and bias) in Keras before conversion (fixtures/generate.py, section D).
Each is optimized with the default pipeline; then both models run in TFLM on the same random
input, invokes interleaved (before, after, before, after, ...) after a warm-up, and the median
time of each is reported. A timed invoke includes setting the input and reading the output,
which costs the same for both models (their inputs and outputs keep their shapes).

Usage:  python benchmarks/strip.py [--invokes N] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import tflgraph
from tflgraph.runtime import runtimes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CASES = [f"strip_{kind}_{pct}" for kind in ("cnn", "mlp") for pct in (25, 50, 75)]


def timed(session: runtimes.Session, x: list[np.ndarray]) -> float:
    start = time.perf_counter()
    session.invoke(x)
    return time.perf_counter() - start


def measure(name: str, invokes: int, warmup: int = 20) -> dict:
    before = (FIXTURES / f"{name}.tflite").read_bytes()
    model = tflgraph.load(before)
    records = tflgraph.optimize(model, "default")
    after = tflgraph.to_bytes(model)
    stats = next((r.stats for r in records if r.name == "strip-dead-channels" and r.changed), {})
    a, b = runtimes.Session(before, "tflm"), runtimes.Session(after, "tflm")
    x = runtimes.random_inputs(a.inputs, np.random.default_rng(0))
    err = max(float(np.max(np.abs(p - q))) for p, q in zip(a.invoke(x), b.invoke(x)))
    for _ in range(warmup):
        a.invoke(x), b.invoke(x)
    ta, tb = [], []
    for _ in range(invokes):
        ta.append(timed(a, x))
        tb.append(timed(b, x))
    removed = sum(s["out_channels"] for s in stats.get("layers", {}).values())
    return {
        "model": name,
        "channels removed": removed,
        "bytes before": len(before),
        "bytes after": len(after),
        "size ratio": len(after) / len(before),
        "TFLM us before": statistics.median(ta) * 1e6,
        "TFLM us after": statistics.median(tb) * 1e6,
        "speedup": statistics.median(ta) / statistics.median(tb),
        "max abs diff": err,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--invokes", type=int, default=300, help="timed invokes per model (>= 200)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    rows = [measure(name, max(200, args.invokes)) for name in CASES]
    cols = list(rows[0])
    fmt = {
        "size ratio": "{:.3f}",
        "speedup": "{:.2f}x",
        "max abs diff": "{:.1e}",
        "TFLM us before": "{:.1f}",
        "TFLM us after": "{:.1f}",
    }
    cells = [
        [fmt.get(c, "{:,}" if isinstance(r[c], int) else "{}").format(r[c]) for c in cols]
        for r in rows
    ]
    if args.markdown:
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for row in cells:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
        for row in cells:
            print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    main()
