"""int8 quantization (`tflgraph quantize`): size, error and invoke time of the float model, its
int8 model and, where the converter can make one from the same weights, the converter's int8.

For each row of CASES: the fixture is optimized as `tflgraph optimize` does (which fuses LSTM
loops; GRU, SimpleRNN and custom-cell loops stay loops), then quantized from a calibration set:
the fixture's own (the tfk_lstm_q* pairs store the converter's representative set and held-out
inputs) or seeded uniform [-1, 1) inputs, the distribution the fixtures' models were made for.
Every number is measured in this run:

- bytes of the float, int8 and converter int8 files;
- error: max |y_int8 - y_float| over the held-out inputs (the float model on the reference
  interpreter, from fresh state), the worse of LiteRT and TFLM, and as % of the float output's
  range; the converter's the same way; LiteRT-TFLM: their largest difference in LSB;
- the loop rows come twice: `--loops int8` (all-int8 bodies) and the default `--loops auto`
  (int8 bodies where measured within the tolerance and 1 LSB, else int16 activations and loop
  values with int8 weights); the "loop bodies" column says what each loop got;
- RAM: the smallest TFLM arena each model allocates in (`tflgraph inspect --target tflm`);
- time: median microseconds per invoke in TFLM and LiteRT (Python packages, reference kernels
  for TFLM), the float, int8 and converter models invoked interleaved after a warm-up.

Usage:  python benchmarks/int8.py [--invokes N] > benchmarks/int8.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

import tflgraph
from tflgraph import cli
from tflgraph.quant.check import check
from tflgraph.quant.params import quantize as to_int8
from tflgraph.quant.quantize import quantize
from tflgraph.runtime import runtimes, tflm_check
from tflgraph.runtime.verify import load_inputs, ports

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# (label, fixture, calibration: a fixture pair's name or a count of random samples, converter,
#  what loop bodies compute in: quantize's `loops`)
CASES = [
    ("tf_keras LSTM(16) T=10 F=8", "tfk_lstm_q16", "tfk_lstm_q16", "tfk_lstm_q16_int8"),
    ("tf_keras LSTM(64) T=50 F=40", "tfk_lstm_q64", "tfk_lstm_q64", "tfk_lstm_q64_int8"),
    ("Keras 3 LSTM(16) T=10 F=8", "k3_lstm", 512, None),
    ("Keras 3 LSTM(16), return_sequences", "k3_lstm_seq", 512, None),
    ("Keras 3 LSTM(128) T=50 F=40", "k3_lstm_big", 128, None),
    ("Keras 3 stacked LSTM(16) x2", "k3_lstm_stacked", 512, None),
    ("Keras 3 Bidirectional(LSTM(16))", "k3_bilstm", 512, None),
    ("Keras 3 GRU(16) T=10 F=8, --loops int8", "k3_gru", 512, None, "int8"),
    ("Keras 3 GRU(64) T=50 F=40, --loops int8", "k3_gru_big", 128, None, "int8"),
    ("Keras 3 SimpleRNN(16), --loops int8", "k3_simplernn", 512, None, "int8"),
    ("Keras 3 custom cell, --loops int8", "k3_custom_cell", 512, None, "int8"),
    ("Keras 3 GRU(16) T=10 F=8 (loop)", "k3_gru", 512, None),
    ("Keras 3 GRU(64) T=50 F=40 (loop)", "k3_gru_big", 128, None),
    ("Keras 3 SimpleRNN(16) (loop)", "k3_simplernn", 512, None),
    ("Keras 3 custom cell (loop)", "k3_custom_cell", 512, None),
    ("CNN 16x16x3 (conv, depthwise, dense)", "cnn", 256, None),
]
HELD_OUT = 16


def optimized(name: str) -> bytes:
    """What `tflgraph optimize` writes for the fixture (the default pipeline within the
    default objective: a pass whose result grows TFLM's arena or the file is not kept)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "opt.tflite"
        args = ["optimize", str(FIXTURES / f"{name}.tflite"), "-o", str(out), "-q", "--no-verify"]
        if cli.main(args) != 0:
            raise SystemExit(f"tflgraph optimize failed on {name}")
        return out.read_bytes()


def data_files(model, calibration, folder: Path) -> tuple[str, str]:
    """(calibration .npz, held-out .npz): a fixture pair's own, or seeded uniform samples."""
    if isinstance(calibration, str):
        return (
            str(FIXTURES / f"{calibration}.calib.npz"),
            str(FIXTURES / f"{calibration}.heldout.npz"),
        )
    rng = np.random.default_rng(13)
    paths = []
    for label, count in (("calib", calibration), ("heldout", HELD_OUT)):
        arrays = {
            str(i): rng.uniform(-1, 1, (count, *t.shape)).astype(np.float32)
            for i, t in enumerate(model.main.inputs)
        }
        paths.append(str(folder / f"{label}.npz"))
        np.savez(paths[-1], **arrays)
    return paths[0], paths[1]


def error_cells(report) -> tuple[str, str]:
    """('worst error (% of range)', 'LiteRT-TFLM LSB') of a check report's first output."""
    out = report.outputs[0]
    worst = max(out.error.values(), default=float("nan"))
    return f"{worst:.4f} ({worst / out.span:.2%})", f"{out.disagreement:.0f}"


def median_us(models: list[bytes], feeds: list[list], runtime: str, invokes: int, warmup=10):
    sessions = [runtimes.Session(m, runtime) for m in models]
    times = [[] for _ in sessions]
    for i in range(warmup + invokes):
        for s, x, ts in zip(sessions, feeds, times):
            s.reset()
            start = time.perf_counter()
            s.invoke(x)
            if i >= warmup:
                ts.append(time.perf_counter() - start)
    return [f"{statistics.median(ts) * 1e6:.0f}" for ts in times]


def feed_for(model, sample: list) -> list:
    return [
        to_int8(x, t.quantization) if t.type_name == "INT8" else x
        for x, t in zip(sample, model.main.inputs)
    ]


def row(label, name, calibration, converter, invokes: int, folder: Path, loops="auto") -> dict:
    float_bytes = optimized(name)
    float_model = tflgraph.load(float_bytes)
    calib, held = data_files(float_model, calibration, folder)
    result = quantize(float_bytes, calib, held_out=held, loops=loops)
    ours = tflgraph.to_bytes(result.model)
    err, lsb = error_cells(result.report)
    r = {
        "model": label,
        "float bytes": len(float_bytes),
        "int8 bytes": f"{len(ours):,} ({len(ours) / len(float_bytes):.2f}x)",
    }
    models = [float_bytes, ours]
    tests = load_inputs(held, ports(float_model, "inputs"))
    if converter:
        conv = (FIXTURES / f"{converter}.tflite").read_bytes()
        conv_err, conv_lsb = error_cells(check(float_model, tflgraph.load(conv), tests))
        r["converter int8 bytes"] = f"{len(conv):,} ({len(ours) / len(conv):.2f}x)"
        models.append(conv)
    else:
        conv_err = conv_lsb = "n/a"
        r["converter int8 bytes"] = "n/a"
    r["int8 error (% of range)"] = err
    r["converter error"] = conv_err
    r["LiteRT-TFLM LSB (int8 / converter)"] = f"{lsb} / {conv_lsb}"
    kinds = [c.kind for c in result.loops] if loops == "auto" else [loops]
    r["loop bodies"] = ", ".join(kinds) if float_model.main.ops_of_type("WHILE") else ""
    arenas = [f"{tflm_check.check(tflgraph.load(m), m).arena_bytes:,}" for m in models]
    r["TFLM arena bytes (float / int8 / converter)"] = " / ".join(
        arenas + ["n/a"] * (3 - len(models))
    )
    feeds = [feed_for(tflgraph.load(m), tests[0]) for m in models]
    for rt in ("tflm", "litert"):
        times = median_us(models, feeds, rt, invokes) + ["n/a"] * (3 - len(models))
        r[f"{rt} us (float / int8 / converter)"] = " / ".join(times)
    return r


def table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = (r.get(c, "") for c in cols)
        lines.append(
            "| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in cells) + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--invokes", type=int, default=100)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rows = [row(*case[:4], a.invokes, Path(d), *case[4:]) for case in CASES]
    print("## int8 quantization: `tflgraph quantize` against float and the converter's int8\n")
    print(
        f"`python benchmarks/int8.py --invokes {a.invokes}` on the shared 2-core machine "
        f"(ai-edge-litert {version('ai-edge-litert')}, tflite-micro {version('tflite-micro')}, "
        f"Python {sys.version.split()[0]}); {HELD_OUT} held-out inputs unless the fixture "
        "stores its own; times are medians of interleaved invokes, each after a reset.\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
