"""tflgraph: a graph-rewriting compiler for TensorFlow Lite flatbuffers."""

from .errors import ModelError, TflgraphError
from .ir import Buffer, GraphError, Model, Operator, SignatureDef, Subgraph, Tensor
from .pattern import Any, Const, Op, Rest
from .pipeline import Pass, PassError, optimize, register, run_passes
from .reader import load
from .rules import Match, RulePass, rule
from .schema import Options, new_options
from .verify import VerifyError, VerifyReport, verify
from .writer import save, to_bytes

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
    "register",
    "run_passes",
    "save",
    "to_bytes",
    "verify",
]
