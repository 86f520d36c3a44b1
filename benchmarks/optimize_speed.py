"""Time of `tflgraph.optimize` (the default passes, in process) against load + save of the
same model, with the time of every pass.

The model is fixtures/generate.py's `k3_speech_18loops`: a speech-enhancement-like Keras 3
stack converted by TF 2.21 (18 WHILE loops, 921 ops over 37 subgraphs, 2.1 MB). It is too large
to commit, so make it first with the fixtures' converter venv (fixtures/README.md), then time it
in tflgraph's venv:

    /work/fxvenv/bin/python fixtures/generate.py k3_speech_18loops --out /tmp/models
    python benchmarks/optimize_speed.py /tmp/models/k3_speech_18loops.tflite [--repeat 9]

Each repeat measures, interleaved: (a) load + save, (b) load, optimize and save, each step
timed. The table gives medians; `optimize / (load + save)` is the figure of issue 10's
acceptance (at most 2x). A pass's time includes the dead-code removal the driver runs after it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import tflgraph


def load_save(src: str, dst: str) -> float:
    start = time.perf_counter()
    tflgraph.save(tflgraph.load(src), dst)
    return time.perf_counter() - start


def load_optimize_save(src: str, dst: str) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds of load, optimize and save; seconds of each pass (summed over iterations)."""
    start = time.perf_counter()
    model = tflgraph.load(src)
    loaded = time.perf_counter()
    records = tflgraph.optimize(model)
    optimized = time.perf_counter()
    tflgraph.save(model, dst)
    steps = {"load": loaded - start, "optimize": optimized - loaded}
    steps["save"] = time.perf_counter() - optimized
    passes: dict[str, float] = {}
    for r in records:
        passes[r.name] = passes.get(r.name, 0.0) + r.seconds
    return steps, passes


def describe(path: str) -> str:
    model = tflgraph.load(path)
    ops = sum(sg.num_ops for sg in model.subgraphs)
    loops = sum(op.type == "WHILE" for sg in model.subgraphs for op in sg.iter_ops())
    size = Path(path).stat().st_size
    return f"{size:,} bytes, {len(model.subgraphs)} subgraphs, {ops} ops, {loops} WHILE loops"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="the .tflite file (k3_speech_18loops, see above)")
    ap.add_argument("--repeat", type=int, default=9)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        dst = str(Path(d) / "out.tflite")
        load_optimize_save(a.model, dst)  # warm up: imports every pass
        plain, steps, passes = [], [], []
        for _ in range(a.repeat):
            plain.append(load_save(a.model, dst))
            s, p = load_optimize_save(a.model, dst)
            steps.append(s)
            passes.append(p)
    ls = statistics.median(plain)
    opt = statistics.median(s["optimize"] for s in steps)
    total = statistics.median(sum(s.values()) for s in steps)
    print(f"model: {a.model} ({describe(a.model)}); medians of {a.repeat} interleaved repeats\n")
    print("| measured | ms | / (load + save) |\n|---|---|---|")
    for name, sec in [("load + save", ls), ("optimize", opt), ("load + optimize + save", total)]:
        print(f"| {name} | {sec * 1e3:.0f} | {sec / ls:.2f}x |")
    print("\n| pass (with its dead-code removal) | ms | share of optimize |\n|---|---|---|")
    for name in sorted(passes[0], key=lambda n: -statistics.median(p[n] for p in passes)):
        sec = statistics.median(p[name] for p in passes)
        print(f"| {name} | {sec * 1e3:.1f} | {sec / opt:.0%} |")


if __name__ == "__main__":
    main()
