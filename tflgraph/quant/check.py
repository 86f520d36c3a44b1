"""Check a quantized model like every rewrite: run it in LiteRT and TFLM on held-out inputs and
compare with the float model, per output, in the output's units.

- The reference is the float model on the reference interpreter (float32 as LiteRT computes
  it), each sample from fresh state; the int8 model runs with a reset between samples.
- The error of an output is max |y_int8 - y_float| over the samples, after dequantizing; it is
  judged against `tolerance` x the range of the float output over the samples (the bound, in
  the output's units).
- LiteRT and TFLM must agree within 1 LSB of the output (integer kernels that differ by more
  are a broken quantization, whatever the error); 2 LSB for an output SOFTMAX computes (LiteRT
  takes exp from a table, TFLM computes it in fixed point: 2 LSB apart measured on the mlp
  fixture). The 1 LSB bound holds for an output a WHILE loop computes too, unless `loops` is
  "int8" (all-int8 bodies asked for): then the difference is reported, not bounded, as the
  runtimes' int8 FULLY_CONNECTED round ties differently (1 LSB on 0.1-0.2% of values) and the
  recurrence carries each difference on (3-6 LSB after ten steps on the Keras 3 GRU,
  SimpleRNN and custom cell, with LiteRT's builtin kernels too; auto.py says why). int16
  bodies keep those differences below one int8 step; "auto" gives a loop int8 bodies only
  where measured within 1 LSB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tflgraph.io.writer import to_bytes
from tflgraph.ir import Model
from tflgraph.quant import params
from tflgraph.reference.interpreter import evaluate
from tflgraph.runtime.runtimes import RUNTIMES, RuntimeUnavailable, available, run_isolated

TOLERANCE = 0.02  # of the float output's range
NOT_INSTALLED = "not installed"


@dataclass
class OutputError:
    name: str
    error: dict[str, float]  # runtime -> max |y_int8 - y_float|
    span: float  # the float output's range over the samples
    bound: float
    lsb: float  # one step of the int8 output
    disagreement: float  # max |LiteRT - TFLM| in LSB (nan when one runtime did not run)
    agreement: float = 1.0  # the largest disagreement accepted, in LSB

    @property
    def worst(self) -> float:
        """The larger error of the runtimes that ran (inf when none did)."""
        return max(self.error.values(), default=np.inf)

    @property
    def ok(self) -> bool:
        agree = np.isnan(self.disagreement) or self.disagreement <= self.agreement
        return self.worst <= self.bound and agree


@dataclass
class Report:
    outputs: list[OutputError] = field(default_factory=list)
    samples: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # runtime -> why it did not run
    outside: list[str] = field(default_factory=list)  # held-out values beyond calibration
    notes: list[str] = field(default_factory=list)  # how a runtime was run, when not as usual

    @property
    def ok(self) -> bool:
        """Every output within its bounds in every runtime that ran, at least one ran, and
        none that is installed failed to run the model."""
        failed = [why for why in self.skipped.values() if why != NOT_INSTALLED]
        return (
            bool(self.outputs)
            and len(self.skipped) < len(RUNTIMES)
            and not failed
            and all(o.ok for o in self.outputs)
        )

    def lines(self) -> list[str]:
        out = []
        for o in self.outputs:
            errs = ", ".join(f"{rt} {e:.4g}" for rt, e in o.error.items())
            rel = max(o.error.values(), default=np.nan) / o.span if o.span else np.nan
            agree = "" if np.isnan(o.disagreement) else f"; LiteRT-TFLM {o.disagreement:.0f} LSB"
            if agree and np.isinf(o.agreement):
                agree += " (a loop's output: reported, not bounded)"
            out.append(
                f"output {o.name!r}: max error {errs} ({rel:.2%} of its range {o.span:.4g}; "
                f"bound {o.bound:.4g}, 1 LSB {o.lsb:.4g}){agree} on {self.samples} held-out samples"
            )
        out.extend(f"{rt} did not run: {why}" for rt, why in self.skipped.items())
        out.extend(f"note: {n}" for n in self.notes)
        if self.outside:
            out.append(
                "note: held-out values beyond the calibrated ranges are clipped (a larger "
                "calibration set covers them): " + "; ".join(self.outside)
            )
        return out


def check(
    float_model: Model,
    int8_model: Model,
    samples: list[list],
    tolerance: float = TOLERANCE,
    loops: str = "int8",
) -> Report:
    """Run `int8_model` in each runtime on `samples` against `float_model` (see the docstring);
    `loops`: what its WHILE bodies were asked to compute in ("int8", "int16", "auto")."""
    reference = [evaluate(float_model, s, {}) for s in samples]
    data = to_bytes(int8_model)
    ins, outs = int8_model.main.inputs, int8_model.main.outputs
    feeds = [[_to_input(x, t) for x, t in zip(s, ins)] for s in samples]
    report = Report(samples=len(samples))
    raw: dict[str, list] = {}
    for rt in RUNTIMES:
        if not available(rt):
            report.skipped[rt] = NOT_INSTALLED
            continue
        try:
            raw[rt] = run_isolated(data, feeds, rt, modes=("reset",))["reset"]
        except RuntimeUnavailable as e:
            if rt != "litert":
                report.skipped[rt] = str(e)
                continue
            try:  # XNNPACK cannot prepare some int8 WHILE bodies; the builtin kernels can
                raw[rt] = run_isolated(data, feeds, rt, modes=("reset",), kernels="builtin")
                raw[rt] = raw[rt]["reset"]
                report.notes.append(
                    f"LiteRT's default delegate failed ({str(e)[:120]}); checked on its "
                    "builtin kernels"
                )
            except RuntimeUnavailable:
                report.skipped[rt] = str(e)
    for j, t in enumerate(outs):
        want = np.stack([r[j] for r in reference]).astype(np.float64)
        q = _output_params(int8_model, t)
        got = {rt: np.stack([_to_real(r[j], q) for r in rs]) for rt, rs in raw.items()}
        span = float(want.max() - want.min()) if want.size else 0.0
        lsb = params.scale_zp(q)[0] if q else 0.0
        errors = {rt: float(np.max(np.abs(g - want), initial=0.0)) for rt, g in got.items()}
        disagree = np.nan
        if len(got) == 2 and lsb:
            a, b = got.values()
            disagree = round(float(np.max(np.abs(a - b), initial=0.0)) / lsb, 3)
        agreement = _agreement(int8_model, t, bounded_loops=loops != "int8")
        report.outputs.append(
            OutputError(t.name, errors, span, tolerance * span, lsb, disagree, agreement)
        )
    return report


def _to_input(x: np.ndarray, t) -> np.ndarray:
    return params.quantize(x, t.quantization) if t.dtype == np.int8 else x


def _to_real(y: np.ndarray, q: dict | None) -> np.ndarray:
    return (
        params.dequantize(y, q).astype(np.float64) if y.dtype.kind in "iu" else y.astype(np.float64)
    )


def _agreement(model: Model, t, bounded_loops: bool) -> float:
    """How many LSB LiteRT and TFLM may differ on output t (see the module docstring)."""
    sg = model.main
    op = sg.producer(t)
    if op is not None and op.type == "DEQUANTIZE":
        op = sg.producer(op.inputs[0])
    stack, seen = [op], set()
    while stack:  # an output a WHILE loop computes: roundings accumulate over the steps
        o = stack.pop()
        if o is None or o in seen:
            continue
        seen.add(o)
        if o.type == "WHILE" and not bounded_loops:
            return np.inf
        stack.extend(sg.producer(x) for x in o.inputs if x is not None)
    return 2.0 if op is not None and op.type == "SOFTMAX" else 1.0


def _output_params(model: Model, t) -> dict | None:
    """The int8 parameters of an output: its own, or those of the DEQUANTIZE it comes from."""
    if t.is_quantized:
        return t.quantization
    op = model.main.producer(t)
    if op is not None and op.type == "DEQUANTIZE" and op.inputs[0].is_quantized:
        return op.inputs[0].quantization
    return None
