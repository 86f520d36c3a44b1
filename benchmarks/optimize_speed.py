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
acceptance (at most 2x). A pass's time includes the dead-code removal the driver runs after it
(wall clock, from PassRecord.seconds). On a machine shared with other jobs, `--cpu` times the
steps with the process's CPU time instead, which their load disturbs less.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import tflgraph


def load_save(src: str, dst: str, clock) -> float:
    start = clock()
    tflgraph.save(tflgraph.load(src), dst)
    return clock() - start


def load_optimize_save(src: str, dst: str, clock) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds of load, optimize and save; seconds of each pass (summed over iterations)."""
    start = clock()
    model = tflgraph.load(src)
    loaded = clock()
    records = tflgraph.optimize(model)
    optimized = clock()
    tflgraph.save(model, dst)
    steps = {"load": loaded - start, "optimize": optimized - loaded}
    steps["save"] = clock() - optimized
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
    ap.add_argument("--cpu", action="store_true", help="time with CPU time, not wall clock")
    a = ap.parse_args()
    clock = time.process_time if a.cpu else time.perf_counter
    with tempfile.TemporaryDirectory() as d:
        dst = str(Path(d) / "out.tflite")
        load_optimize_save(a.model, dst, clock)  # warm up: imports every pass
        plain, steps, passes = [], [], []
        for _ in range(a.repeat):
            plain.append(load_save(a.model, dst, clock))
            s, p = load_optimize_save(a.model, dst, clock)
            steps.append(s)
            passes.append(p)
    ls = statistics.median(plain)
    opt = statistics.median(s["optimize"] for s in steps)
    total = statistics.median(sum(s.values()) for s in steps)
    what = "CPU time" if a.cpu else "wall clock"
    print(f"model: {a.model} ({describe(a.model)})")
    print(f"medians of {a.repeat} interleaved repeats, {what}\n")
    print("| measured | ms | / (load + save) |\n|---|---|---|")
    for name, sec in [("load + save", ls), ("optimize", opt), ("load + optimize + save", total)]:
        print(f"| {name} | {sec * 1e3:.0f} | {sec / ls:.2f}x |")
    per_pass = {n: statistics.median(p[n] for p in passes) for n in passes[0]}
    print("\n| pass (wall clock, with its dead-code removal) | ms | share |\n|---|---|---|")
    for name, sec in sorted(per_pass.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {sec * 1e3:.1f} | {sec / sum(per_pass.values()):.0%} |")


if __name__ == "__main__":
    main()
