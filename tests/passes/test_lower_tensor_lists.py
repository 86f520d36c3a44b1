"""lower-tensor-lists: Keras 3 LSTM/GRU on batch None converted with Select TF ops keep their
loop outputs in Flex TensorLists, which no runtime here runs. The reference interpreter
computes them as Keras does; after the default pipeline --target tflm they have no Flex op and
no dynamic shape, LSTMs are fused and GRUs static loops, and LiteRT and TFLM give the stored
Keras outputs invoke after invoke. Lists the pass cannot prove stay, with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    as_bytes,
    assert_equal_values,
    assert_gives_tf_reference,
    assert_second_run_changes_nothing,
    changed,
    fixture,
    run,
    tf_reference,
    tflgraph_cli,
)

import tflgraph
from tflgraph.io.nodedef import NodeDefError, flex_node
from tflgraph.io.schema import OP_CODES, TENSOR_TYPES
from tflgraph.ir import Model, Operator, Tensor
from tflgraph.reference import interpreter, kernels_flex
from tflgraph.reference.interpreter import evaluate
from tflgraph.runtime import runtimes
from tflgraph.runtime.targets import shape_problems, unsupported_ops

FRONT = ["freeze-shapes", "fold-constants", "lower-tensor-lists", "cleanup"]
# fixture -> (DYNAMIC_UPDATE_SLICE after FRONT, ops counted after the default pipeline)
EXPECT = {
    "k3_lstm_flex_bnone": (0, {"UNIDIRECTIONAL_SEQUENCE_LSTM": 1, "WHILE": 0}),
    "k3_lstm_seq_flex_bnone": (1, {"UNIDIRECTIONAL_SEQUENCE_LSTM": 1, "WHILE": 0}),
    "k3_gru_flex_bnone": (0, {"WHILE": 1}),
    "k3_gru_seq_flex_bnone": (1, {"WHILE": 1}),
    # Bidirectional(GRU) -> LSTM -> LSTM(go_backwards); both GRU loops get one Reserve
    "k3_stacked_flex_bnone": (3, {"UNIDIRECTIONAL_SEQUENCE_LSTM": 2, "WHILE": 2}),
}
FLEX = sorted(EXPECT)


def flex_ops(model: Model) -> dict:
    return {k: v for k, v in model.op_counts().items() if k.startswith("CUSTOM:Flex")}


@pytest.mark.parametrize("name", FLEX)
def test_interpreter_computes_the_flex_model_as_keras(name):
    inputs, want = tf_reference(name)
    model = tflgraph.load(fixture(name))
    assert set(flex_ops(model)) == {
        "CUSTOM:FlexTensorListReserve", "CUSTOM:FlexTensorListSetItem",
        "CUSTOM:FlexTensorListStack",
    }  # fmt: skip
    for a, b in zip(want, evaluate(model, inputs)):
        assert_equal_values(a, b)


def test_no_runtime_runs_the_original():
    inputs, _ = tf_reference("k3_lstm_flex_bnone")
    for rt in ("litert", "tflm"):
        with pytest.raises(runtimes.RuntimeUnavailable):
            runtimes.run_isolated(fixture("k3_lstm_flex_bnone").read_bytes(), [inputs], rt)


@pytest.mark.parametrize("name", FLEX)
def test_lists_become_a_static_buffer(name):
    model, records = run(name, FRONT, target="tflm")
    assert changed(records, "lower-tensor-lists")
    assert flex_ops(model) == {}
    assert not any(t.type_name == "VARIANT" for sg in model.subgraphs for t in sg.tensors)
    # return_sequences: a [10, 1, 16] buffer written row by row; else a one-row buffer
    assert model.op_counts().get("DYNAMIC_UPDATE_SLICE", 0) == EXPECT[name][0]
    assert_gives_tf_reference(model, name)


@pytest.mark.parametrize("name", FLEX)
def test_default_pipeline_runs_in_tflm_as_keras(name):
    model = tflgraph.load(fixture(name))
    tflgraph.optimize(model, "default", target="tflm", check_each=True)
    ops = model.op_counts()
    assert flex_ops(model) == {}
    assert {k: ops.get(k, 0) for k in EXPECT[name][1]} == EXPECT[name][1]
    assert unsupported_ops(model, "tflm") == {} and shape_problems(model)["dynamic"] == []
    assert_gives_tf_reference(model, name)


@pytest.mark.parametrize("name", ["k3_lstm_seq_flex_bnone", "k3_gru_flex_bnone"])
def test_second_run_changes_nothing(name):
    assert_second_run_changes_nothing(name, FRONT, target="tflm")


def test_cli_says_it_checked_on_the_reference_interpreter(tmp_path):
    out = tmp_path / "out.tflite"
    done = tflgraph_cli("optimize", fixture("k3_gru_seq_flex_bnone"), "-o", out, "--target", "tflm")
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("verified:")]
    assert lines == [
        "verified: outputs equal the reference interpreter's outputs for the original "
        "(3 invokes); no runtime could compare the models"
    ]
    assert_gives_tf_reference(out, "k3_gru_seq_flex_bnone")


def test_disagreeing_element_shape_is_left_alone():
    model = tflgraph.load(fixture("k3_gru_seq_flex_bnone"))
    (stack,) = model.main.ops_of_type("CUSTOM:FlexTensorListStack")
    model.main.set_input(stack, 1, model.main.new_constant(np.array([-1, 15], np.int32)))
    model, records = run(model, FRONT, target="tflm")
    assert not changed(records, "lower-tensor-lists")
    assert len(flex_ops(model)) == 3
    why = [e for r in records for e in r.explanations if "element_shape" in e]
    assert why and "[-1, 15] disagrees with [1, 16]" in why[0]


@pytest.mark.parametrize(
    "attr, stored, wrong, why",
    [
        (b"element_dtype", b"\x30\x01", b"\x30\x03", "says element_dtype int32, not float32"),
        (b"num_elements", b"\x18\x0a", b"\x18\x09", "says num_elements 9, not 10"),
    ],
)
def test_node_def_that_disagrees_with_the_tensors_is_left_alone(attr, stored, wrong, why):
    """The Stack's NodeDef is TensorFlow's own word on the list: an element_dtype or a
    num_elements that contradicts the tensors leaves the list as it is."""
    model = tflgraph.load(fixture("k3_gru_seq_flex_bnone"))
    (stack,) = model.main.ops_of_type("CUSTOM:FlexTensorListStack")
    assert "element_dtype=float32" in flex_node(stack.custom_options).describe()
    entry = bytes([len(attr)]) + attr + b"\x12\x02"  # map key, then the 2-byte AttrValue
    options = bytes(stack.custom_options)
    assert options.count(entry + stored) == 1
    stack.custom_options = options.replace(entry + stored, entry + wrong)
    model, records = run(model, FRONT, target="tflm")
    assert not changed(records, "lower-tensor-lists") and len(flex_ops(model)) == 3
    assert any(why in e for r in records for e in r.explanations)


def test_flex_node_reads_the_tensorflow_op_and_its_attributes():
    model = tflgraph.load(fixture("dead_k3_lstm_flex"))
    (erf,) = model.main.ops_of_type("CUSTOM:FlexErf")
    assert flex_node(erf.custom_options).describe() == "Erf(T=float32)"
    with pytest.raises(NodeDefError):
        flex_node(b"\x01\x02")
    rng = np.random.default_rng(0)
    options = bytearray(erf.custom_options)
    for _ in range(300):  # damaged NodeDefs give NodeDefError or a description, nothing else
        damaged = bytearray(options)
        damaged[rng.integers(10, len(damaged) - 6)] = rng.integers(256)
        try:
            flex_node(bytes(damaged)).describe()
        except NodeDefError:
            pass
    done = tflgraph_cli("inspect", fixture("dead_k3_lstm_flex"))
    assert "flex: CUSTOM:FlexErf = Erf(T=float32)" in done.stdout


def test_unproved_lowering_is_undone(monkeypatch):
    """An interpreter whose Stack reverses the rows: the lowered buffer no longer gives the
    list's values, so the pass restores the model."""
    stack = interpreter.KERNELS["CUSTOM:FlexTensorListStack"]
    monkeypatch.setitem(
        interpreter.KERNELS, "CUSTOM:FlexTensorListStack", lambda op, *xs: stack(op, *xs)[::-1]
    )
    model, records = run("k3_gru_seq_flex_bnone", FRONT, target="tflm")
    assert not changed(records, "lower-tensor-lists") and len(flex_ops(model)) == 3
    assert any("not proved equal" in e for r in records for e in r.explanations)


def test_list_kernels_read_unset_elements_as_zeros():
    """As TensorFlow: a reserved element never set stacks and reads as zeros of the element
    shape; an index outside the list is an error, not a clamp."""
    model = from_tensor_model()  # any op: the kernels read only its output tensor's dtype
    op = model.main.operators[1]
    lst = kernels_flex.reserve(op, np.array([-1], np.int32), np.int32(3))
    lst = kernels_flex.set_item(op, lst, np.int32(1), np.float32([1, 2]))
    assert kernels_flex.stack(op, lst).tolist() == [[0, 0], [1, 2], [0, 0]]
    assert kernels_flex.get_item(op, lst, np.int32(2)).tolist() == [0, 0]
    with pytest.raises(IndexError):
        kernels_flex.set_item(op, lst, np.int32(3), np.float32([1, 2]))


def from_tensor_model() -> Model:
    """l = FromTensor(x [4, 3]); y = GetItem(l, 2) + 1; n = Length(l)."""
    model = Model()
    sg = model.add_subgraph("main")
    x, y, y1 = sg.new_tensor("x", (4, 3)), sg.new_tensor("y", (3,)), sg.new_tensor("y1", (3,))
    n = sg.new_tensor("n", (), "int32")
    lst = sg.add_tensor(Tensor("list", TENSOR_TYPES["VARIANT"], ()))
    es = sg.new_constant(np.array([3], np.int32), "element_shape")

    def flex(name, inputs, outputs):
        custom = Operator(OP_CODES["CUSTOM"], inputs, outputs, custom_code="FlexTensorList" + name)
        sg.add_op(custom)

    flex("FromTensor", [x, es], [lst])
    flex("GetItem", [lst, sg.new_constant(np.array(2, np.int32), "i"), es], [y])
    flex("Length", [lst], [n])
    sg.add_op("ADD", [y, sg.new_constant(np.ones(3, np.float32), "one")], [y1], {})
    sg.inputs, sg.outputs = [x], [y1, n]
    return model


def test_from_tensor_get_item_and_length():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert [v.tolist() for v in evaluate(from_tensor_model(), [x])] == [[7, 8, 9], 4]
    model, records = run(from_tensor_model(), FRONT, target="tflm")
    assert changed(records, "lower-tensor-lists")
    assert model.op_counts() == {"GATHER": 1, "ADD": 1}
    assert [v.tolist() for v in evaluate(model, [x])] == [[7, 8, 9], 4]
    for rt in ("litert", "tflm"):
        (got,) = runtimes.run_isolated(tflgraph.to_bytes(model), [[x]], rt, modes=("no-reset",))[
            "no-reset"
        ]
        assert [v.tolist() for v in got] == [[7, 8, 9], 4], rt


def test_list_that_leaves_the_model_is_left_alone():
    model = from_tensor_model()
    (lst,) = [t for t in model.main.tensors if t.type_name == "VARIANT"]
    model.main.outputs = [*model.main.outputs, lst]
    model, records = run(model, ["lower-tensor-lists"], target="tflm")
    assert not changed(records, "lower-tensor-lists") and len(flex_ops(model)) == 3
    assert lst.type_name == "VARIANT"
    why = [e for r in records for e in r.explanations]
    assert any("'list' is an output of 'main'" in e for e in why), why


def test_verify_compares_with_the_interpreter_when_no_runtime_runs_the_original(tmp_path):
    """verify A B: neither runtime runs the Flex original, the interpreter computes all of it:
    B is compared with its outputs and the last line says so (exit 0 equal, 1 different)."""
    lowered = tmp_path / "lowered.tflite"
    model = tflgraph.load(fixture("k3_gru_flex_bnone"))
    tflgraph.optimize(model, "default", target="tflm")
    tflgraph.save(model, lowered)
    same = tflgraph_cli("verify", fixture("k3_gru_flex_bnone"), lowered)
    assert same.returncode == 0, same.stderr
    assert same.stdout.splitlines()[-1].startswith(
        "verified: B equals the reference interpreter's outputs for A"
    )
    other = tflgraph_cli("verify", fixture("k3_gru_flex_bnone"), fixture("k3_lstm_flex_bnone"))
    assert other.returncode == 1
    assert "DIFFERENT from the reference interpreter's outputs for A" in other.stdout


def test_batch_none_lists_wait_for_freeze_shapes():
    """Without freeze-shapes the rows are [-1, 16]: a static buffer would fix the batch."""
    model, records = run("k3_lstm_seq_flex_bnone", ["lower-tensor-lists"], target="tflm")
    assert not changed(records, "lower-tensor-lists") and len(flex_ops(model)) == 3
    why = [e for r in records for e in r.explanations]
    assert any("element shape is dynamic (freeze-shapes makes it static)" in e for e in why), why


HYBRID = "k3_lstm_flex_bnone_hybrid"  # Flex lists around int8-weight, float-activation layers


def test_lists_around_hybrid_layers_are_lowered():
    """Published dynamic-range models keep their lists around hybrid FULLY_CONNECTEDs, which the
    interpreter computes with dequantized weights for the proof: the lowered model is
    builtin-only, and LiteRT's hybrid kernels give the Keras outputs within the int8
    quantization error (measured 1.8e-3 of max|y| 0.41), invoke after invoke."""
    model, records = run(HYBRID, FRONT, target="tflm")
    assert changed(records, "lower-tensor-lists") and flex_ops(model) == {}
    inputs, want = tf_reference(HYBRID)
    runs = runtimes.run_isolated(as_bytes(model), [inputs] * 3, "litert", modes=("no-reset",))
    for got in runs["no-reset"]:
        assert_equal_values(want[0], got[0], rtol=1e-2)


def test_hybrid_flex_model_runs_in_tflm_with_dequantized_weights(tmp_path):
    """The one-step route to TFLM: dequantize-hybrid, then the default pipeline, which lowers
    the lists and fuses the loop. No runtime runs the Flex original: the check is the
    interpreter's, and the message says that it computed the hybrid layers as floats."""
    out = tmp_path / "out.tflite"
    done = tflgraph_cli(
        "optimize", fixture(HYBRID), "-o", out, "--target", "tflm",
        "--passes", "dequantize-hybrid,default",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = [ln for ln in done.stdout.splitlines() if ln.startswith("verified:")]
    assert len(said) == 1 and "hybrid layers with their dequantized weights" in said[0]
    model = tflgraph.load(out)
    assert model.op_counts().get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1 and flex_ops(model) == {}
    original = tflgraph.load(fixture(HYBRID))
    inputs, want = tf_reference(HYBRID)
    feeds = dict(zip(original.main.inputs, inputs))
    (ref,) = interpreter.evaluate_tensors(
        original.main, feeds, original.main.outputs, hybrid_as_float=True
    )
    for rt in ("litert", "tflm"):
        (got,) = runtimes.run_isolated(out.read_bytes(), [inputs], rt, modes=("reset",))["reset"]
        assert_equal_values(ref, got[0], where=rt)
        assert_equal_values(want[0], got[0], rtol=1e-2, where=rt)


def test_verify_compares_a_hybrid_flex_original_on_the_interpreter(tmp_path):
    """`tflgraph verify` of the hybrid Flex original against its lowered form: no runtime runs
    the original, the interpreter computes it (hybrid layers as floats) and says so."""
    out = tmp_path / "lowered.tflite"
    tflgraph.save(run(HYBRID, FRONT, target="tflm")[0], out)
    done = tflgraph_cli("verify", fixture(HYBRID), out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified: B equals the reference interpreter's outputs for A" in done.stdout
    assert "hybrid layers with their dequantized weights" in done.stdout
