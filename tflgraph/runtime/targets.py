"""Which builtin ops each target runtime can run: `--target tflm | litert | any`.

How the tables were obtained (tflite-micro 0.dev20261023182759, ai-edge-litert 2.3.0): for every
builtin opcode of the schema, `probe()` builds a one-op model (float32 [1, 4] in and out) and
loads it; the runtime either resolves the op or reports "Didn't find op for builtin opcode".
TFLM resolves ops while allocating (it ignores op versions); four ops (MEAN, SUM, MIRROR_PAD,
WHILE) were resolved but then crashed preparing the malformed probe op, which counts as
resolved. LiteRT resolves ops when the interpreter is built, per version: an op counts if any
version 1-8 resolves. The names of the registration functions in TFLM's `_runtime.so`
(`nm -DC ... | grep Register_`) agree with the TFLM table, apart from custom ops. Re-run with
`python -m tflgraph.runtime.targets` after upgrading a runtime; tests/test_targets.py re-probes
a sample.

The tables are per op name, not per dtype or per shape: TFLM also needs static shapes (see
passes/static_loop_outputs.py), and both runtimes run custom ops only if a kernel is registered.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tflgraph.io.schema import CUSTOM, OP_CODES
from tflgraph.io.writer import to_bytes
from tflgraph.ir import Model, Operator
from tflgraph.reference.hybrid import is_hybrid

TARGETS = ("tflm", "litert", "any")

TFLM_OPS = frozenset(
    """
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND
BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM
DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL
EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER
GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG
LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM
MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX
REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT
SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE
SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV
UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
""".split()
)

# LiteRT resolves every builtin except these (most StableHLO ops need another resolver).
LITERT_MISSING = frozenset(
    """
CALL CONCAT_EMBEDDINGS DELEGATE PLACEHOLDER_FOR_GREATER_OP_CODES STABLEHLO_ABS
STABLEHLO_BROADCAST_IN_DIM STABLEHLO_CBRT STABLEHLO_CLAMP STABLEHLO_COMPARE
STABLEHLO_CONCATENATE STABLEHLO_CONVERT STABLEHLO_CONVOLUTION STABLEHLO_COSINE
STABLEHLO_CUSTOM_CALL STABLEHLO_DIVIDE STABLEHLO_DOT_GENERAL STABLEHLO_DYNAMIC_SLICE
STABLEHLO_DYNAMIC_UPDATE_SLICE STABLEHLO_EXPONENTIAL STABLEHLO_FLOOR STABLEHLO_IOTA
STABLEHLO_LOG STABLEHLO_LOGISTIC STABLEHLO_NEGATE STABLEHLO_OR STABLEHLO_POWER
STABLEHLO_REDUCE STABLEHLO_REMAINDER STABLEHLO_RESHAPE STABLEHLO_RSQRT STABLEHLO_SELECT
STABLEHLO_SLICE STABLEHLO_SORT STABLEHLO_SUBTRACT STABLEHLO_TANH STABLEHLO_TRANSPOSE
STABLEHLO_WHILE
""".split()
)
LITERT_OPS = frozenset(n for n in OP_CODES if n != "CUSTOM" and n not in LITERT_MISSING)

_RUNTIME_OPS = {"tflm": TFLM_OPS, "litert": LITERT_OPS}


def check_target(target: str) -> str:
    if target not in TARGETS:
        from tflgraph.errors import TflgraphError

        raise TflgraphError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    return target


def supports(target: str, op_type: str) -> bool:
    """True if `target` runs the builtin `op_type` ('any' = both runtimes). Custom ops: False."""
    check_target(target)
    runtimes = ("tflm", "litert") if target == "any" else (target,)
    return all(op_type in _RUNTIME_OPS[r] for r in runtimes)


def unsupported_ops(model: Model, target: str) -> dict[str, int]:
    """Op types (with counts) in the reachable subgraphs that `target` cannot run."""
    return {t: n for t, n in model.op_counts().items() if not supports(target, t)}


SHAPE_PROBLEMS = {
    "dynamic": "tensor(s) in a WHILE loop whose shape is only known while it runs",
    "zero-size": "zero-size tensor(s)",
}


def shape_problems(model: Model) -> dict[str, list[str]]:
    """Op outputs that TFLM cannot hold although it has the ops (a prediction; `inspect
    --target tflm` asks TFLM itself when it is installed): "dynamic" (inside a WHILE loop, a
    shape_signature with -1: the converter's whole-sequence accumulators, whose stored shape is
    one step of a shape that changes per iteration; TFLM plans memory from the stored shape, so
    the outputs come out wrong or the loop never stops) and "zero-size" (a 0 dimension, e.g.
    tf_keras GRU's SPLIT_V remainder: TFLM cannot allocate it). Elsewhere a -1 in the
    signature (a batch None) does not matter: TFLM takes the stored shape, which is static.
    Empty lists if none."""
    found: dict[str, list[str]] = {kind: [] for kind in SHAPE_PROBLEMS}
    reachable = model.reachable_subgraphs()
    loops = {body for sg in reachable for op in sg.ops_of_type("WHILE") for body in op.subgraphs()}
    for sg in reachable:
        for op in sg.iter_ops():
            for t in op.outputs:
                if t is not None and sg in loops and t.is_dynamic:
                    found["dynamic"].append(t.name)
                if t is not None and 0 in t.shape:
                    found["zero-size"].append(t.name)
    return found


def hybrid_layers(model: Model) -> list[str]:
    """Output names of the hybrid layers in the reachable subgraphs (TFLM runs none)."""
    return [
        op.outputs[0].name
        for sg in model.reachable_subgraphs()
        for op in sg.iter_ops()
        if is_hybrid(op)
    ]


# --------------------------------------------------------------------------- probing


def _one_op_model(code: int, version: int) -> bytes:
    m = Model()
    sg = m.add_subgraph("main")
    x, y = sg.new_tensor("x", (1, 4)), sg.new_tensor("y", (1, 4))
    sg.inputs, sg.outputs = [x], [y]
    # one operand whatever the op takes: the probe asks only whether the op is registered, so
    # the op is added as a ready Operator, which add_op takes without checking its operands
    sg.add_op(Operator(code, [x], [y], version=version))
    return to_bytes(m)


def _load_errors(runtime: str, data: bytes) -> str:
    """Load a model; return what the runtime said (its stderr and any exception text)."""
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    os.close(write)
    try:
        if runtime == "tflm":
            from tflite_micro.python.tflite_micro import runtime as tflm

            tflm.Interpreter.from_bytes(data)
        else:
            from ai_edge_litert.interpreter import Interpreter

            Interpreter(model_content=data)
    except Exception as e:  # the runtime's own error text says why
        os.write(2, f"\n{e}\n".encode())  # a line of its own after what the runtime printed
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    err = os.read(read, 1 << 16).decode(errors="replace")
    os.close(read)
    return err


def _resolves(runtime: str, code: int) -> bool:
    """False if the runtime has no kernel for the op (TFLM ignores versions; LiteRT: any of
    versions 1-8 counts, an error other than "no kernel" means the op was resolved)."""
    return any(
        "Didn't find op for builtin opcode" not in _load_errors(runtime, _one_op_model(code, v))
        for v in (range(1, 9) if runtime == "litert" else (1,))
    )


def probe(runtime: str, names: list[str] | None = None, timeout: float = 120) -> dict[str, bool]:
    """Which of `names` (default: every builtin) `runtime` resolves, probed in a child process
    so that an op crashing on the malformed probe model (after resolving) cannot take us down."""
    todo = sorted(names if names is not None else [n for n in OP_CODES if n != "CUSTOM"])
    found: dict[str, bool] = {}
    while todo:
        proc = subprocess.run(
            [sys.executable, "-m", "tflgraph.runtime.targets", "--child", runtime, *todo],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        for line in proc.stdout.splitlines():
            name, ok = line.split()
            found[name] = ok == "1"
        todo = [n for n in todo if n not in found]
        if todo and proc.returncode != 0:  # crashed while preparing todo[0]: it was resolved
            found[todo.pop(0)] = True
        elif todo:
            raise RuntimeError(f"probe of {runtime} stopped early: {proc.stderr[-300:]}")
    return found


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        for name in argv[2:]:
            print(name, int(_resolves(argv[1], OP_CODES[name])), flush=True)
        return 0
    for runtime in ("tflm", "litert"):
        have = sorted(n for n, ok in probe(runtime).items() if ok and OP_CODES[n] != CUSTOM)
        print(f"{runtime}: {len(have)} builtin ops\n{' '.join(have)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
