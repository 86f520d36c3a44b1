"""Numpy kernels of the TFLite layers: dense, convolution, pooling and fused recurrent ops.

Same contract as `kernels.KERNELS`. Stateful recurrent kernels return their final states after
their outputs; `STATE_OPERANDS` says which operands those states belong to, so the evaluator
can keep them across invokes as the runtimes keep variable tensors.
"""

from __future__ import annotations

import contextlib

import numpy as np

from tflgraph.reference.kernels import ACTIVATIONS, UnsupportedOp, act, as_ints, sigmoid

# ---------------------------------------------------------------- dense, conv, pool


def fully_connected(op, x, w, b=None):
    if op.option("weights_format", 0) != 0:
        raise UnsupportedOp(f"{op.type} with shuffled weights")
    y = x.reshape(-1, w.shape[1]) @ w.T
    if b is not None:
        y = y + b
    y = act(op, y)
    return y.reshape(x.shape[:-1] + (w.shape[0],)) if op.option("keep_num_dims") else y


def batch_matmul(op, x, y):
    x = np.swapaxes(x, -1, -2) if op.option("adj_x") else x
    y = np.swapaxes(y, -1, -2) if op.option("adj_y") else y
    return np.matmul(x, y)


def _pads(size: int, k: int, stride: int, dil: int, padding: int) -> tuple[int, int, int]:
    """(output size, pad before, pad after) for TFLite's SAME (0) / VALID (1) padding."""
    eff = (k - 1) * dil + 1
    if padding == 1:
        return (size - eff) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2, total - total // 2


def _windows(op, x, kh, kw, pad_value=0.0):
    """Per kernel tap (i, j) of a conv/pool: the strided view [N, OH, OW, C] of the padded
    input that the tap multiplies."""
    sh, sw = op.option("stride_h", 1), op.option("stride_w", 1)
    dh, dw = op.option("dilation_h_factor", 1), op.option("dilation_w_factor", 1)
    oh, ph0, ph1 = _pads(x.shape[1], kh, sh, dh, op.option("padding", 0))
    ow, pw0, pw1 = _pads(x.shape[2], kw, sw, dw, op.option("padding", 0))
    xp = np.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)), constant_values=pad_value)
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dh, j * dw
            yield i, j, xp[:, h0 : h0 + (oh - 1) * sh + 1 : sh, w0 : w0 + (ow - 1) * sw + 1 : sw]


def conv_2d(op, x, w, b=None):
    """Filter [out, h, w, in]; in < channels means grouped: group g maps input channels
    [g*in, (g+1)*in) to output channels [g*per, (g+1)*per)."""
    cout, kh, kw, cin = w.shape
    groups, per = x.shape[3] // cin, cout // (x.shape[3] // cin)
    y = 0
    for i, j, win in _windows(op, x, kh, kw):
        y = y + np.concatenate(
            [
                win[..., g * cin : (g + 1) * cin] @ w[g * per : (g + 1) * per, i, j, :].T
                for g in range(groups)
            ],
            axis=-1,
        )
    if b is not None:
        y = y + b
    return act(op, y.astype(x.dtype))


def depthwise_conv_2d(op, x, w, b=None):
    _, kh, kw, cout = w.shape
    xr = np.repeat(x, cout // x.shape[3], axis=3)
    y = sum(win * w[0, i, j] for i, j, win in _windows(op, xr, kh, kw))
    if b is not None:
        y = y + b
    return act(op, y.astype(x.dtype))


def _pool(op, x, reduce):
    kh, kw = op.option("filter_height"), op.option("filter_width")
    fill = -np.inf if reduce is np.maximum else 0.0
    wins = [win for _, _, win in _windows(op, x, kh, kw, fill)]
    if reduce is np.maximum:
        return act(op, np.maximum.reduce(wins))
    ones = np.ones(x.shape[:3] + (1,), x.dtype)
    counts = sum(win for _, _, win in _windows(op, ones, kh, kw))
    return act(op, (sum(wins) / counts).astype(x.dtype))


def transpose_conv(op, output_shape, w, x, b=None):
    """Filter [out, h, w, in]: every input pixel scatters x @ w[:, i, j].T onto the (strided)
    full output, which is then cropped by the padding LiteRT computes for `output_shape`."""
    sh, sw = op.option("stride_h", 1), op.option("stride_w", 1)
    cout, kh, kw, _ = w.shape
    n, hh, ww, _ = x.shape
    full = np.zeros((n, (hh - 1) * sh + kh, (ww - 1) * sw + kw, cout), x.dtype)
    for i in range(kh):
        for j in range(kw):
            full[:, i : i + (hh - 1) * sh + 1 : sh, j : j + (ww - 1) * sw + 1 : sw] += (
                x @ w[:, i, j].T
            )
    oh, ow = as_ints(output_shape)[1:3]
    ph = _transpose_pad(oh, kh, sh, op.option("padding", 0))
    pw = _transpose_pad(ow, kw, sw, op.option("padding", 0))
    y = np.zeros((n, oh, ow, cout), x.dtype)
    crop = full[:, ph : ph + oh, pw : pw + ow]
    y[:, : crop.shape[1], : crop.shape[2]] = crop
    if b is not None:
        y = y + b
    return act(op, y.astype(x.dtype))


def _transpose_pad(out: int, k: int, stride: int, padding: int) -> int:
    """LiteRT's ComputePaddingHeightWidth applied to the transposed conv's output size."""
    n = -(-out // stride) if padding == 0 else (out - k + stride) // stride
    return max(((n - 1) * stride + k - out) // 2, 0)


def _resize_axis(op, size: int, out: int, bilinear: bool):
    """Source coordinates of `out` samples along one axis (LiteRT's reference resize)."""
    align, half = op.option("align_corners", False), op.option("half_pixel_centers", False)
    scale = np.float32((size - 1) / (out - 1) if align and out > 1 else size / out)
    pos = np.arange(out, dtype=np.float32)
    if bilinear:
        v = (pos + np.float32(0.5)) * scale - np.float32(0.5) if half else pos * scale
        lo = np.maximum(np.floor(v).astype(int), 0)
        return v, lo, np.minimum(np.ceil(v).astype(int), size - 1)
    v = (pos + np.float32(0.5 if half else 0)) * scale
    idx = np.minimum(np.round(v).astype(int) if align else np.floor(v).astype(int), size - 1)
    return np.maximum(idx, 0)


def resize_nearest(op, x, size):
    oh, ow = as_ints(size)
    rows = _resize_axis(op, x.shape[1], oh, False)
    return x[:, rows][:, :, _resize_axis(op, x.shape[2], ow, False)]


def resize_bilinear(op, x, size):
    oh, ow = as_ints(size)
    y, y0, y1 = _resize_axis(op, x.shape[1], oh, True)
    v, x0, x1 = _resize_axis(op, x.shape[2], ow, True)
    dy, dx = (y - y0)[None, :, None, None], (v - x0)[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - dx) + x[:, y0][:, :, x1] * dx
    bottom = x[:, y1][:, :, x0] * (1 - dx) + x[:, y1][:, :, x1] * dx
    return (top * (1 - dy) + bottom * dy).astype(x.dtype)


def space_to_depth(op, x):
    bs = op.option("block_size")
    n, h, w, c = x.shape
    x = x.reshape(n, h // bs, bs, w // bs, bs, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // bs, w // bs, bs * bs * c)


def depth_to_space(op, x):
    bs = op.option("block_size")
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, bs, bs, c // (bs * bs)).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * bs, w * bs, c // (bs * bs))


# ---------------------------------------------------------------- recurrent


_STEP_OBSERVERS: list = []  # fn(op, what, value): see observing_steps


@contextlib.contextmanager
def observing_steps(fn):
    """While the block runs, fused recurrent kernels call fn(op, what, value) with their values
    of every step: "gate0".."gate3" (the pre-activations of gates i, f, c, o), "cell" and
    "hidden" (the states after the step). Calibration reads the ranges inside the op with it."""
    _STEP_OBSERVERS.append(fn)
    try:
        yield
    finally:
        _STEP_OBSERVERS.remove(fn)


def _observe(op, what: str, value) -> None:
    for fn in _STEP_OBSERVERS:
        fn(op, what, value)


def _time_major(op, x):
    return x if op.option("time_major") else np.swapaxes(x, 0, 1)


def _layer_norm(x, coeff):
    if coeff is None:
        return x
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(1e-8)) * coeff


def sequence_lstm(op, x, *w):
    """UNIDIRECTIONAL_SEQUENCE_LSTM as LiteRT's lstm_eval computes it (float path): optional
    CIFG, peepholes, layer norm and projection; gates i, f, c, o; returns (out, h, c)."""
    wx, wh, peep, bias = w[0:4], w[4:8], w[8:11], w[11:15]
    proj_w, proj_b, h, c, ln = w[15], w[16], w[17], w[18], w[19:23]
    fn = ACTIVATIONS[op.activation]
    clip, pclip = op.option("cell_clip", 0.0), op.option("proj_clip", 0.0)
    outs = []

    def gate(k, xt, h, cell=None):
        z = xt @ wx[k].T + h @ wh[k].T
        p = (peep[0], peep[1], None, peep[2])[k]
        if p is not None:
            z = z + cell * p
        z = _layer_norm(z, ln[k])
        z = z + bias[k] if bias[k] is not None else z
        _observe(op, f"gate{k}", z)
        return z

    for xt in _time_major(op, x):
        f = sigmoid(gate(1, xt, h, c))
        i = 1 - f if wx[0] is None else sigmoid(gate(0, xt, h, c))
        c = f * c + i * fn(gate(2, xt, h))
        if clip > 0:
            c = np.clip(c, -clip, clip)
        h = sigmoid(gate(3, xt, h, c)) * fn(c)
        if proj_w is not None:
            h = h @ proj_w.T + (proj_b if proj_b is not None else 0)
            if pclip > 0:
                h = np.clip(h, -pclip, pclip)
        _observe(op, "cell", c)
        _observe(op, "hidden", h)
        outs.append(h.astype(x.dtype))
    out = _time_major(op, np.stack(outs))
    return out, h.astype(x.dtype), c.astype(x.dtype)


# BIDIRECTIONAL_SEQUENCE_LSTM's operands: per direction the 17 of UNIDIRECTIONAL_SEQUENCE_LSTM
# after its input (weights, peepholes, biases, projection), then the states, then the aux input
BIDI_FW, BIDI_BW = slice(1, 18), slice(18, 35)
BIDI_STATES = (35, 36, 37, 38)  # forward h, c, backward h, c
BIDI_AUX = slice(39, 48)


def bidirectional_lstm(op, x, *operands):
    """BIDIRECTIONAL_SEQUENCE_LSTM (float, no aux input) as LiteRT computes it: a forward
    sequence_lstm, and a backward one over x reversed in time whose outputs are put back in
    time order; merge_outputs concatenates them on the last axis (else two outputs). Returns
    the outputs, then the final states fw h, fw c, bw h, bw c."""
    w = (x, *operands)
    if any(t is not None for t in w[BIDI_AUX]):
        raise UnsupportedOp(f"{op.type} with an aux input")
    axis = 0 if op.option("time_major") else 1
    fw, fw_h, fw_c = sequence_lstm(op, x, *w[BIDI_FW], *w[35:37], *[None] * 4)
    rev = np.flip(x, axis)
    bw, bw_h, bw_c = sequence_lstm(op, rev, *w[BIDI_BW], *w[37:39], *[None] * 4)
    bw = np.flip(bw, axis)
    outs = [np.concatenate([fw, bw], -1)] if op.option("merge_outputs") else [fw, bw]
    outs += [None] * (len(op.outputs) - len(outs))
    return (*outs, fw_h, fw_c, bw_h, bw_c)


def rnn(op, x, w, r, b, h):
    """RNN, one step: h = act(x W^T + h R^T + b); returns (h, h) (output, new state)."""
    h = ACTIVATIONS[op.activation](x @ w.T + h @ r.T + b)
    return h, h


def sequence_rnn(op, x, w, r, b, h):
    """UNIDIRECTIONAL_SEQUENCE_RNN: one RNN step per time step; returns (out, h)."""
    outs = []
    for xt in _time_major(op, x):
        h = rnn(op, xt, w, r, b, h)[0]
        outs.append(h)
    return _time_major(op, np.stack(outs)), h


NN_KERNELS = {
    "FULLY_CONNECTED": fully_connected,
    "BATCH_MATMUL": batch_matmul,
    "CONV_2D": conv_2d,
    "DEPTHWISE_CONV_2D": depthwise_conv_2d,
    "MAX_POOL_2D": lambda op, x: _pool(op, x, np.maximum),
    "AVERAGE_POOL_2D": lambda op, x: _pool(op, x, np.add),
    "TRANSPOSE_CONV": transpose_conv,
    "RESIZE_NEAREST_NEIGHBOR": resize_nearest,
    "RESIZE_BILINEAR": resize_bilinear,
    "SPACE_TO_DEPTH": space_to_depth,
    "DEPTH_TO_SPACE": depth_to_space,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": sequence_lstm,
    "UNIDIRECTIONAL_SEQUENCE_RNN": sequence_rnn,
    "BIDIRECTIONAL_SEQUENCE_LSTM": bidirectional_lstm,
    "RNN": rnn,
}

# Stateful ops: operand indices whose final values the kernel returns after its outputs.
STATE_OPERANDS = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (18, 19),
    "UNIDIRECTIONAL_SEQUENCE_RNN": (4,),
    "BIDIRECTIONAL_SEQUENCE_LSTM": BIDI_STATES,
    "RNN": (4,),
}
