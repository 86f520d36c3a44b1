"""tflgraph: a graph-rewriting compiler for TensorFlow Lite flatbuffers."""

from tflgraph.errors import ModelError, TflgraphError
from tflgraph.io.reader import load
from tflgraph.io.schema import Options, new_options
from tflgraph.io.writer import save, to_bytes
from tflgraph.ir import Buffer, GraphError, Model, Operator, SignatureDef, Subgraph, Tensor
from tflgraph.pattern import Any, Const, Op, Rest
from tflgraph.pipeline import Option, Pass, PassError, optimize, register, run_passes
from tflgraph.quant.quantize import quantize
from tflgraph.rules import Match, RulePass, rule
from tflgraph.runtime.verify import VerifyError, VerifyReport, verify

__version__ = "0.1.0"

__all__ = [
    "Any",
    "Const",
    "Match",
    "Op",
    "Rest",
    "RulePass",
    "rule",
    "Buffer",
    "GraphError",
    "Model",
    "ModelError",
    "Operator",
    "Option",
    "Options",
    "Pass",
    "PassError",
    "SignatureDef",
    "Subgraph",
    "Tensor",
    "TflgraphError",
    "VerifyError",
    "VerifyReport",
    "load",
    "new_options",
    "optimize",
    "quantize",
    "register",
    "run_passes",
    "save",
    "to_bytes",
    "verify",
]
