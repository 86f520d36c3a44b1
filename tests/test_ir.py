"""The IR's mutation API keeps the graph valid and refuses what would break it."""

import numpy as np
import pytest
from helpers import fixture

import tflgraph
from tflgraph.ir import GraphError, Snapshot


def small_model():
    model = tflgraph.Model()
    sg = model.add_subgraph("main")
    x = sg.new_tensor("x", (1, 4))
    sg.inputs = [x]
    c = sg.new_constant(np.ones((1, 4), np.float32), "c")
    y = sg.new_tensor("y", (1, 4))
    add = sg.add_op("ADD", [x, c], [y], {"fused_activation_function": 0})
    sg.outputs = [y]
    model.signature_defs.append(tflgraph.SignatureDef("serving", sg, [("x", x)], [("y", y)]))
    return model, sg, x, c, y, add


def test_remove_op_refuses_while_its_output_is_used():
    model, sg, x, c, y, add = small_model()
    with pytest.raises(GraphError, match="still used"):
        sg.remove_op(add)


def test_replace_all_uses_rewires_ops_outputs_and_signatures_keeping_names():
    model, sg, x, c, y, add = small_model()
    z = sg.new_tensor("z", (1, 4))
    sg.add_op("MUL", [x, c], [z], {"fused_activation_function": 0})
    sg.replace_all_uses(y, z, keep_name=True)
    assert sg.outputs == [z] and z.name == "y" and y.name == "z"
    assert model.signature_defs[0].outputs == [("y", z)]
    sg.remove_op(add)  # now unused
    sg.check()
    out = tflgraph.load(tflgraph.to_bytes(model))
    assert out.op_counts() == {"MUL": 1}
    assert [t.name for t in out.main.outputs] == ["y"]


def test_new_constant_never_edits_a_shared_buffer_and_keeps_scalars_0d():
    model = tflgraph.load(fixture("mlp"))
    sg = model.main
    w = next(t for t in sg.tensors if t.is_constant)
    before = bytes(w.buffer.data)
    copy = sg.new_constant(np.array(w.data) * 2)
    assert copy.buffer is not w.buffer and bytes(w.buffer.data) == before
    assert sg.new_constant(np.float32(3)).shape == ()


def test_operators_are_returned_in_execution_order():
    model, sg, x, c, y, add = small_model()
    # an op added last but consumed by the first op sorts before it
    w = sg.new_tensor("w", (1, 4))
    neg = sg.add_op("NEG", [x], [w])
    sg.set_input(add, 0, w)
    assert sg.operators == [neg, add]
    sg.check()


def test_check_catches_broken_invariants():
    model, sg, x, c, y, add = small_model()
    add.inputs[0] = sg.new_tensor("stray", (1, 4))  # edited behind the API's back
    with pytest.raises(GraphError, match="edges"):
        sg.check()


def test_a_tensor_cannot_get_two_producers():
    model, sg, x, c, y, add = small_model()
    with pytest.raises(GraphError, match="already has a producer"):
        sg.add_op("NEG", [x], [y])


def test_check_names_unproduced_reads():
    model, sg, x, c, y, add = small_model()
    orphan = sg.new_tensor("orphan", (1, 4))
    sg.set_input(add, 0, orphan)
    with pytest.raises(GraphError, match="never produced"):
        sg.check()


def test_snapshot_restores_the_graph_and_shares_the_weights():
    model, sg, x, c, y, add = small_model()
    before, weights = tflgraph.to_bytes(model), c.buffer
    snap = Snapshot(model)
    sg.set_input(add, 1, sg.new_constant(np.zeros((1, 4), np.float32), "zeros"))
    add.options["fused_activation_function"] = 1
    y.shape = (1, 2)
    z = sg.new_tensor("z", (1, 4))
    sg.add_op("MUL", [y, c], [z], {"fused_activation_function": 0})
    sg.replace_all_uses(y, z)
    snap.restore()
    sg.check()
    assert add.inputs == [x, c] and sg.outputs == [y] and y.shape == (1, 4)
    assert model.signature_defs[0].outputs == [("y", y)] and sg.num_ops == 1
    assert c.buffer is weights  # shared, not copied
    assert tflgraph.to_bytes(model) == before
