"""Synthetic WHILE-loop models written op for op as the converters write them, for tests and
benchmarks (benchmarks/rnn.py builds its scaling and grid models here)."""

from __future__ import annotations

import numpy as np

import tflgraph
from tflgraph.io.schema import new_options


def keras_lstm_loop(
    steps: int,
    features: int,
    units: int,
    batch: int = 1,
    sequences: bool = False,
    seed: int = 0,
    backwards: bool = False,
) -> bytes:
    """A Keras-3 style LSTM(units) over [batch, steps, features], written op for op as the
    converter writes it (RESHAPE or TRANSPOSE to time-major, REVERSE_V2 for go_backwards, two
    counters, LOGICAL_AND cond, GATHER read, a last-step or a whole-sequence accumulator),
    with random weights."""
    rng = np.random.default_rng(seed)
    model = tflgraph.Model()
    main, cond, body = (model.add_subgraph(n) for n in ("main", "while_cond", "while_body"))
    f32, i32 = np.float32, np.int32
    acc_shape = (steps if sequences else 1, batch, units)
    operands = [((), "int32"), ((), "int32"), (acc_shape, "float32")]
    operands += [((batch, units), "float32")] * 2 + [((steps, batch, features), "float32")]

    def args(sg, prefix):
        sg.inputs = [sg.new_tensor(f"{prefix}{i}", s, d) for i, (s, d) in enumerate(operands)]
        return sg.inputs

    def op(sg, kind, inputs, shape, dtype="float32", options=None, name="t"):
        out = sg.new_tensor(name, shape, dtype)
        sg.add_op(kind, [sg.new_constant(np.asarray(x)) if isinstance(x, (list, np.ndarray))
                         else x for x in inputs], [out], options)  # fmt: skip
        return out

    n, t, _, _, _, _ = args(cond, "cond_arg")
    limit = cond.new_constant(np.array(steps, i32), "T")
    less = [op(cond, "LESS", [k, limit], (), "bool") for k in (n, t)]
    cond.outputs = [op(cond, "LOGICAL_AND", less, (), "bool")]

    n, t, acc, h, c, seq = args(body, "body_arg")
    one = body.new_constant(np.array(1, i32), "one")
    n1, t1 = (op(body, "ADD", [k, one], (), "int32") for k in (n, t))
    x_t = op(body, "GATHER", [seq, t], (batch, features), options={"axis": 0})
    wide = (batch, 4 * units)
    z = [
        op(body, "FULLY_CONNECTED", [src, rng.uniform(-0.3, 0.3, (4 * units, k)).astype(f32),
                                     None], wide, options={})
        for src, k in ((x_t, features), (h, units))
    ]  # fmt: skip
    bias = rng.uniform(-0.5, 0.5, 4 * units).astype(f32)
    zb = op(body, "ADD", [op(body, "ADD", z, wide), bias], wide)
    gates = [body.new_tensor(g, (batch, units)) for g in "ifgo"]
    body.add_op("SPLIT", [one, zb], gates, {"num_splits": 4})
    i, f, g, o = (op(body, "TANH" if k == 2 else "LOGISTIC", [x], (batch, units))
                  for k, x in enumerate(gates))  # fmt: skip
    state = (batch, units)
    c_next = op(
        body, "ADD", [op(body, "MUL", [f, c], state), op(body, "MUL", [i, g], state)], state
    )
    h_next = op(body, "MUL", [o, op(body, "TANH", [c_next], state)], state)
    row = op(body, "RESHAPE", [h_next, np.array([1, batch, units], i32)], (1, batch, units))
    if sequences:  # acc[:t] ++ h' ++ acc[t+1:], the converter's dynamic-shape idiom

        def at(k, rest):
            return op(body, "CONCATENATION", [op(body, "RESHAPE", [k, np.array([1], i32)], (1,),
                      "int32"), np.array(rest, i32)], (3,), "int32", {"axis": 0})  # fmt: skip

        head = op(body, "SLICE", [acc, np.zeros(3, i32), at(t, [-1, -1])], (1, batch, units))
        tail = op(body, "SLICE", [acc, at(t1, [0, 0]), np.full(3, -1, i32)], (1, batch, units))
        for x in (head, tail):
            x.shape_signature = (-1, batch, units)
        row = op(body, "CONCATENATION", [head, row, tail], acc_shape, options={"axis": 0})
    body.outputs = [n1, t1, row, h_next, c_next, seq]

    x = main.new_tensor("x", (batch, steps, features))
    main.inputs = [x]
    swap = ("RESHAPE", [steps, batch, features]) if batch == 1 else ("TRANSPOSE", [1, 0, 2])
    tm = op(main, swap[0], [x, np.array(swap[1], i32)], (steps, batch, features))
    if backwards:
        tm = op(main, "REVERSE_V2", [tm, np.array([0], i32)], tm.shape)
    zero = main.new_constant(np.array(0, i32), "zero")
    state0 = main.new_constant(np.zeros(state, f32), "state0")
    acc0 = main.new_constant(np.zeros(acc_shape, f32), "acc0")
    results = [main.new_tensor(f"while{i}", s, d) for i, (s, d) in enumerate(operands)]
    main.add_op(
        "WHILE",
        [zero, zero, acc0, state0, state0, tm],
        results,
        new_options("WhileOptions", cond_subgraph_index=cond, body_subgraph_index=body),
    )
    if sequences:
        swap = ("RESHAPE", [batch, steps, units]) if batch == 1 else ("TRANSPOSE", [1, 0, 2])
        y = op(main, swap[0], [results[2], np.array(swap[1], i32)], (batch, steps, units))
    else:
        ends = [np.array(v, i32) for v in ([-1, 0, 0], [0, batch, units], [1, 1, 1])]
        options = {"begin_mask": 6, "end_mask": 6, "shrink_axis_mask": 1}
        y = op(main, "STRIDED_SLICE", [results[2], *ends], state, options=options)
    main.outputs = [y]
    model.check()
    return tflgraph.to_bytes(model)
