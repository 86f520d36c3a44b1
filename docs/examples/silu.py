"""SiLU, x * sigmoid(x), as HARD_SWISH: a rewrite the check refuses, and why.

TFLite has no SiLU op; the converter writes LOGISTIC and MUL. HARD_SWISH,
x * relu6(x + 3) / 6, is one op that MobileNetV3 uses in SiLU's place, so a first attempt
rewrites the pair into it. They are different functions (they differ by up to 0.14 near
x = -2.5 and agree only far from 0), and the framework's check on samples says so:

    tflgraph optimize model.tflite --load docs/examples/silu.py --passes silu-as-hard-swish \\
        --explain
    [silu-as-hard-swish] main: MUL -> 'y': refused: not equal: 'y': max error ...

The rule states no proof and so is checked (the default). Approximations belong in a
training-time change of the model, not in a compiler that promises equal outputs.
"""

import tflgraph
from tflgraph import Any, Op

SILU = Op("MUL", Any("x"), Op("LOGISTIC", Any("x")))


@tflgraph.rule("silu-as-hard-swish", SILU)
def silu_as_hard_swish(m):
    """x * sigmoid(x) -> HARD_SWISH(x): refused by the check (not the same function)."""
    return m.new_op("HARD_SWISH", [m["x"]])
