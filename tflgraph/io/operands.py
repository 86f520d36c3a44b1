"""What a builtin op takes: operand counts and the dtypes that must agree.

The runtimes refuse a model whose ops have the wrong number of operands (LiteRT at
AllocateTensors, TFLM at init) or mix dtypes an elementwise kernel cannot (an int32 ADD with a
float operand); `operand_problem(op)` finds the same mistakes when a pass builds the op, so the
error names the op that was built wrong instead of a runtime failing later. Input counts
include absent optional operands (`None`, TFLite's -1), as the operand list does. Ops not in
the table are not checked.
"""

from __future__ import annotations

from typing import NamedTuple

MANY = 1 << 30


class Arity(NamedTuple):
    inputs: tuple[int, int]  # min, max
    outputs: tuple[int, int] = (1, 1)


def _rows(names: str, arity: Arity) -> dict[str, Arity]:
    return dict.fromkeys(names.split(), arity)


# elementwise ops whose operands and output share one dtype
SAME_DTYPE_BINARY = set(
    "ADD SUB MUL DIV MAXIMUM MINIMUM POW SQUARED_DIFFERENCE FLOOR_DIV FLOOR_MOD".split()
)
SAME_DTYPE_UNARY = set(
    """LOGISTIC TANH RELU RELU6 RELU_N1_TO_1 RELU_0_TO_1 EXP LOG SQRT RSQRT ABS NEG SIN COS
    FLOOR CEIL ROUND SQUARE HARD_SWISH ELU GELU LEAKY_RELU SOFTMAX LOG_SOFTMAX""".split()
)
COMPARISONS = set("LESS LESS_EQUAL GREATER GREATER_EQUAL EQUAL NOT_EQUAL".split())

ARITY: dict[str, Arity] = {
    **_rows(" ".join(SAME_DTYPE_BINARY | COMPARISONS), Arity((2, 2))),
    **_rows("LOGICAL_AND LOGICAL_OR PRELU BATCH_MATMUL EXPAND_DIMS TRANSPOSE", Arity((2, 2))),
    **_rows(" ".join(SAME_DTYPE_UNARY), Arity((1, 1))),
    **_rows(
        """LOGICAL_NOT SIGN ZEROS_LIKE ONES_LIKE DEQUANTIZE QUANTIZE CAST SHAPE RANK
        L2_NORMALIZATION AVERAGE_POOL_2D MAX_POOL_2D L2_POOL_2D SQUEEZE WHERE
        SPACE_TO_DEPTH DEPTH_TO_SPACE READ_VARIABLE""",
        Arity((1, 1)),
    ),
    **_rows(
        """GATHER GATHER_ND FILL TILE MEAN SUM REDUCE_MAX REDUCE_MIN REDUCE_PROD REDUCE_ANY
        ARG_MAX ARG_MIN RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR BROADCAST_TO REVERSE_V2
        CUMSUM EMBEDDING_LOOKUP""",
        Arity((2, 2)),
    ),
    **_rows("SLICE SELECT SELECT_V2 RANGE DYNAMIC_UPDATE_SLICE PADV2", Arity((3, 3))),
    **_rows("FULLY_CONNECTED", Arity((2, 3), (1, 2))),  # bias optional; shuffled: 2 outputs
    **_rows("CONV_2D DEPTHWISE_CONV_2D CONV_3D", Arity((2, 3))),
    "TRANSPOSE_CONV": Arity((3, 4)),
    "RESHAPE": Arity((1, 2)),
    "PAD": Arity((2, 2)),
    "STRIDED_SLICE": Arity((4, 4)),
    **_rows("CONCATENATION PACK ADD_N", Arity((1, MANY))),
    "UNPACK": Arity((1, 1), (1, MANY)),
    "SPLIT": Arity((2, 2), (1, MANY)),
    "SPLIT_V": Arity((3, 3), (1, MANY)),
    "TOPK_V2": Arity((2, 2), (2, 2)),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": Arity((20, 24)),
    "LSTM": Arity((20, 24), (1, 4)),
    "UNIDIRECTIONAL_SEQUENCE_RNN": Arity((5, 5)),
    "VAR_HANDLE": Arity((0, 0)),
    "ASSIGN_VARIABLE": Arity((2, 2), (0, 0)),
    "CALL_ONCE": Arity((0, 0), (0, 0)),
}


def _count(n: tuple[int, int]) -> str:
    lo, hi = n
    if lo == hi:
        return str(lo)
    return f"at least {lo}" if hi == MANY else f"{lo} to {hi}"


def operand_problem(op) -> str | None:
    """Why `op` (a tflgraph.ir.Operator) is malformed, or None. Checks the operand counts of
    the ops in ARITY, that a WHILE has as many outputs as inputs, and that elementwise ops
    read and write one dtype."""
    kind = op.type
    n_in, n_out = len(op.inputs), len(op.outputs)
    arity = ARITY.get(kind)
    if arity is not None:
        for what, n, (lo, hi) in (
            ("inputs", n_in, arity.inputs),
            ("outputs", n_out, arity.outputs),
        ):
            if not lo <= n <= hi:
                return f"{kind} takes {_count((lo, hi))} {what}, not {n}"
    if kind == "WHILE" and n_in != n_out:
        return f"WHILE has {n_in} inputs but {n_out} outputs (one per loop-carried value)"
    if kind in SAME_DTYPE_BINARY or kind in SAME_DTYPE_UNARY:
        types = {t.type_name for t in (*op.inputs, *op.outputs) if t is not None}
        if len(types) > 1:
            return f"{kind} mixes dtypes {', '.join(sorted(types))}"
    if kind in COMPARISONS:
        a, b = op.inputs
        if a is not None and b is not None and a.type_name != b.type_name:
            return f"{kind} compares {a.type_name} with {b.type_name}"
    return None
