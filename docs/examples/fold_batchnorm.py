"""Fold an inference batch norm that stayed as MUL and ADD into the CONV_2D before it.

    y = CONV_2D(x, W, b) * scale + shift    (scale, shift: one value per output channel)
      = CONV_2D(x, W * scale[:, None, None, None], b * scale + shift)

CONV_2D's weights are [out, kh, kw, in], so output channel c's filter and bias scale by
scale[c]. The algebra is exact up to float rounding, and it holds only when the convolution
applies no activation before the MUL and the MUL and ADD apply none before the next step: the
pattern asks for activation NONE on all three.

    tflgraph optimize model.tflite --load docs/examples/fold_batchnorm.py \\
        --passes fold-batchnorm,cleanup --explain
"""

import numpy as np

import tflgraph
from tflgraph import Any, Const, Op

CONV_BN = Op(
    "ADD",
    Op(
        "MUL",
        Op("CONV_2D", Any("x"), Const("w"), Const("b"), activation="NONE", single_use=True),
        Const("scale"),
        activation="NONE",
        single_use=True,
    ),
    Const("shift"),
    activation="NONE",
)


@tflgraph.rule("fold-batchnorm", CONV_BN)
def fold_batchnorm(m):
    """CONV_2D -> MUL(scale) -> ADD(shift) becomes one CONV_2D with rescaled W and b."""
    conv = m.matched[0]  # the ops matched, innermost first: the CONV_2D, unnamed
    w, b = m["w"].data, m["b"].data
    units = w.shape[0]
    scale, shift = m["scale"].data.reshape(-1), m["shift"].data.reshape(-1)
    if w.dtype != np.float32 or {scale.size, shift.size} - {1, units}:
        return "not a float conv, or scale/shift are not one value per output channel"
    scale, shift = np.broadcast_to(scale, (units,)), np.broadcast_to(shift, (units,))
    w2 = m.constant(w * scale[:, None, None, None], like=m["w"])
    b2 = m.constant(b * scale + shift, like=m["b"])
    return m.new_op("CONV_2D", [m["x"], w2, b2], options=conv.options)
