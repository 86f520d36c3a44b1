"""`tflgraph quantize` as a function: calibrate, emit, check.

The calibration samples are split: the last fifth (at least one sample) is held out to check
the result and the rest calibrates, unless held-out inputs are given separately (or nothing is
checked), in which case every calibration sample calibrates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tflgraph.io.reader import load
from tflgraph.io.writer import to_bytes
from tflgraph.ir import Model
from tflgraph.quant import auto
from tflgraph.quant.calibration import Ranges, calibrate, check_count, load_samples
from tflgraph.quant.check import TOLERANCE, Report, check
from tflgraph.quant.emit import check_quantizable, layer_inputs, quantize_model

IO_KINDS = ("int8", "float")
LOOP_KINDS = ("auto", "int8", "int16")
MIN_SPLIT = 5  # without held-out data: 4 samples to calibrate and 1 to check


@dataclass
class Result:
    """The int8 model, the check's report (None when not checked), how many samples
    calibrated, what each loop computes in and why (with loops "auto")."""

    model: Model
    report: Report | None
    calibrated_on: int
    loops: list[auto.LoopChoice] = field(default_factory=list)


def quantize(
    source,
    calibration: str,
    io: str = "int8",
    held_out: str | None = None,
    tolerance: float = TOLERANCE,
    verify: bool = True,
    loops: str = "auto",
) -> Result:
    """The int8 model of the float model `source` (a path, bytes or a Model, which is left as
    it is), calibrated on the .npz `calibration`, checked in LiteRT and TFLM on held-out samples
    (see the module docstring). `result.model` is the int8 Model, `result.report` the check's
    errors per output (None with verify=False). `loops`: what WHILE bodies compute in, "int8",
    "int16" (emit.py) or "auto": int8 where it is measured within the bounds, per loop
    (auto.py; `result.loops` says what each loop got and why)."""
    if isinstance(source, Model):
        source = to_bytes(source)
    model = load(source)
    check_quantizable(model)  # before reading the data: a refusal does not depend on it
    samples = load_samples(calibration, model)
    tests: list = []
    if held_out is not None:
        check_count(samples)
        tests = load_samples(held_out, model, "held-out data")
        check_count(tests, "held-out data", 1)
    elif not verify:
        check_count(samples)
    else:
        check_count(samples, least=MIN_SPLIT)
        n = max(1, len(samples) // 5)
        samples, tests = samples[:-n], samples[-n:]
    ranges = calibrate(model, samples, layer_inputs(model))
    outside = beyond(ranges, calibrate(model, tests)) if verify else []
    choices = []
    if loops == "auto":
        choices = auto.choose(model, ranges, tests if verify else [], io, tolerance)
    quantize_model(model, ranges, io, [c.kind for c in choices] if loops == "auto" else loops)
    report = check(load(source), model, tests, tolerance, loops) if verify else None
    if report is not None:
        report.outside = outside
    return Result(model, report, len(samples), choices)


def beyond(calibrated: Ranges, held_out: Ranges, limit: int = 3) -> list[str]:
    """The tensors whose held-out values leave the calibrated range by more than 1% of it
    (they are clipped in the int8 model): 'name [lo, hi] vs calibrated [lo, hi]', widest
    first, at most `limit`. (Values inside a fused LSTM are not listed: its gates have the
    kernel's fixed range and its cell state power-of-two headroom.)"""
    found = []
    for t, (tlo, thi) in held_out.tensors.items():
        lo, hi = calibrated.tensors.get(t, (tlo, thi))
        over = max(lo - tlo, thi - hi)
        if hi > lo and over > 0.01 * (hi - lo):
            text = f"{t.name} [{tlo:.3g}, {thi:.3g}] vs calibrated [{lo:.3g}, {hi:.3g}]"
            found.append((over / (hi - lo), text))
    return [text for _, text in sorted(found, reverse=True)[:limit]]
