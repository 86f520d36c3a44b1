"""The driver removes the dead code a pass leaves, whether or not the pass says it changed
the model; remove_dead_code skips only the subgraphs nothing changed since it last saw them."""

import numpy as np
import pytest
from helpers import fixture

import tflgraph
from tflgraph.pipeline import Pass, register, remove_dead_code, run_passes, unregister


@pytest.fixture
def trial_pass():
    """A pass that builds a trial op, declines it (returns False) and leaves it unread, as a
    pass whose numerical proof failed does."""

    @register("test-leave-trial")
    class LeaveTrial(Pass):
        def run(self, model):
            sg = model.main
            x = sg.inputs[0]
            sg.add_op("NEG", [x], [sg.new_tensor("trial", x.shape)])
            return False

    yield "test-leave-trial"
    unregister("test-leave-trial")


def test_dead_code_a_declining_pass_leaves_is_removed(trial_pass):
    model = tflgraph.load(fixture("mlp"))
    before = model.op_counts()
    records = run_passes(model, ["cleanup", trial_pass])
    assert not any(r.changed for r in records)
    assert model.op_counts() == before
    assert all(t.name != "trial" for t in model.main.tensors)


def test_edits_count_every_mutation_of_the_subgraph_api():
    model = tflgraph.load(fixture("mlp"))
    sg = model.main
    start = sg.edits
    c = sg.new_constant(np.zeros(sg.inputs[0].shape, np.float32))
    y = sg.new_tensor("y", c.shape)
    op = sg.add_op("ADD", [sg.inputs[0], c], [y], {"fused_activation_function": 0})
    sg.set_input(op, 1, sg.inputs[0])
    sg.replace_all_uses(y, sg.inputs[0])
    sg.remove_op(op)
    assert sg.edits == start + 6


def test_a_subgraph_seen_clean_is_looked_at_again_when_its_outputs_change():
    model = tflgraph.load(fixture("mlp"))
    assert remove_dead_code(model) == 0
    assert remove_dead_code(model) == 0
    model.main.outputs = []  # not an edit of the API: nothing reads the ops any more
    assert remove_dead_code(model) == 3 and model.op_counts() == {}


def test_a_subgraph_no_entry_point_reaches_any_more_goes():
    model = tflgraph.load(fixture("multi_sig"))
    remove_dead_code(model)
    encode = model.signature_defs.pop().subgraph  # subgraph 1, reached by its signature only
    assert encode in model.subgraphs
    remove_dead_code(model)
    assert [sg.name for sg in model.subgraphs] == ["decode"]


def test_a_loop_whose_body_lost_its_side_effect_is_removed():
    model = tflgraph.Model()
    main, cond, body = (model.add_subgraph(n) for n in ("main", "cond", "body"))
    x = main.new_tensor("x", (1,))
    main.inputs, main.outputs = [x], [x]
    options = {"cond_subgraph_index": cond, "body_subgraph_index": body}
    main.add_op("WHILE", [x], [main.new_tensor("y", (1,))], options)  # nobody reads y
    c = cond.new_tensor("c", (1,))
    cond.inputs, cond.outputs = [c], [cond.new_tensor("go", (1,), "bool")]
    cond.add_op("LESS", [c, c], cond.outputs)
    a = body.new_tensor("a", (1,))
    body.inputs, body.outputs = [a], [a]
    side = body.add_op("CUSTOM", [a], [body.new_tensor("s", (1,))], custom_code="Side")
    assert remove_dead_code(model) == 0  # the loop stays for its body's custom op
    body.remove_op(side)  # main itself is unchanged, but its loop has no side effect now
    assert remove_dead_code(model) == 1
    assert model.subgraphs == [main] and main.num_ops == 0
