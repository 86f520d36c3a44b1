"""QUANTIZE as LiteRT's kernels compute it, with their integer fixed-point arithmetic.

float -> int: round(x / scale) half away from zero, plus the zero point, clamped to the type.
int -> int (requantize): (x - zp_in) times the multiplier in_scale / out_scale, applied as
LiteRT applies every quantized multiplier (a 31-bit fraction and a power-of-two shift, each
step rounded as gemmlowp rounds), plus zp_out, clamped. tests/test_interpreter.py checks both
against LiteRT bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def quantized_multiplier(m: float) -> tuple[int, int]:
    """(fraction q, shift) with m = q * 2**(shift - 31), q in [2**30, 2**31): TFLite's
    QuantizeMultiplier."""
    if m == 0.0:
        return 0, 0
    fraction, shift = math.frexp(m)
    q = round(fraction * (1 << 31))
    if q == 1 << 31:
        q, shift = q // 2, shift + 1
    if shift < -31:
        return 0, 0
    return q, shift


def multiply_by_quantized_multiplier(x: np.ndarray, q: int, shift: int) -> np.ndarray:
    """x * q * 2**(shift - 31) as TFLite rounds it: a saturating rounding doubling high
    multiply, then a rounding right shift."""
    x = np.asarray(x, np.int64) << max(shift, 0)
    x = np.clip(x, _INT32_MIN, _INT32_MAX)
    # q is positive (quantized_multiplier), so the product cannot saturate; C's division
    # truncates toward zero, in integers (a float64 quotient loses bits above 2**53)
    n = x * q + np.where(x >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(n >= 0, n >> 31, -((-n) >> 31))
    exponent = max(-shift, 0)
    if not exponent:
        return high
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (high < 0)
    return (high >> exponent) + ((high & mask) > threshold)


def _params(t) -> tuple[float, int]:
    q = t.quantization or {}
    scale, zp = np.asarray(q.get("scale", [0.0])), np.asarray(q.get("zero_point", [0]))
    if scale.size != 1:
        raise ValueError(f"QUANTIZE to or from per-channel {t.name!r} is not supported")
    return float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]) if zp.size else 0


def quantize(op, x):
    out = op.outputs[0]
    info = np.iinfo(out.dtype)
    out_scale, out_zp = _params(out)
    if x.dtype.kind == "f":
        scaled = np.asarray(x, np.float32) / np.float32(out_scale)
        rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)  # half away from zero
        y = rounded.astype(np.int64) + out_zp
    else:
        in_scale, in_zp = _params(op.inputs[0])
        q, shift = quantized_multiplier(in_scale / out_scale)
        y = multiply_by_quantized_multiplier(x.astype(np.int64) - in_zp, q, shift) + out_zp
    return np.clip(y, info.min, info.max).astype(out.dtype)


QUANT_KERNELS = {"QUANTIZE": quantize}
