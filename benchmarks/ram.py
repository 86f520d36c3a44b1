"""What a model costs on a microcontroller before and after `tflgraph optimize`: TFLM arena,
flash (file size) and TFLM invoke time, per fixture, with the converter's fused model as a
peer where the fixtures hold one of the same shape.

Every fixture runs through the CLI's path (the default pipeline for --target tflm, then the
default objective's check, tflgraph.objective), so the table shows what `optimize` writes.
The arena is TFLM's own count (tflgraph.runtime.arena: print_allocations' total); the time is
the best per-invoke time of interleaved rounds in one TFLM child process (the machine is
shared: the best round is the least disturbed). Fixtures TFLM cannot allocate before or
after have no arena and no time.

    python benchmarks/ram.py                 # the table of benchmarks/ram.md
    python benchmarks/ram.py k3_lstm_big     # some fixtures only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import tflgraph
from tflgraph.objective import keep_within
from tflgraph.pipeline import resolve, run_passes
from tflgraph.runtime import runtimes
from tflgraph.runtime.arena import footprints
from tflgraph.runtime.runtimes import RuntimeUnavailable, call_isolated

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# the converter's fused LSTM (tf_keras) of the same shape as a Keras 3 WHILE fixture
# (for these the table also shows fuse-lstm's result alone: the whole sequence in one op)
PEERS = {"k3_lstm": "tfk_lstm_fused", "k3_lstm_big": "tfk_lstm_big_fused"}


def optimized(src: bytes) -> bytes:
    """What `tflgraph optimize --target tflm` writes for `src` (default pipeline and
    objective, without the runtime check)."""
    names = resolve("default")
    model = tflgraph.load(src)
    run_passes(model, names, target="tflm")

    def rerun(after_pass) -> None:
        run_passes(tflgraph.load(src), names, target="tflm", after_pass=after_pass)

    return keep_within(src, tflgraph.to_bytes(model), "balanced", "tflm", rerun).data


def best_times(models: list[bytes], rounds: int = 15, invokes: int = 5) -> list[float | None]:
    """In a child: the best per-invoke TFLM time (s) of each model over interleaved rounds;
    None where TFLM cannot run it."""
    sessions = []
    for data in models:
        try:
            s = runtimes.Session(data, "tflm")
            feed = runtimes.random_inputs(s.inputs, np.random.default_rng(0))
            s.invoke(feed)
            sessions.append((s, feed))
        except RuntimeUnavailable:
            sessions.append(None)
    best = [float("inf")] * len(models)
    for _ in range(rounds):
        for i, pair in enumerate(sessions):
            if pair is not None:
                start = time.perf_counter()
                for _ in range(invokes):
                    pair[0].invoke(pair[1])
                best[i] = min(best[i], (time.perf_counter() - start) / invokes)
    return [b if b != float("inf") else None for b in best]


def measure(name: str) -> list[dict]:
    """Rows for one fixture: input, output, and the peer's input and output."""
    src = (FIXTURES / f"{name}.tflite").read_bytes()
    models = {"input": src, "output": optimized(src)}
    if name in PEERS:
        whole = tflgraph.load(src)
        run_passes(whole, ["fuse-lstm"], target="tflm")
        models["fuse-lstm alone (one fused op)"] = tflgraph.to_bytes(whole)
        peer = (FIXTURES / f"{PEERS[name]}.tflite").read_bytes()
        models[f"converter's fused ({PEERS[name]})"] = peer
    fps = footprints(list(models.values()))
    runs = [fp.arena is not None and _invokes(data) for data, fp in zip(models.values(), fps)]
    timed = [data for data, ok in zip(models.values(), runs) if ok]
    try:
        got = iter(call_isolated(best_times, (timed,), "tflm", 600) if timed else [])
    except RuntimeUnavailable:
        got = iter([None] * len(timed))
    times = [next(got) if ok else None for ok in runs]
    return [
        {"fixture": name, "form": form, "bytes": fp.bytes, "arena": fp.arena, "ms": t}
        for (form, _), fp, t in zip(models.items(), fps, times)
    ]


def _invokes(data: bytes, timeout: float = 5.0) -> bool:
    """Whether TFLM finishes one invoke within `timeout` seconds (some WHILE loops whose
    shapes change while they run never do)."""
    try:
        call_isolated(best_times, ([data], 1, 1), "tflm", timeout)
        return True
    except RuntimeUnavailable:
        return False


def table(rows: list[dict]) -> str:
    lines = [
        "| fixture | model | flash (file) | TFLM arena | arena / input | TFLM invoke |",
        "|---|---|---:|---:|---:|---:|",
    ]
    base = {}
    for r in rows:
        if r["form"] == "input":
            base = r
        arena = f"{r['arena']:,}" if r["arena"] is not None else "cannot allocate"
        ratio = (
            f"{r['arena'] / base['arena']:.3f}x"
            if r["arena"] is not None and base.get("arena")
            else ""
        )
        ms = f"{r['ms'] * 1e3:.3f} ms" if r["ms"] is not None else ""
        lines.append(
            f"| {r['fixture']} | {r['form']} | {r['bytes']:,} | {arena} | {ratio} | {ms} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fixtures", nargs="*", help="fixture names (default: all)")
    args = ap.parse_args(argv)
    if not runtimes.available("tflm"):
        print("tflite-micro is not installed: nothing to measure", file=sys.stderr)
        return 2
    names = args.fixtures or sorted(p.stem for p in FIXTURES.glob("*.tflite"))
    rows = [r for name in names for r in measure(name)]
    print(table(rows))
    grew = [
        r["fixture"]
        for i, r in enumerate(rows)
        if r["form"] == "output"
        and r["arena"] is not None
        and rows[i - 1]["arena"] is not None
        and r["arena"] > rows[i - 1]["arena"]
    ]
    print(f"\noutputs with a larger TFLM arena than their input: {', '.join(grew) or 'none'}")
    return 1 if grew else 0


if __name__ == "__main__":
    sys.exit(main())
