"""The GRU blend inside a WHILE body, with one op fewer.

A Keras GRU step ends with h' = z*h + (1-z)*hh (update gate z, previous state h, candidate
hh): MUL, SUB, MUL, ADD. The same value is hh + z*(h - hh): SUB, MUL, ADD. Rules run on every
subgraph, WHILE bodies included, so this one rewrites the loop body of a Keras 3 GRU.

    tflgraph optimize fixtures/k3_gru.tflite -o gru.tflite --load docs/examples/gru_blend.py \\
        --passes gru-blend,cleanup --explain

No op needs a name: the rewrite reads the captures z, h, hh and returns the new tensor, and
the framework checks the whole matched region (the SUB inside included) before it commits.
"""

import numpy as np

import tflgraph
from tflgraph import Any, Const, Op

ONE = Const(where=lambda a: bool(np.all(a == 1)))
BLEND = Op("ADD", Op("MUL", Any("z"), Any("h")), Op("MUL", Op("SUB", ONE, Any("z")), Any("hh")))


@tflgraph.rule("gru-blend", BLEND)
def gru_blend(m):
    """z*h + (1-z)*hh -> hh + z*(h - hh): three ops instead of four."""
    diff = m.new_op("SUB", [m["h"], m["hh"]])
    return m.new_op("ADD", [m["hh"], m.new_op("MUL", [m["z"], diff])])
