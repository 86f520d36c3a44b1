"""`--loops auto`: what each WHILE loop's body computes in, chosen by measurement.

Each loop is first quantized all-int8 (int8 activations and loop values: the smallest form) and
measured: that model, with every value a loop computes made an extra output, runs in LiteRT and
TFLM on the held-out samples against the float model (check.py). A loop keeps int8 bodies when
each of its values is within the tolerance of its float range and the two runtimes agree on it
within 1 LSB; otherwise its body computes in int16 (16x8: int8 weights, int16 activations and
loop values), which met both bounds on every fixture measured (benchmarks/int8.md).

Why all-int8 can miss the agreement (measured op by op on the bodies of the loop fixtures):
the runtimes' int8 FULLY_CONNECTED requantize the accumulator differently. TFLM's reference
kernel rounds twice, the final shift half away from zero (gemmlowp's RoundingDivideByPOT);
LiteRT's builtin kernel (ruy) rounds that shift half up; LiteRT's default XNNPACK delegate
multiplies in float32 and rounds half to even. Each pair differs by 1 LSB on 0.1-0.2% of
values (the ties), and the recurrence carries every difference on through the tanh: 3-6 LSB
after ten steps. ADD, SUB, TANH and LOGISTIC agree exactly between TFLM and LiteRT's builtin
kernels, MUL also (XNNPACK's differs). No choice of scales avoids the ties: the final shift is
zero only for multipliers s_in * s_w / s_out >= 0.5, far below any output range. In int16 the
same ties are 1/256 of an int8 step.

If an output of the model misses with int8 loops that each passed, every loop computes in
int16. Without a measurement (no held-out samples to check on, e.g. --no-verify, or a runtime
missing or failing) every loop computes in int16.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from tflgraph.ir import Model
from tflgraph.quant.calibration import Ranges
from tflgraph.quant.check import OutputError, Report, check
from tflgraph.quant.emit import quantize_model

AGREEMENT = 1.0  # LSB


@dataclass
class LoopChoice:
    """What one WHILE loop of the main subgraph computes in, and why."""

    name: str  # its body subgraph's
    kind: str  # "int8" or "int16"
    why: str

    def line(self) -> str:
        return f"loop {self.name!r}: {self.kind} bodies ({self.why})"


def choose(model: Model, ranges: Ranges, tests: list, io: str, tolerance: float) -> list:
    """One LoopChoice per WHILE of `model`'s main subgraph, in order (see the module
    docstring); `model` and `ranges` are left as they are."""
    loops = model.main.ops_of_type("WHILE")
    if not loops:
        return []
    if not tests:
        why = "no held-out samples to measure int8 on"
        return [LoopChoice(_name(op), "int16", why) for op in loops]
    float_probe, probe_ranges = copy.deepcopy((model, ranges))
    float_probe.signature_defs.clear()  # the probe's outputs are the subgraph's own
    owner = _expose(float_probe)
    int8_probe, int8_ranges = copy.deepcopy((float_probe, probe_ranges))
    quantize_model(int8_probe, int8_ranges, io, "int8")
    report = check(float_probe, int8_probe, tests, tolerance, "int8")
    if unmeasured := _unmeasured(report):
        return [LoopChoice(_name(op), "int16", f"int8 not measured: {unmeasured}") for op in loops]
    worst: dict[int, OutputError] = {}
    for k, out in enumerate(report.outputs):
        j = owner.get(k)
        if j is not None and (j not in worst or _badness(out) > _badness(worst[j])):
            worst[j] = out
    choices = []
    for j, op in enumerate(loops):
        out = worst.get(j)
        if out is None:
            choices.append(LoopChoice(_name(op), "int8", "it computes no float value"))
        else:
            kind = "int8" if _meets(out) else "int16"
            verdict = "measured" if kind == "int8" else "missed"
            choices.append(LoopChoice(_name(op), kind, f"all-int8 {verdict}: {_numbers(out)}"))
    missed = [o for k, o in enumerate(report.outputs) if k not in owner and not _meets(o)]
    if missed and all(c.kind == "int8" for c in choices):
        why = f"output {missed[0].name!r} missed with int8 loops: {_numbers(missed[0])}"
        choices = [LoopChoice(c.name, "int16", why) for c in choices]
    return choices


def _name(op) -> str:
    return op.option("body_subgraph_index").name


def _expose(model: Model) -> dict[int, int]:
    """Every float value a main-subgraph loop computes (not one it passes through) becomes an
    output of `model`: output index -> the loop's position among the WHILE ops."""
    sg = model.main
    owner = {}
    for j, op in enumerate(sg.ops_of_type("WHILE")):
        body = op.option("body_subgraph_index")
        for i, t in enumerate(op.outputs):
            if t is None or t.dtype is None or t.dtype.kind != "f":
                continue
            if body.outputs[i] is body.inputs[i]:
                continue
            if not any(t is x for x in sg.outputs):
                sg.outputs.append(t)
            owner[next(k for k, x in enumerate(sg.outputs) if x is t)] = j
    return owner


def _unmeasured(report: Report) -> str:
    """Why the probe cannot judge int8 (a runtime missing or failing), or ''."""
    if report.skipped:
        return "; ".join(f"{rt}: {why}" for rt, why in report.skipped.items())
    return ""


def _meets(out: OutputError) -> bool:
    return out.worst <= out.bound and out.disagreement <= AGREEMENT


def _badness(out: OutputError) -> tuple:
    return (not _meets(out), out.worst / out.span if out.span else 0.0, out.disagreement)


def _numbers(out: OutputError) -> str:
    """'error 2.13% of the range of 'h' (bound 2%), LiteRT-TFLM 6 LSB (bound 1)'."""
    rel = out.worst / out.span if out.span else 0.0
    bound = 100 * out.bound / out.span if out.span else 0.0
    return (
        f"error {rel:.2%} of the range of {out.name!r} (bound {bound:g}%), "
        f"LiteRT-TFLM {out.disagreement:.0f} LSB (bound {AGREEMENT:.0f})"
    )
