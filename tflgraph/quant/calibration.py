"""Calibration data and the value ranges a float model computes on it.

`load_samples(path, model)` reads an .npz with one array per model input (keyed by input name,
tensor name or position; samples on the first axis) and refuses, with one line, data that cannot
calibrate: unknown or missing inputs, wrong shapes or dtypes, NaN or inf, too few samples.

`calibrate(model, samples)` runs the model on the reference interpreter once per sample, from
fresh state (as an application that resets between inputs), and records (min, max) of every
float value: each tensor of every subgraph it runs (a WHILE body's tensors over all steps) and,
inside fused LSTMs, the gate pre-activations, cell and hidden state of every step; and, for the
tensors it is asked to (`means`: tensor -> channel count), the mean of each channel (the last
axis, the values seen as rows of that many channels): what bias correction needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.ir import Model, Operator, Tensor
from tflgraph.reference.interpreter import OBSERVER, evaluate
from tflgraph.reference.kernels_nn import observing_steps
from tflgraph.runtime.verify import VerifyError, load_inputs, ports

MIN_SAMPLES = 4  # fewer representative samples than this cannot give ranges worth trusting


class QuantizeError(TflgraphError, ValueError):
    """The model cannot be quantized as asked (bad calibration data, an op without an int8
    form), or the quantized model failed its check."""


def load_samples(path: str, model: Model, what: str = "calibration data") -> list[list]:
    """Samples (one list of input arrays each) from `path`, checked for calibrating `model`."""
    try:
        samples = load_inputs(path, ports(model, "inputs"))
    except VerifyError as e:
        raise QuantizeError(f"{what}: {str(e).removeprefix('inputs: ')}") from None
    for i, t in enumerate(model.main.inputs):
        if t.dtype is None or t.dtype.kind != "f":
            raise QuantizeError(f"{what}: input {t.name!r} is {t.type_name}, not a float input")
        column = np.stack([s[i] for s in samples]) if samples else np.zeros(0)
        if not np.all(np.isfinite(column)):
            bad = int(np.size(column) - np.count_nonzero(np.isfinite(column)))
            raise QuantizeError(f"{what}: input {t.name!r} holds {bad} NaN or inf values")
    return samples


def check_count(samples: list, what: str = "calibration data", least: int = MIN_SAMPLES):
    """Refuse fewer than `least` samples."""
    if len(samples) < least:
        raise QuantizeError(
            f"{what}: {len(samples)} sample(s); at least {least} are needed (samples go on "
            "the first axis of each array)"
        )


@dataclass
class Ranges:
    """(min, max) per tensor, and per (fused op, internal value) for values inside an op."""

    tensors: dict[Tensor, list[float]] = field(default_factory=dict)
    inside: dict[tuple[Operator, str], list[float]] = field(default_factory=dict)
    sums: dict[Tensor, list] = field(default_factory=dict)  # [sum of rows, row count]

    def mean(self, t: Tensor) -> np.ndarray | None:
        """The mean of each channel of `t` over the samples (None when not recorded)."""
        s = self.sums.get(t)
        return None if s is None else s[0] / s[1]

    def add_rows(self, t: Tensor, value, channels: int) -> None:
        v = np.asarray(value, np.float64)
        if v.size % channels or not np.all(np.isfinite(v)):
            return
        rows = v.reshape(-1, channels)
        s = self.sums.setdefault(t, [np.zeros(channels), 0])
        s[0] += rows.sum(axis=0)
        s[1] += len(rows)

    def of(self, t: Tensor) -> tuple[float, float] | None:
        r = self.tensors.get(t)
        return None if r is None else (r[0], r[1])

    def add(self, table: dict, key, value) -> None:
        v = np.asarray(value)
        if v.dtype.kind != "f" or not v.size:
            return
        v = v[np.isfinite(v)]
        if not v.size:
            return
        lo, hi = float(v.min()), float(v.max())
        r = table.get(key)
        if r is None:
            table[key] = [lo, hi]
        else:
            r[0], r[1] = min(r[0], lo), max(r[1], hi)


def calibrate(model: Model, samples: list[list], means: dict | None = None) -> Ranges:
    """The ranges `model` computes on `samples`, and the channel means of the tensors in
    `means` (see the module docstring)."""
    ranges = Ranges()
    means = means or {}

    def on_tensor(t, value):
        ranges.add(ranges.tensors, t, value)
        if t in means:
            ranges.add_rows(t, value, means[t])

    def on_step(op, what, value):
        ranges.add(ranges.inside, (op, what), value)

    with observing_steps(on_step):
        for sample in samples:
            evaluate(model, sample, {OBSERVER: on_tensor})
    return ranges
