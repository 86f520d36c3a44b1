"""The IR's mutation API keeps the graph valid and refuses what would break it."""

import dataclasses

import networkx as nx
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


def test_operators_stay_in_execution_order_through_edits():
    model = tflgraph.load(fixture("k3_bilstm"))
    sg = model.main

    def expected():  # the original order wherever the dependencies allow
        index = {op: i for i, op in enumerate(sg.iter_ops())}
        g = nx.DiGraph()
        g.add_nodes_from(index)
        for op in index:
            producers = {sg.producer(t) for t in op.inputs if t is not None}
            g.add_edges_from((p, op) for p in producers - {None, op})
        return list(nx.lexicographical_topological_sort(g, key=index.__getitem__))

    first = sg.operators[0]
    x = first.inputs[0]
    neg = sg.add_op("NEG", [x], [sg.new_tensor("neg", x.shape)])
    assert sg.operators == expected() and sg.operators[-1] is neg
    sg.set_input(first, 0, neg.outputs[0])  # now the first op waits for the new one
    assert sg.operators == expected() and sg.operators[0] is neg
    tail = sg.add_op("NEG", [neg.outputs[0]], [sg.new_tensor("tail", x.shape)])
    sg.remove_op(tail)
    assert sg.operators == expected()
    sg.set_input(first, 0, x)
    sg.remove_op(neg)
    assert sg.operators == expected() and sg.operators[0] is first


def test_operators_of_a_cycle_raise():
    model, sg, x, c, y, add = small_model()
    neg = sg.add_op("NEG", [y], [sg.new_tensor("w", (1, 4))])
    sg.set_input(add, 0, neg.outputs[0])  # add reads neg, which reads add
    with pytest.raises(GraphError, match="cycle"):
        _ = sg.operators


def test_check_catches_broken_invariants():
    model, sg, x, c, y, add = small_model()
    sg.graph.add_edge(sg.new_tensor("stray", (1, 4)), add)  # edited behind the API's back
    with pytest.raises(GraphError, match="edges"):
        sg.check()


def test_operand_lists_change_only_through_the_subgraph():
    model, sg, x, c, y, add = small_model()
    stray = sg.new_tensor("stray", (1, 4))
    for write in (
        lambda: add.inputs.__setitem__(0, stray),
        lambda: add.inputs.append(stray),
        lambda: add.outputs.pop(),
        lambda: add.inputs.__iadd__([None]),
    ):
        with pytest.raises(GraphError, match="set_input"):
            write()
    assert add.inputs == [x, c] and sg.consumers(x) == [add]
    sg.set_input(add, 3, stray)  # past the end: pads with absent operands
    assert add.inputs == [x, c, None, stray] and sg.consumers(stray) == [add]
    sg.set_inputs(add, [c, c])
    assert add.inputs == [c, c] and sg.consumers(x) == [] and sg.consumers(stray) == []
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


def test_option_reads_the_value_else_what_the_schema_says_an_absent_field_means():
    model, sg, x, c, y, add = small_model()
    assert add.option("fused_activation_function") == 0  # set
    assert add.option("pot_scale_int16") == 1  # absent: the schema default, not 0
    assert add.option("axis", -1) == -1  # AddOptions has no such field
    flat = sg.add_op("RESHAPE", [x], [sg.new_tensor("flat", (4,))], {})
    assert flat.option("new_shape", "unset") is None  # an absent vector
    neg = sg.add_op("NEG", [x], [sg.new_tensor("n", (1, 4))])  # no options table
    assert neg.option("fused_activation_function") is None
    assert neg.option("fused_activation_function", 0) == 0


def test_activation_names_the_fused_activation():
    model, sg, x, c, y, add = small_model()
    relu = sg.add_op("MUL", [x, c], [sg.new_tensor("m", (1, 4))], {"fused_activation_function": 1})
    neg = sg.add_op("NEG", [x], [sg.new_tensor("n", (1, 4))])  # no options table
    assert (add.activation, relu.activation, neg.activation) == ("NONE", "RELU", "NONE")


def test_subgraph_users_follow_added_and_removed_ops_and_subgraphs():
    model = tflgraph.load(fixture("k3_bilstm"))
    loop = next(op for op in model.main.iter_ops() if op.type == "WHILE")
    body = loop.options["body_subgraph_index"]

    def scan():  # what the index must agree with: every op of the model that refers to body
        return {op for s in model.subgraphs for op in s.iter_ops() if body in op.subgraphs()}

    def twin(sg):  # a second WHILE on the same cond and body, with results of its own
        outs = [sg.new_tensor(f"twin_{t.name}", t.shape, t.dtype) for t in loop.outputs]
        return sg.add_op(dataclasses.replace(loop, outputs=outs))

    assert model.subgraph_users(body) == [loop]
    other = twin(model.main)
    assert set(model.subgraph_users(body)) == scan() == {loop, other}
    model.main.remove_op(other)
    assert model.subgraph_users(body) == [loop]
    extra = model.add_subgraph("extra")
    third = twin(extra)
    assert set(model.subgraph_users(body)) == scan() == {loop, third}
    model.subgraphs.remove(extra)
    assert model.subgraph_users(body) == [loop] and scan() == {loop}


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
