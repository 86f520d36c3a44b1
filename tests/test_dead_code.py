"""The driver removes the dead code a pass leaves, whether or not the pass says it changed
the model, and skips the removal only when nothing was edited since the last one."""

import numpy as np
import pytest
from helpers import fixture

import tflgraph
from tflgraph.pipeline import Pass, register, run_passes, unregister


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
    start = model.edits
    c = sg.new_constant(np.zeros(sg.inputs[0].shape, np.float32))
    y = sg.new_tensor("y", c.shape)
    op = sg.add_op("ADD", [sg.inputs[0], c], [y], {"fused_activation_function": 0})
    sg.set_input(op, 1, sg.inputs[0])
    sg.replace_all_uses(y, sg.inputs[0])
    sg.remove_op(op)
    assert model.edits == start + 6
