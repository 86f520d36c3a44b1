"""Quantization parameters: from calibrated ranges (activations) and from the values themselves
(weights, biases), and the QuantizationParameters dicts tensors carry (io/reader, io/writer).

- Activations: asymmetric int8 over [min(lo, 0), max(hi, 0)] (zero is exact, as padding and
  zero states need), scale (hi - lo) / 255, zero point in [-128, 127]: TF's own nudging.
- Weights: symmetric int8 (zero point 0), scale max|w| / 127, per tensor or per channel. Per
  channel costs 24 bytes a channel in the file (a float32 scale and an int64 zero point for the
  weights and again for the bias), so a layer takes it only where it buys resolution: when
  some channel's max|w| is under PER_CHANNEL_GAIN of the layer's (uniform-random weights never
  are; trained layers with a few large channels are).
- Biases: int32 at scale s_input * s_weight (per channel where the weights are), zero point 0.
"""

from __future__ import annotations

import numpy as np

INT8 = (-128, 127)


def qparams(scale, zero_point, axis: int | None = None) -> dict:
    """The quantization dict of a tensor: per-tensor, or per-channel along `axis`."""
    q = {
        "scale": np.atleast_1d(np.asarray(scale, np.float32)),
        "zero_point": np.atleast_1d(np.asarray(zero_point, np.int64)),
    }
    if axis is not None:
        q["quantized_dimension"] = int(axis)
    return q


def scale_zp(q: dict) -> tuple[float, int]:
    """(scale, zero point) of a per-tensor quantization dict."""
    return float(q["scale"][0]), int(q["zero_point"][0])


def same_plan(a: tuple, b: tuple) -> bool:
    """Two plans (integer dtype, parameters dict) are the same."""
    return a[0] == b[0] and scale_zp(a[1]) == scale_zp(b[1])


def activation(lo: float, hi: float, qmin: int = INT8[0], qmax: int = INT8[1]) -> dict:
    """Asymmetric parameters covering [lo, hi] and 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-9:  # a constant zero: any scale represents it
        hi = lo + 1e-9 * (qmax - qmin)
    scale = (hi - lo) / (qmax - qmin)
    zp = int(np.clip(np.round(qmin - lo / scale), qmin, qmax))
    return qparams(scale, zp)


def symmetric16(lo: float, hi: float) -> dict:
    """int16 parameters with zero point 0 (what the 16x8 kernels take) covering [lo, hi]."""
    m = max(abs(float(lo)), abs(float(hi)), 1e-9)
    return qparams(m / 32767, 0)


def quantize(x: np.ndarray, q: dict, dtype=np.int8) -> np.ndarray:
    """`x` in the integer type `dtype` under the per-tensor parameters `q` (rounded, clamped)."""
    scale, zp = scale_zp(q)
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x, np.float64) / scale) + zp, info.min, info.max).astype(
        dtype
    )


def dequantize(x: np.ndarray, q: dict) -> np.ndarray:
    scale, zp = scale_zp(q)
    return ((np.asarray(x, np.float64) - zp) * scale).astype(np.float32)


PER_CHANNEL_GAIN = 0.8


def channel_axis(w: np.ndarray, axis: int) -> int | None:
    """`axis` when per-channel scales give some channel 1/PER_CHANNEL_GAIN of the resolution
    or more, else None (per tensor)."""
    w = np.abs(np.asarray(w, np.float64))
    top = np.max(w, initial=0.0)
    per = np.max(w, axis=tuple(i for i in range(w.ndim) if i != axis), initial=0.0)
    return axis if top > 0 and per.min() < PER_CHANNEL_GAIN * top else None


def weights(w: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, dict]:
    """Symmetric int8 weights: per tensor (axis None) or one scale per index of `axis`."""
    w = np.asarray(w, np.float64)
    if axis is None:
        m = np.max(np.abs(w), initial=0.0)
        scale = np.array([m / 127.0 if m > 0 else 1.0])
        q = np.round(w / scale[0])
    else:
        others = tuple(i for i in range(w.ndim) if i != axis)
        m = np.max(np.abs(w), axis=others, initial=0.0)
        scale = np.where(m > 0, m / 127.0, 1.0)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.round(w / scale.reshape(shape))
    q = np.clip(q, -127, 127).astype(np.int8)
    return q, qparams(scale.astype(np.float32), np.zeros(len(scale), np.int64), axis)


def bias(
    b: np.ndarray, input_scale: float, weight_q: dict, dtype=np.int32
) -> tuple[np.ndarray, dict]:
    """int32 (int64 for int16 inputs) bias at input_scale * weight scale (per channel when the
    weights are)."""
    scale = (np.float64(input_scale) * weight_q["scale"].astype(np.float64)).astype(np.float32)
    q = np.round(np.asarray(b, np.float64) / scale.astype(np.float64))
    info = np.iinfo(dtype)
    q = np.clip(q, info.min, info.max).astype(dtype)
    axis = 0 if len(scale) > 1 else None
    return q, qparams(scale, np.zeros(len(scale), np.int64), axis)


def power_of_two_scale(max_abs: float, bits: int = 16, k_min: int = -15, k_max: int = -9):
    """(scale 2^k, k) whose int`bits` range covers max_abs, k clamped to [k_min, k_max]: the
    fused LSTM's cell state (the converter's 2^ceil(log2 max|c|) / 32768, clamped)."""
    m = max(float(max_abs), 1e-9)
    k = int(np.ceil(np.log2(m))) - (bits - 1)
    k = int(np.clip(k, k_min, k_max))
    return 2.0**k, k
