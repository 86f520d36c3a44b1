"""The reference interpreter agrees with LiteRT: op by op on single-op models built through the
IR, and on every float fixture. Tolerance: |ref - ours| <= 1e-5 * max(1, max|ref|)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FIXTURES as FIXTURES_DIR
from helpers import all_fixtures, assert_equal_values
from modelbuild import Const, Input, Var, bidi_lstm_operands, densify_add_model, single_op

import tflgraph
from tflgraph import Model, new_options
from tflgraph.reference.interpreter import (
    KERNELS,
    STATEFUL,
    EvaluationError,
    UnsupportedOp,
    evaluate,
    evaluate_subgraph,
    evaluate_tensors,
    observe_shapes,
)
from tflgraph.reference.kernels_flex import FLEX_KERNELS
from tflgraph.runtime import runtimes

pytestmark = pytest.mark.skipif(not runtimes.available("litert"), reason="needs ai-edge-litert")

RNG = np.random.default_rng(7)
C = Const


def f(*shape, lo=-2.0, hi=2.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def i32(*v):
    return np.array(v, np.int32)


def b(*shape):
    return RNG.integers(0, 2, shape).astype(bool)


def opt(kind, **kw):
    return new_options(kind, **kw)


def q8(scale: float, zero_point: int) -> dict:
    """Per-tensor QuantizationParameters."""
    return {"scale": np.array([scale], np.float32), "zero_point": np.array([zero_point], np.int64)}


# exact halves of the scale 1/32 used below: where round-half-away and round-half-even differ
TIES = (np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5], np.float32) / 32).astype(np.float32)


def assert_close(want: list, got: list, where: str = "") -> None:
    """The interpreter's outputs `got` equal LiteRT's `want`: same dtypes, and values by the
    equivalence checker's bound."""
    assert len(want) == len(got), where
    for k, (a, g) in enumerate(zip(want, got)):
        assert a.dtype == g.dtype, f"{where} output {k}: dtype {g.dtype}, LiteRT {a.dtype}"
        assert_equal_values(a, g, where=f"{where} output {k}")


def check_against_litert(model: Model, feeds: list, invokes: int = 1) -> None:
    """Invoke LiteRT and the interpreter `invokes` times in a row without reset. LiteRT runs
    its builtin kernels (those TFLM's are ported from): its XNNPACK delegate rounds some
    quantized results differently (QUANTIZE: halves to even, not away from zero)."""
    session = runtimes.Session(tflgraph.to_bytes(model), "litert", kernels="builtin")
    state: dict = {}
    for k in range(invokes):
        assert_close(session.invoke(feeds), evaluate(model, feeds, state), f"invoke {k}")


def lstm_operands(F=3, u=4, cifg=False, peephole=False, proj=0, layer_norm=False, scale=1.0):
    """The 24 operands of UNIDIRECTIONAL_SEQUENCE_LSTM (input operand 0 left out)."""
    n_out = proj or u
    w = [None if cifg and g == 0 else C(f(u, F) * scale) for g in range(4)]
    w += [None if cifg and g == 0 else C(f(u, n_out) * scale) for g in range(4)]
    w += [None if cifg and g == 0 or not peephole else C(f(u)) for g in range(3)]
    w += [None if cifg and g == 0 else C(f(u)) for g in range(4)]
    w += [C(f(proj, u)), C(f(proj))] if proj else [None, None]
    w += [Var((2, n_out)), Var((2, u))]
    w += [None if cifg and g == 0 or not layer_norm else C(f(u)) for g in range(4)]
    return w


def bidi_operands():
    return bidi_lstm_operands(RNG)


def bidi_options(**kw):
    return opt("BidirectionalSequenceLSTMOptions", fused_activation_function=4, **kw)


# fmt: off
CASES = [
    # id, op, inputs, options, extra single_op arguments
    ("fc", "FULLY_CONNECTED", [f(2, 3), C(f(4, 3)), C(f(4))], {}, {}),
    ("fc_nobias_relu", "FULLY_CONNECTED", [f(2, 3), C(f(4, 3)), None],
     {"fused_activation_function": 1}, {}),
    ("fc_keepdims_relu6", "FULLY_CONNECTED", [f(2, 5, 3), C(f(4, 3)), C(f(4))],
     {"keep_num_dims": True, "fused_activation_function": 3}, {}),
    ("fc_flatten_n1to1", "FULLY_CONNECTED", [f(2, 5, 3), C(f(4, 3)), C(f(4))],
     {"fused_activation_function": 2}, {}),
    ("fc_weights_input", "FULLY_CONNECTED", [f(2, 3), f(4, 3), C(f(4))], {}, {}),
    ("conv_same", "CONV_2D", [f(1, 7, 8, 3), C(f(4, 3, 3, 3)), C(f(4))],
     {"padding": 0, "stride_w": 1, "stride_h": 1}, {}),
    ("conv_valid_s2_relu", "CONV_2D", [f(1, 7, 8, 3), C(f(4, 3, 3, 3)), C(f(4))],
     {"padding": 1, "stride_w": 2, "stride_h": 2, "fused_activation_function": 1}, {}),
    ("conv_same_s21", "CONV_2D", [f(2, 7, 8, 3), C(f(4, 2, 3, 3)), C(f(4))],
     {"padding": 0, "stride_w": 1, "stride_h": 2}, {}),
    ("conv_same_dil2", "CONV_2D", [f(1, 7, 8, 3), C(f(4, 3, 3, 3)), C(f(4))],
     {"padding": 0, "stride_w": 1, "stride_h": 1, "dilation_w_factor": 2,
      "dilation_h_factor": 2}, {}),
    ("conv_grouped", "CONV_2D", [f(1, 5, 5, 4), C(f(6, 3, 3, 2)), C(f(6))],
     {"padding": 0, "stride_w": 1, "stride_h": 1}, {}),
    ("dw_same_mult2", "DEPTHWISE_CONV_2D", [f(1, 6, 6, 3), C(f(1, 3, 3, 6)), C(f(6))],
     opt("DepthwiseConv2DOptions", padding=0, stride_w=1, stride_h=1, depth_multiplier=2), {}),
    ("dw_valid_s2_relu6", "DEPTHWISE_CONV_2D", [f(1, 7, 7, 3), C(f(1, 3, 3, 3)), C(f(3))],
     opt("DepthwiseConv2DOptions", padding=1, stride_w=2, stride_h=2, depth_multiplier=1,
         fused_activation_function=3), {}),
    ("dw_same_dil2", "DEPTHWISE_CONV_2D", [f(1, 7, 7, 2), C(f(1, 2, 3, 2)), C(f(2))],
     opt("DepthwiseConv2DOptions", padding=0, stride_w=1, stride_h=1, depth_multiplier=1,
         dilation_w_factor=2, dilation_h_factor=2), {}),
    ("transpose_conv_same_s2", "TRANSPOSE_CONV",
     [C(i32(1, 8, 6, 4)), C(f(4, 3, 3, 3)), f(1, 4, 3, 3), C(f(4))],
     {"padding": 0, "stride_w": 2, "stride_h": 2}, {"out_dtype": "float32"}),
    ("transpose_conv_valid_relu", "TRANSPOSE_CONV",
     [C(i32(2, 9, 7, 2)), C(f(2, 3, 3, 3)), f(2, 4, 3, 3), None],
     {"padding": 1, "stride_w": 2, "stride_h": 2, "fused_activation_function": 1},
     {"out_dtype": "float32"}),
    ("transpose_conv_same_s1_odd", "TRANSPOSE_CONV",
     [C(i32(1, 5, 5, 2)), C(f(2, 2, 2, 3)), f(1, 5, 5, 3), None],
     {"padding": 0, "stride_w": 1, "stride_h": 1}, {"out_dtype": "float32"}),
    ("transpose_conv_valid_s3_larger", "TRANSPOSE_CONV",
     [C(i32(1, 10, 10, 2)), C(f(2, 3, 3, 3)), f(1, 3, 3, 3), None],
     {"padding": 1, "stride_w": 3, "stride_h": 3}, {"out_dtype": "float32"}),
    ("resize_nearest", "RESIZE_NEAREST_NEIGHBOR", [f(1, 3, 4, 2), C(i32(7, 5))], {}, {}),
    ("resize_nearest_align", "RESIZE_NEAREST_NEIGHBOR", [f(1, 3, 4, 2), C(i32(7, 5))],
     {"align_corners": True}, {}),
    ("resize_nearest_half_pixel", "RESIZE_NEAREST_NEIGHBOR", [f(2, 4, 4, 1), C(i32(6, 3))],
     {"half_pixel_centers": True}, {}),
    ("resize_bilinear", "RESIZE_BILINEAR", [f(1, 3, 4, 2), C(i32(7, 5))], {}, {}),
    ("resize_bilinear_align", "RESIZE_BILINEAR", [f(1, 3, 4, 2), C(i32(7, 5))],
     {"align_corners": True}, {}),
    ("resize_bilinear_half_pixel", "RESIZE_BILINEAR", [f(2, 4, 4, 1), C(i32(6, 3))],
     {"half_pixel_centers": True}, {}),
    ("space_to_depth", "SPACE_TO_DEPTH", [f(2, 4, 6, 3)], {"block_size": 2}, {}),
    ("depth_to_space", "DEPTH_TO_SPACE", [f(2, 2, 3, 8)], {"block_size": 2}, {}),
    ("maxpool_valid", "MAX_POOL_2D", [f(1, 6, 6, 3)],
     opt("Pool2DOptions", padding=1, stride_w=2, stride_h=2, filter_width=2, filter_height=2),
     {}),
    ("maxpool_same_relu", "MAX_POOL_2D", [f(1, 7, 7, 2)],
     opt("Pool2DOptions", padding=0, stride_w=2, stride_h=2, filter_width=3, filter_height=3,
         fused_activation_function=1), {}),
    ("avgpool_same", "AVERAGE_POOL_2D", [f(1, 7, 6, 2)],
     opt("Pool2DOptions", padding=0, stride_w=1, stride_h=1, filter_width=3, filter_height=3),
     {}),
    ("avgpool_valid_relu6", "AVERAGE_POOL_2D", [f(2, 6, 6, 2, hi=8)],
     opt("Pool2DOptions", padding=1, stride_w=2, stride_h=1, filter_width=2, filter_height=3,
         fused_activation_function=3), {}),
    ("add_bcast", "ADD", [f(2, 3, 4), C(f(4))], {}, {}),
    ("add_relu", "ADD", [f(2, 3, 4), f(2, 3, 4)], {"fused_activation_function": 1}, {}),
    ("add_int32", "ADD", [i32(3), C(i32(1))], {}, {}),
    ("sub_bcast_n1to1", "SUB", [f(2, 1, 4), f(3, 1)], {"fused_activation_function": 2}, {}),
    ("sub_int32", "SUB", [i32(3, 4), C(i32(5))], {}, {}),
    ("mul_bcast_relu6", "MUL", [f(2, 3, 4, hi=5), C(f(1, 3, 1))],
     {"fused_activation_function": 3}, {}),
    ("mul_int32", "MUL", [i32(3, -4), C(i32(5))], {}, {}),
    ("div", "DIV", [f(2, 3), f(2, 3, lo=0.5)], {}, {}),
    ("div_bcast_relu", "DIV", [f(2, 3), C(f(3, lo=0.5))], {"fused_activation_function": 1}, {}),
    ("div_int32", "DIV", [i32(7, -7, 9, -9), C(i32(2, 2, -4, -4))], {}, {}),
    ("maximum", "MAXIMUM", [f(2, 3), C(f(3))], None, {}),
    ("minimum", "MINIMUM", [f(2, 3), f(2, 1)], None, {}),
    ("squared_difference", "SQUARED_DIFFERENCE", [f(2, 3), f(3)], None, {}),
    ("logistic", "LOGISTIC", [f(3, 5, hi=8, lo=-8)], None, {}),
    ("tanh", "TANH", [f(3, 5, hi=4, lo=-4)], None, {}),
    ("relu", "RELU", [f(3, 5)], None, {}),
    ("relu_n1_to_1", "RELU_N1_TO_1", [f(3, 5)], None, {}),
    ("relu6", "RELU6", [f(3, 5, lo=-3, hi=9)], None, {}),
    ("hard_swish", "HARD_SWISH", [f(3, 5, lo=-5, hi=5)], None, {}),
    ("exp", "EXP", [f(3, 5)], None, {}),
    ("log", "LOG", [f(3, 5, lo=0.1, hi=5)], None, {}),
    ("sin", "SIN", [f(3, 5, lo=-4, hi=4)], None, {}),
    ("cos", "COS", [f(3, 5, lo=-4, hi=4)], None, {}),
    ("abs", "ABS", [f(3, 5)], None, {}),
    ("neg", "NEG", [f(3, 5)], None, {}),
    ("square", "SQUARE", [f(3, 5)], None, {}),
    ("sqrt", "SQRT", [f(3, 5, lo=0, hi=4)], None, {}),
    ("rsqrt", "RSQRT", [f(3, 5, lo=0.1, hi=4)], None, {}),
    ("floor", "FLOOR", [f(3, 5, lo=-4, hi=4)], None, {}),
    ("ceil", "CEIL", [f(3, 5, lo=-4, hi=4)], None, {}),
    ("softmax", "SOFTMAX", [f(2, 5)], {"beta": 1.0}, {}),
    ("softmax_beta_3d", "SOFTMAX", [f(2, 3, 4, hi=6)], {"beta": 0.5}, {}),
    ("l2_normalization", "L2_NORMALIZATION", [f(2, 3, 5)], opt("L2NormOptions"), {}),
    ("cumsum", "CUMSUM", [f(2, 5), C(i32(1))], {}, {}),
    ("cumsum_exclusive_reverse", "CUMSUM", [f(3, 4), C(np.int32(0))],
     {"exclusive": True, "reverse": True}, {}),
    ("elu", "ELU", [f(3, 5)], None, {}),
    ("sign", "SIGN", [np.array([-2.5, 0, 3, -0.0], np.float32)], None, {}),
    ("round", "ROUND", [np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.7], np.float32)], None, {}),
    ("log_softmax", "LOG_SOFTMAX", [f(2, 5, hi=6)], None, {}),
    ("gelu", "GELU", [f(3, 5, lo=-4, hi=4)], {"approximate": False}, {}),
    ("gelu_approximate", "GELU", [f(3, 5, lo=-4, hi=4)], {"approximate": True}, {}),
    ("leaky_relu", "LEAKY_RELU", [f(3, 5)], {"alpha": 0.2}, {}),
    ("prelu", "PRELU", [f(2, 3, 4), C(f(4, lo=0, hi=1))], None, {}),
    ("pow", "POW", [f(2, 3, lo=0.1, hi=3), f(2, 3)], None, {}),
    ("floor_div", "FLOOR_DIV", [f(2, 3, lo=-5, hi=5), C(f(3, lo=0.5, hi=2))], None, {}),
    ("floor_div_int32", "FLOOR_DIV", [i32(7, -7, 9, -9), C(i32(2, 2, -4, -4))], None, {}),
    ("floor_mod", "FLOOR_MOD", [f(2, 3, lo=-5, hi=5), C(f(3, lo=-2, hi=2))], None, {}),
    ("floor_mod_int32", "FLOOR_MOD", [i32(7, -7, 9, -9), C(i32(2, 2, -4, -4))], None, {}),
    ("arg_max", "ARG_MAX", [f(2, 5, 3), C(i32(1))], opt("ArgMaxOptions", output_type=2),
     {"out_dtype": "int32"}),
    ("arg_min_int64", "ARG_MIN", [f(2, 5, 3), C(np.int32(-1))], opt("ArgMinOptions", output_type=4),
     {"out_dtype": "int64"}),
    ("batch_matmul", "BATCH_MATMUL", [f(2, 3, 4), f(2, 4, 5)], {}, {}),
    ("batch_matmul_adj_bcast", "BATCH_MATMUL", [f(2, 1, 4, 3), C(f(3, 5, 4))],
     {"adj_x": True, "adj_y": True}, {}),
    ("reshape_options", "RESHAPE", [f(2, 3, 4)], {"new_shape": [4, 6]}, {}),
    ("reshape_const", "RESHAPE", [f(2, 3, 4), C(i32(-1, 4))], None, {}),
    ("reshape_input", "RESHAPE", [f(2, 3, 4), i32(3, -1, 2)], None, {}),
    ("squeeze_dims", "SQUEEZE", [f(1, 3, 1, 2)], {"squeeze_dims": [-2]}, {}),
    ("squeeze_all", "SQUEEZE", [f(1, 3, 1, 2)], {}, {}),
    ("expand_dims", "EXPAND_DIMS", [f(2, 3), C(i32(1))], None, {}),
    ("expand_dims_neg", "EXPAND_DIMS", [f(2, 3), C(np.int32(-1))], None, {}),
    ("transpose", "TRANSPOSE", [f(2, 3, 4), C(i32(2, 0, 1))], None, {}),
    ("concat", "CONCATENATION", [f(2, 3), C(f(2, 1))], {"axis": 1}, {}),
    ("concat_neg", "CONCATENATION", [f(2, 1, 3), f(2, 2, 3), C(f(2, 4, 3))], {"axis": -2}, {}),
    ("split", "SPLIT", [C(i32(1)), f(2, 4, 3)], {"num_splits": 2}, {"n_outputs": 2}),
    ("split_neg_scalar_axis", "SPLIT", [C(np.int32(-1)), f(2, 6)], {"num_splits": 3},
     {"n_outputs": 3}),
    ("split_v", "SPLIT_V", [f(2, 5), C(i32(1, 4)), C(i32(1))], {"num_splits": 2},
     {"n_outputs": 2}),
    ("split_v_infer", "SPLIT_V", [f(6, 2), C(i32(2, -1, 1)), C(i32(0))], {"num_splits": 3},
     {"n_outputs": 3}),
    ("slice", "SLICE", [f(3, 4, 5), C(i32(0, 1, 2)), C(i32(2, 2, -1))], None, {}),
    ("slice_dynamic", "SLICE", [f(3, 4, 5), i32(1, 0, 0), C(i32(1, -1, 5))], None, {}),
    ("ss_strides", "STRIDED_SLICE", [f(4, 5, 6), C(i32(1, 0, 2)), C(i32(3, 5, 6)),
                                     C(i32(1, 2, 2))], {}, {}),
    ("ss_masks_shrink", "STRIDED_SLICE", [f(2, 10, 4), C(i32(0, -1, 0)), C(i32(0, 0, 0)),
                                          C(i32(1, 1, 1))],
     {"begin_mask": 5, "end_mask": 5, "shrink_axis_mask": 2}, {}),
    ("ss_negative_stride", "STRIDED_SLICE", [f(5, 3), C(i32(3, 0)), C(i32(0, 3)),
                                             C(i32(-1, 1))], {}, {}),
    ("ss_negative_stride_endmask", "STRIDED_SLICE", [f(5, 3), C(i32(-2, 2)), C(i32(0, 0)),
                                                     C(i32(-2, -1))], {"end_mask": 3}, {}),
    ("ss_ellipsis", "STRIDED_SLICE", [f(2, 3, 5), C(i32(0, 1)), C(i32(0, 4)), C(i32(1, 2))],
     {"ellipsis_mask": 1}, {}),
    ("ss_new_axis", "STRIDED_SLICE", [f(4, 5), C(i32(1, 0, 1)), C(i32(3, 0, 4)),
                                      C(i32(1, 1, 1))], {"new_axis_mask": 2}, {}),
    ("ss_offset", "STRIDED_SLICE", [f(4, 5, 6), C(i32(1, 1, 0)), C(i32(2, 3, 6)),
                                    C(i32(1, 1, 1))], {"offset": True}, {}),
    ("gather", "GATHER", [f(5, 3), C(i32(4, 0, 2))], {"axis": 0}, {}),
    ("gather_axis1_2d", "GATHER", [f(2, 5, 3), C(np.array([[0, 4], [1, 1]], np.int32))],
     {"axis": 1}, {}),
    # a constant scalar index: runtimes.Session feeds 0-d inputs as shape [1]
    ("gather_scalar_index", "GATHER", [f(6, 1, 3), C(np.int32(4))], {"axis": 0}, {}),
    ("gather_batch_dims", "GATHER", [f(2, 5, 3), C(np.array([[0, 4], [1, 1]], np.int32))],
     {"axis": 1, "batch_dims": 1}, {}),
    ("pack", "PACK", [f(2, 3), f(2, 3), C(f(2, 3))], {"values_count": 3, "axis": 1}, {}),
    ("unpack", "UNPACK", [f(2, 3, 4)], {"num": 3, "axis": 1}, {"n_outputs": 3}),
    ("reverse", "REVERSE_V2", [f(3, 4, 2), C(i32(1))], None, {}),
    ("reverse_first", "REVERSE_V2", [f(3, 4, 2), C(i32(0))], None, {}),
    ("mean", "MEAN", [f(2, 3, 4), C(i32(1))], opt("ReducerOptions", keep_dims=False), {}),
    ("mean_keep", "MEAN", [f(2, 3, 4), C(i32(0, -1))], opt("ReducerOptions", keep_dims=True),
     {}),
    ("mean_int32", "MEAN", [np.array([[1, 2], [-1, -2], [3, 4], [-5, 0]], np.int32), C(i32(1))],
     opt("ReducerOptions"), {}),
    ("sum", "SUM", [f(2, 3, 4), C(i32(2, 0))], opt("ReducerOptions", keep_dims=False), {}),
    ("sum_int32", "SUM", [i32(1, 2, 3), C(i32(0))], opt("ReducerOptions", keep_dims=True), {}),
    ("reduce_max", "REDUCE_MAX", [f(2, 3, 4), C(i32(1))], opt("ReducerOptions"), {}),
    ("reduce_min", "REDUCE_MIN", [f(2, 3, 4), C(i32(-1))], opt("ReducerOptions"), {}),
    ("reduce_prod", "REDUCE_PROD", [f(2, 3, 4), C(i32(1))], opt("ReducerOptions"), {}),
    ("reduce_any", "REDUCE_ANY", [b(2, 3, 4), C(i32(1, 2))], opt("ReducerOptions"), {}),
    ("pad", "PAD", [f(2, 3, 2), C(np.array([[0, 0], [1, 2], [2, 0]], np.int32))], None, {}),
    ("padv2", "PADV2", [f(2, 3), C(np.array([[1, 0], [0, 2]], np.int32)),
                        C(np.float32(-3.5))], None, {}),
    ("mirror_pad_reflect", "MIRROR_PAD", [f(3, 4), C(np.array([[1, 2], [2, 1]], np.int32))],
     {"mode": 0}, {}),
    ("mirror_pad_symmetric", "MIRROR_PAD", [f(3, 4), C(np.array([[0, 3], [1, 0]], np.int32))],
     {"mode": 1}, {}),
    ("tile", "TILE", [f(2, 3), C(i32(2, 3))], None, {}),
    ("broadcast_to", "BROADCAST_TO", [f(3, 1), C(i32(2, 3, 4))], None, {"version": 2}),
    ("range", "RANGE", [C(np.int32(2)), C(np.int32(11)), C(np.int32(3))], None, {}),
    ("range_float", "RANGE", [C(np.float32(-1)), C(np.float32(2)), C(np.float32(0.5))], None, {}),
    ("fill", "FILL", [C(i32(2, 3)), C(np.float32(1.5))], None, {}),
    ("fill_input_dims", "FILL", [i32(3, 1), C(np.float32(-2.0))], None, {"out_dtype": "float32"}),
    ("zeros_like", "ZEROS_LIKE", [f(2, 3)], None, {}),
    ("shape", "SHAPE", [f(2, 3, 4)], opt("ShapeOptions", out_type=2), {"out_dtype": "int32"}),
    ("rank", "RANK", [f(2, 3, 4)], None, {"out_dtype": "int32"}),
    ("cast_f2i", "CAST", [f(2, 5, lo=-9, hi=9)], None, {"out_dtype": "int32"}),
    ("cast_i2f", "CAST", [i32(3, -7)], None, {"out_dtype": "float32"}),
    ("dequantize_int8", "DEQUANTIZE",
     [Input(np.array([-128, -3, 0, 7, 127], np.int8), {"scale": np.array([0.05], np.float32),
                                                    "zero_point": np.array([3], np.int64)})],
     None, {"out_dtype": "float32"}),
    ("dequantize_per_channel", "DEQUANTIZE",
     [Input(np.array([[1, -2], [3, 4], [-128, 127]], np.int8),
            {"scale": np.array([0.1, 0.2, 0.3], np.float32), "zero_point": np.zeros(3, np.int64),
             "quantized_dimension": 0})], None, {"out_dtype": "float32"}),
    ("dequantize_fp16", "DEQUANTIZE", [f(2, 3).astype(np.float16)], None,
     {"out_dtype": "float32"}),
    ("quantize_f2i8", "QUANTIZE", [np.concatenate([f(40, lo=-4, hi=4), TIES])], None,
     {"out_dtype": "int8", "out_quantization": q8(0.03125, -3)}),
    ("quantize_f2u8", "QUANTIZE", [f(40, lo=-2, hi=6)], None,
     {"out_dtype": "uint8", "out_quantization": q8(0.027, 71)}),
    ("quantize_u8_to_i8", "QUANTIZE", [Input(np.arange(256, dtype=np.uint8), q8(0.0123, 128))],
     None, {"out_dtype": "int8", "out_quantization": q8(0.0123, 0)}),
    ("quantize_requantize", "QUANTIZE", [Input(np.arange(-128, 128, dtype=np.int8), q8(0.05, 7))],
     None, {"out_dtype": "int8", "out_quantization": q8(0.0371, -20)}),
    ("quantize_i8_to_i16", "QUANTIZE", [Input(np.arange(-128, 128, dtype=np.int8), q8(0.05, 0))],
     None, {"out_dtype": "int16", "out_quantization": q8(0.05 / 300, 0)}),
    ("less", "LESS", [f(2, 3), C(f(3))], None, {"out_dtype": "bool"}),
    ("less_int32", "LESS", [i32(3), C(np.int32(5))], None, {"out_dtype": "bool"}),
    ("less_equal", "LESS_EQUAL", [i32(1, 5, 7), C(i32(5))], None, {"out_dtype": "bool"}),
    ("greater", "GREATER", [f(2, 3), f(2, 1)], None, {"out_dtype": "bool"}),
    ("greater_equal", "GREATER_EQUAL", [i32(1, 5, 7), C(i32(5))], None, {"out_dtype": "bool"}),
    ("equal", "EQUAL", [i32(1, 5, 7), C(i32(5))], None, {"out_dtype": "bool"}),
    ("not_equal", "NOT_EQUAL", [f(2, 3), C(np.float32(0))], None, {"out_dtype": "bool"}),
    ("logical_and", "LOGICAL_AND", [b(2, 3), b(2, 3)], None, {}),
    ("logical_or", "LOGICAL_OR", [b(2, 3), b(1, 3)], None, {}),
    ("logical_not", "LOGICAL_NOT", [b(2, 3)], None, {}),
    ("select_v2_bcast", "SELECT_V2", [b(2, 1), f(2, 3), C(f(1, 3))], None,
     {"out_dtype": "float32"}),
    ("select_rows", "SELECT", [b(2), f(2, 3), f(2, 3)], None, {"out_dtype": "float32"}),
    ("dynamic_update_slice", "DYNAMIC_UPDATE_SLICE", [f(4, 5), f(2, 2), i32(1, 2)], None, {}),
    ("dynamic_update_slice_clamped", "DYNAMIC_UPDATE_SLICE", [f(4, 5), C(f(2, 2)), i32(3, -4)],
     None, {}),
    ("lstm", "UNIDIRECTIONAL_SEQUENCE_LSTM", [f(2, 5, 3), *lstm_operands()],
     {"fused_activation_function": 4, "cell_clip": 10.0}, {"invokes": 3}),
    ("lstm_time_major_clip", "UNIDIRECTIONAL_SEQUENCE_LSTM",
     [f(5, 2, 3), *lstm_operands(scale=3.0)],
     {"fused_activation_function": 4, "cell_clip": 0.5, "time_major": True}, {"invokes": 2}),
    ("lstm_cifg_peephole_proj", "UNIDIRECTIONAL_SEQUENCE_LSTM",
     [f(2, 4, 3), *lstm_operands(cifg=True, peephole=True, proj=2)],
     {"fused_activation_function": 4, "proj_clip": 0.3}, {"invokes": 2}),
    ("lstm_layer_norm_relu", "UNIDIRECTIONAL_SEQUENCE_LSTM",
     [f(2, 4, 3), *lstm_operands(peephole=True, layer_norm=True)],
     {"fused_activation_function": 1}, {"invokes": 2}),
    ("bilstm_merged_time_major", "BIDIRECTIONAL_SEQUENCE_LSTM", [f(5, 2, 3), *bidi_operands()],
     bidi_options(merge_outputs=True, time_major=True), {"invokes": 3}),
    ("bilstm_two_outputs_batch_major", "BIDIRECTIONAL_SEQUENCE_LSTM",
     [f(2, 5, 3), *bidi_operands()],
     bidi_options(merge_outputs=False, time_major=False, cell_clip=0.5), {"invokes": 2,
                                                                          "n_outputs": 2}),
    ("rnn_tanh", "UNIDIRECTIONAL_SEQUENCE_RNN", [f(2, 5, 3), C(f(4, 3)), C(f(4, 4)), C(f(4)),
                                                 Var((2, 4))],
     opt("SequenceRNNOptions", fused_activation_function=4), {"invokes": 3}),
    ("rnn_relu_time_major", "UNIDIRECTIONAL_SEQUENCE_RNN",
     [f(5, 2, 3), C(f(4, 3)), C(f(4, 4) / 2), C(f(4)), Var((2, 4))],
     opt("SequenceRNNOptions", time_major=True, fused_activation_function=1), {"invokes": 2}),
    ("rnn_step", "RNN", [f(2, 3), C(f(4, 3)), C(f(4, 4)), C(f(4)), Var((2, 4))],
     opt("RNNOptions", fused_activation_function=4), {"invokes": 3}),
]
# fmt: on


@pytest.mark.parametrize("op_type, inputs, options, extra", [
    pytest.param(*c[1:], id=c[0]) for c in CASES
])  # fmt: skip
def test_op_matches_litert(op_type, inputs, options, extra):
    extra = dict(extra)
    invokes = extra.pop("invokes", 1)
    model, feeds = single_op(op_type, inputs, options, **extra)
    check_against_litert(model, feeds, invokes)


def test_every_kernel_is_tested():
    # DENSIFY: tested with sparse constants; the Flex TensorList kernels, which no runtime
    # here runs, against Keras' outputs in tests/passes/test_lower_tensor_lists.py
    untested = set(KERNELS) - {c[1] for c in CASES} - set(FLEX_KERNELS)
    assert untested == {"DENSIFY"}


def test_lstm_state_fed_as_inputs():
    """Variable state tensors 18/19 that are also model inputs: the feed sets the state."""
    model, feeds = single_op(
        "UNIDIRECTIONAL_SEQUENCE_LSTM", [f(2, 5, 3), *lstm_operands()],
        {"fused_activation_function": 4},
    )  # fmt: skip
    op = model.main.operators[0]
    model.main.inputs += [op.inputs[18], op.inputs[19]]
    check_against_litert(model, feeds + [f(2, 4), f(2, 4)], invokes=2)


def counting_loop(steps: int = 4) -> Model:
    """main: WHILE(i=0, acc=x) with cond i < steps and body (i + 1, tanh(acc * w + i))."""
    model = Model()
    main, cond, body = (model.add_subgraph(n) for n in ("main", "cond", "body"))
    x = main.new_tensor("x", (2, 3))
    main.inputs = [x]
    i_out, acc_out = main.new_tensor("i_out", (), "int32"), main.new_tensor("acc_out", (2, 3))
    main.add_op("WHILE", [main.new_constant(np.int32(0), "zero"), x], [i_out, acc_out],
                {"cond_subgraph_index": cond, "body_subgraph_index": body})  # fmt: skip
    main.outputs = [acc_out, i_out]
    ci, cacc = cond.new_tensor("ci", (), "int32"), cond.new_tensor("cacc", (2, 3))
    flag = cond.new_tensor("flag", (), "bool")
    cond.add_op("LESS", [ci, cond.new_constant(np.int32(steps), "steps")], [flag])
    cond.inputs, cond.outputs = [ci, cacc], [flag]
    bi, bacc = body.new_tensor("bi", (), "int32"), body.new_tensor("bacc", (2, 3))
    bi1, fi = body.new_tensor("bi1", (), "int32"), body.new_tensor("fi", ())
    prod, s, new = (body.new_tensor(n, (2, 3)) for n in ("prod", "sum", "new"))
    body.add_op("ADD", [bi, body.new_constant(np.int32(1), "one")], [bi1], {})
    body.add_op("CAST", [bi], [fi])
    body.add_op("MUL", [bacc, body.new_constant(f(3), "w")], [prod], {})
    body.add_op("ADD", [prod, fi], [s], {})
    body.add_op("TANH", [s], [new])
    body.inputs, body.outputs = [bi, bacc], [bi1, new]
    return model


def test_while_matches_litert():
    model = counting_loop()
    model.check()
    x = f(2, 3)
    check_against_litert(model, [x])
    acc, i = evaluate(model, [x])
    assert int(i) == 4


@pytest.mark.parametrize("block", [(1, 1), (2, 4), (4, 2)])
def test_densify_block_sparse_matches_litert(block):
    dense = f(4, 8)
    dense[:2, 4:] = 0
    dense[2:, :2] = 0
    model = densify_add_model(dense, block)
    feeds = [f(4, 8)]
    check_against_litert(model, feeds)
    assert np.allclose(evaluate(model, feeds)[0], feeds[0] + dense)


def branching_model() -> Model:
    """main: IF(flag[1], x) with then = tanh(x), else = -x."""
    model = Model()
    main, then, other = (model.add_subgraph(n) for n in ("main", "then", "else"))
    flag, x = main.new_tensor("flag", (1,), "bool"), main.new_tensor("x", (2, 3))
    y = main.new_tensor("y", (2, 3))
    main.add_op("IF", [flag, x], [y], {"then_subgraph_index": then, "else_subgraph_index": other})
    main.inputs, main.outputs = [flag, x], [y]
    for sg, op_type in ((then, "TANH"), (other, "NEG")):
        a, r = sg.new_tensor(f"{sg.name}_in", (2, 3)), sg.new_tensor(f"{sg.name}_out", (2, 3))
        sg.add_op(op_type, [a], [r])
        sg.inputs, sg.outputs = [a], [r]
    return model


@pytest.mark.parametrize("flag", [True, False])
def test_if_matches_litert(flag):
    model = branching_model()
    model.check()
    check_against_litert(model, [np.array([flag]), f(2, 3)])


def test_stateful_ops_are_tested():
    assert set(STATEFUL) == {"WHILE", "IF", "CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE",
                             "ASSIGN_VARIABLE"}  # fmt: skip
    # WHILE and IF above; the others by the resource_vars fixture, which must be evaluated:
    assert _skip_reason(tflgraph.load(FIXTURES_DIR / "resource_vars.tflite")) is None


def _skip_reason(model: Model) -> str | None:
    sgs = model.reachable_subgraphs()
    ops = {op.type for sg in sgs for op in sg.operators}
    tensors = [t for sg in sgs for t in sg.tensors]
    if any(t.startswith("CUSTOM") and t not in KERNELS or t == "DELEGATE" for t in ops):
        return "custom or flex op: no reference semantics"
    if any(t.startswith("HASHTABLE") for t in ops):
        return "hash tables (string keys) are not modelled"
    if any(t.quantization and len(t.quantization.get("scale", ())) for t in tensors):
        return "quantized tensors: LiteRT numerics are not float numerics"
    missing = sorted(t for t in ops if t not in KERNELS and t not in STATEFUL)
    if missing:
        return f"no reference kernel for {', '.join(missing)}"
    return None


FIXTURES = all_fixtures()


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_matches_litert(path):
    model = tflgraph.load(path)
    reason = _skip_reason(model)
    if reason:
        feeds = [np.zeros(t.shape, t.dtype or np.bytes_) for t in model.main.inputs]
        with pytest.raises(UnsupportedOp):  # the interpreter refuses, it does not guess
            evaluate(model, feeds)
        pytest.skip(reason)
    if any(op.type in FLEX_KERNELS for sg in model.subgraphs for op in sg.operators):
        pytest.skip("Flex TensorList ops: LiteRT has no Flex delegate (the interpreter is "
                    "compared with Keras in tests/passes/test_lower_tensor_lists.py)")  # fmt: skip
    # builtin kernels: XNNPACK gives a delegated op that reads a variable tensor (onnx2tf 2.x
    # reshapes the LSTM's final state into an output) the value from before the LSTM ran
    # (zeros on the first invoke, then the previous invoke's state)
    session = runtimes.Session(path.read_bytes(), "litert", kernels="builtin")
    rng, state = np.random.default_rng(0), {}
    for k in range(3):  # in a row, without reset: variable tensors keep state
        feeds = runtimes.random_inputs(session.inputs, rng)
        assert_close(session.invoke(feeds), evaluate(model, feeds, state), f"invoke {k}")


def test_evaluate_tensors_runs_only_what_is_needed():
    model = counting_loop()
    main = model.main
    x = f(2, 3)
    want = evaluate(model, [x])[0]
    unknown = main.new_tensor("unfed", (2, 3))
    main.add_op("LOG", [unknown], [main.new_tensor("dead", (2, 3))])  # neither fed nor needed
    (acc,) = evaluate_tensors(main, {main.inputs[0]: x}, [main.outputs[0]])
    assert np.array_equal(acc, want)
    with pytest.raises(EvaluationError, match="unfed"):
        evaluate_subgraph(main, [x])  # runs every op
    with pytest.raises(EvaluationError, match="unfed"):
        evaluate_tensors(main, {main.inputs[0]: x}, [main.operators[-1].outputs[0]])


def test_observe_shapes_sees_computed_and_growing_shapes():
    """The converter stores [1, 1] for a RESHAPE whose shape is computed (really [1, 24]);
    a whole-sequence loop's accumulator grows by one step per iteration."""
    model = tflgraph.load(FIXTURES_DIR / "tf_shape_code.tflite")
    seen = observe_shapes(model.main, [f(1, 4, 6)])
    by_name = {t.name: shapes for t, shapes in seen.items()}
    assert by_name["Reshape"] == {(1, 24)} and by_name["serving_default_x:0"] == {(1, 4, 6)}
    model = tflgraph.load(FIXTURES_DIR / "k3_lstm_seq.tflite")
    seen = observe_shapes(model.main, [f(1, 10, 8)])
    assert max(len(shapes) for shapes in seen.values()) == 10  # one shape per step (T = 10)


def test_bad_operands_raise_evaluation_error():
    model, _ = single_op("GATHER", [f(5, 3), i32(4, 0)], {"axis": 0})
    with pytest.raises(EvaluationError, match="GATHER"):
        evaluate(model, [f(5, 3), i32(4, 9)])
    with pytest.raises(EvaluationError, match="takes 2 inputs"):
        evaluate(model, [f(5, 3)])


def test_unknown_op_is_named():
    model, feeds = single_op("FULLY_CONNECTED", [f(2, 3), C(f(4, 3)), None])
    model.main.operators[0].opcode = tflgraph.io.schema.OP_CODES["SEGMENT_SUM"]
    with pytest.raises(UnsupportedOp, match="SEGMENT_SUM"):
        evaluate(model, feeds)


@pytest.mark.parametrize("op_type, code", [("ADD", 4), ("MUL", 5), ("CONCATENATION", 1)])
def test_activation_litert_ignores_is_refused(op_type, code):
    with pytest.raises(UnsupportedOp, match=op_type):
        single_op(op_type, [f(2), f(2)], {"fused_activation_function": code})


def test_hybrid_layer_as_float_only_when_asked():
    """A FULLY_CONNECTED with per-channel int8 weights and float input: refused by default
    (LiteRT's hybrid kernel quantizes the input), and with hybrid_as_float the float layer
    on (w - zero_point) * scale, which LiteRT's hybrid result approximates."""
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, (3, 4)).astype(np.int8)
    scale = np.float32([0.01, 0.02, 0.03])
    quant = {"scale": scale.tolist(), "zero_point": [0, 0, 0], "quantized_dimension": 0}
    x = rng.uniform(-1, 1, (2, 4)).astype(np.float32)
    model = Model()
    sg = model.add_subgraph("main")
    xt, y = sg.new_tensor("x", (2, 4)), sg.new_tensor("y", (2, 3))
    sg.add_op("FULLY_CONNECTED", [xt, sg.new_constant(q, "w", quant), None], [y], {})
    sg.inputs, sg.outputs = [xt], [y]
    with pytest.raises(UnsupportedOp, match="quantized operand"):
        evaluate_tensors(sg, {xt: x}, [y])
    (got,) = evaluate_tensors(sg, {xt: x}, [y], hybrid_as_float=True)
    assert_equal_values(x @ (q.astype(np.float32) * scale[:, None]).T, got)
    litert = runtimes.run_isolated(tflgraph.to_bytes(model), [[x]], "litert", modes=("reset",))
    assert_equal_values(got, litert["reset"][0][0], rtol=2e-2)  # the input's int8 rounding


def test_select_v2_broadcasts_a_vector_condition_along_the_last_axis():
    """SELECT picks rows with a vector condition; SELECT_V2 broadcasts it like any operand
    (along the last axis), as LiteRT does."""
    cond = np.array([True, False, False, True])
    a, b = np.ones((4, 4), np.float32), np.zeros((4, 4), np.float32)
    model, feeds = single_op("SELECT_V2", [cond, a, b], out_dtype="float32")
    litert = runtimes.run_isolated(tflgraph.to_bytes(model), [feeds], "litert", modes=("reset",))
    np.testing.assert_array_equal(litert["reset"][0][0], np.where(cond, a, b))
    np.testing.assert_array_equal(evaluate(model, feeds)[0], np.where(cond, a, b))
