"""Load+save time of tflgraph against its peers, measured interleaved in one run.

Every tool writes a fresh output file each time (tflgraph's is written atomically: a
temporary file renamed into place). Peers: TensorFlow's
`tensorflow.lite.tools.flatbuffer_utils` (read_model + write_model) and tflite-micro's
`model_editor` (read + build, then write). A peer that is not importable is
reported as missing. Models: committed fixtures, a generated model with over 100 MB of
weights, and generated chains of 1k/10k/50k ops (time should grow linearly with op count).
Peak memory is measured per tool in a fresh child process on the large model.

    python benchmarks/roundtrip.py [--repeat 7] [--large-mb 100] [--ops 1000,10000,50000]
                                   [--markdown]

Run it where TensorFlow and tflite-micro are installed next to tflgraph to see every peer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tflgraph

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ["mlp", "cnn", "cnn_int8", "k3_lstm", "tfk_lstm_fused", "k3_lstm_big", "k3_gru_big"]


# --------------------------------------------------------------------------- models


def large_model(path: Path, megabytes: int) -> None:
    """A chain of 1024x1024 float FULLY_CONNECTED layers holding `megabytes` of weights."""
    rng = np.random.default_rng(0)
    model = tflgraph.Model()
    sg = model.add_subgraph("main")
    x = sg.new_tensor("x", (1, 1024))
    sg.inputs = [x]
    layers = max(1, round(megabytes * 2**20 / (1024 * 1024 * 4)))
    for i in range(layers):
        w = sg.new_constant(rng.standard_normal((1024, 1024), np.float32) * 0.03, f"w{i}")
        b = sg.new_constant(rng.standard_normal(1024).astype(np.float32), f"b{i}")
        y = sg.new_tensor(f"y{i}", (1, 1024))
        sg.add_op("FULLY_CONNECTED", [x, w, b], [y], {"fused_activation_function": 1})
        x = y
    sg.outputs = [x]
    tflgraph.save(model, path)


def op_chain(path: Path, n_ops: int) -> None:
    """n_ops ADD ops in a chain, each with its own small constant."""
    rng = np.random.default_rng(1)
    model = tflgraph.Model()
    sg = model.add_subgraph("main")
    x = sg.new_tensor("x", (1, 8))
    sg.inputs = [x]
    for i in range(n_ops):
        c = sg.new_constant(rng.standard_normal((1, 8)).astype(np.float32), f"c{i}")
        y = sg.new_tensor(f"y{i}", (1, 8))
        sg.add_op("ADD", [x, c], [y], {"fused_activation_function": 0})
        x = y
    sg.outputs = [x]
    tflgraph.save(model, path)


# --------------------------------------------------------------------------- tools


def tool_tflgraph(src: str, dst: str) -> None:
    tflgraph.save(tflgraph.load(src), dst)


def tool_flatbuffer_utils(src: str, dst: str) -> None:
    from tensorflow.lite.tools import flatbuffer_utils

    flatbuffer_utils.write_model(flatbuffer_utils.read_model(src), dst)


def tool_model_editor(src: str, dst: str) -> None:
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    with open(src, "rb") as f:
        data = f.read()
    out = model_editor.read(data).build()
    with open(dst, "wb") as f:
        f.write(out)


TOOLS = {
    "tflgraph": tool_tflgraph,
    "flatbuffer_utils": tool_flatbuffer_utils,
    "model_editor": tool_model_editor,
}


def available_tools() -> dict:
    out = {}
    for name, fn in TOOLS.items():
        try:
            if name == "flatbuffer_utils":
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
                from tensorflow.lite.tools import flatbuffer_utils  # noqa: F401
            elif name == "model_editor":
                from tflite_micro.tensorflow.lite.micro.compression import (  # noqa: F401
                    model_editor,
                )
            out[name] = fn
        except Exception as e:  # noqa: BLE001 - any import failure means "not available"
            print(f"# {name}: not available ({type(e).__name__}: {e})", file=sys.stderr)
    return out


def time_interleaved(tools: dict, src: Path, repeat: int, tmp: Path) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in tools}
    for _ in range(repeat):
        for name, fn in tools.items():  # round-robin: every tool sees the same machine load
            dst = tmp / f"{name}.tflite"
            # every tool writes a new file: replacing an existing one costs an implicit flush
            # on ext4 for tflgraph's atomic rename, which is not what this table measures
            dst.unlink(missing_ok=True)
            start = time.perf_counter()
            try:
                fn(str(src), str(dst))
            except Exception as e:  # noqa: BLE001 - a peer that fails is reported, not fatal
                print(f"# {name} failed on {src.name}: {type(e).__name__}: {e}", file=sys.stderr)
                times[name] = []
                continue
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) if t else float("nan") for name, t in times.items()}


def peak_memory_mb(tool: str, src: Path, tmp: Path) -> float:
    """Max RSS of a fresh process that imports the tool and runs it once."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r});"
        f"import roundtrip as r; "
        f"r.TOOLS[{tool!r}]({str(src)!r}, {str(tmp / 'mem.tflite')!r});"
        "print(next(l.split()[1] for l in open('/proc/self/status') "
        "if l.startswith('VmHWM')))"
    )  # not ru_maxrss: it keeps the parent's peak
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if out.returncode:
        return float("nan")
    return int(out.stdout.strip().splitlines()[-1]) / 1024


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--large-mb", type=int, default=100)
    p.add_argument("--ops", default="1000,10000,50000")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    tools = available_tools()
    names = list(tools)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        models = [(n, ROOT / "fixtures" / f"{n}.tflite") for n in FIXTURES]
        models = [(n, path) for n, path in models if path.exists()]
        for n_ops in [int(x) for x in args.ops.split(",") if x]:
            path = tmp / f"chain_{n_ops}.tflite"
            op_chain(path, n_ops)
            models.append((f"{n_ops} ADD ops", path))
        large = tmp / "large.tflite"
        large_model(large, args.large_mb)
        models.append((f"{args.large_mb} MB FC chain", large))
        for label, path in models:
            repeat = args.repeat if path.stat().st_size < 50e6 else max(3, args.repeat // 2)
            t = time_interleaved(tools, path, repeat, tmp)
            rows.append((label, path.stat().st_size, t))
        memory = {name: peak_memory_mb(name, large, tmp) for name in names}
        large_mb = large.stat().st_size / 2**20

    fastest_peer = [
        min((t[n] for n in names if n != "tflgraph"), default=float("nan")) for _, _, t in rows
    ]
    header = ["model", "bytes"] + [f"{n} ms" for n in names] + ["tflgraph / fastest peer"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (label, size, t), peer in zip(rows, fastest_peer):
        ratio = t["tflgraph"] / peer if peer == peer and peer > 0 else float("nan")
        cells = [label, f"{size:,}"] + [f"{t[n] * 1e3:.1f}" for n in names] + [f"{ratio:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Peak RSS on the {large_mb:.0f} MB model (fresh process, imports included; "
        f"target for tflgraph: 2 x file + 150 MB = {2 * large_mb + 150:.0f} MB):"
    )
    lines.append("")
    for name in names:
        lines.append(f"- {name}: {memory[name]:.0f} MB")
    chain = [(label, t["tflgraph"]) for label, _, t in rows if label.endswith("ADD ops")]
    if len(chain) >= 2:
        lines.append("")
        lines.append(
            "tflgraph time per op: "
            + ", ".join(
                f"{label}: {sec / int(label.split()[0]) * 1e6:.1f} us" for label, sec in chain
            )
        )
    text = "\n".join(lines)
    print(text if args.markdown else text.replace("|", " "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
