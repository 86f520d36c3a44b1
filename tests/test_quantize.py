"""`tflgraph quantize`: full-integer int8 models that LiteRT and TFLM both run, checked against
the float model on held-out inputs; the tf_keras converter's own int8 LSTM (same weights, same
calibration set: fixtures tfk_lstm_q16/_q64) is the reference for error and size."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from helpers import FIXTURES, fixture, run, tflgraph_cli
from modelbuild import dense_model, gated_cell_model, single_op

import tflgraph
from tflgraph.pipeline import resolve
from tflgraph.quant import auto
from tflgraph.quant.calibration import QuantizeError, calibrate
from tflgraph.quant.check import check
from tflgraph.quant.params import channel_axis, qparams, scale_zp
from tflgraph.quant.quantize import quantize
from tflgraph.runtime import runtimes
from tflgraph.runtime.verify import load_inputs, ports

pytestmark = pytest.mark.skipif(
    not (runtimes.available("litert") and runtimes.available("tflm")),
    reason="needs ai-edge-litert and tflite-micro",
)


def _data(base: str, which: str) -> str:
    return str(FIXTURES / f"{base}.{which}.npz")


def _worst(report) -> float:
    """The largest error of the report's first output over the runtimes."""
    return max(report.outputs[0].error.values())


@pytest.mark.parametrize("base", ["tfk_lstm_q16", "tfk_lstm_q64"])
def test_fused_lstm_matches_the_converters_int8(base):
    """Same float model, same calibration set, same held-out inputs: the error against the
    float model is at most 1.1x the converter's int8 model's, the file at most 1.05x its."""
    ours = quantize(fixture(base), _data(base, "calib"), held_out=_data(base, "heldout"))
    float_model = tflgraph.load(fixture(base))
    tests = load_inputs(_data(base, "heldout"), ports(float_model, "inputs"))
    converter = check(float_model, tflgraph.load(fixture(base + "_int8")), tests)
    assert ours.report.ok, ours.report.lines()
    assert not converter.skipped and converter.outputs[0].disagreement <= 1.0
    assert _worst(ours.report) <= 1.1 * _worst(converter)
    size = len(tflgraph.to_bytes(ours.model))
    assert size <= 1.05 * fixture(base + "_int8").stat().st_size


def test_calibration_sees_every_step_inside_loops_and_fused_lstms():
    """The ranges cover a WHILE body's values over all steps (the body's h output over every
    step holds the loop's final h and more) and a fused LSTM's gates, cell and hidden state
    of every step (the hidden state's range is the sequence output's)."""
    model = tflgraph.load(fixture("tfk_lstm_q16"))
    samples = load_inputs(_data("tfk_lstm_q16", "calib"), ports(model, "inputs"))
    ranges = calibrate(model, samples)
    (op,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    inside = {what for (o, what) in ranges.inside if o is op}
    assert inside == {"gate0", "gate1", "gate2", "gate3", "cell", "hidden"}
    assert ranges.inside[(op, "hidden")] == ranges.tensors[op.outputs[0]]
    cell = ranges.inside[(op, "cell")]
    assert 0.5 < max(-cell[0], cell[1]) < 4  # tanh(c) = h / o, and |h| reaches ~0.6

    gru, _ = run("k3_gru_seq", resolve("default"))
    (loop,) = gru.main.ops_of_type("WHILE")
    body = loop.option("body_subgraph_index")
    ranges = calibrate(gru, samples[:4])
    steps = ranges.tensors[body.outputs[2]]  # h after every step
    final = ranges.tensors[loop.outputs[2]]  # h after the last step
    assert steps[0] <= final[0] and steps[1] >= final[1]
    assert steps != final  # the earlier steps' values are in, not only the last


def test_public_api_takes_a_model_and_leaves_it_float():
    model = tflgraph.load(fixture("tfk_lstm_q16"))
    before = tflgraph.to_bytes(model)
    result = tflgraph.quantize(model, _data("tfk_lstm_q16", "calib"), verify=False)
    assert tflgraph.to_bytes(model) == before
    assert result.report is None and result.model.main.inputs[0].type_name == "INT8"


def test_int8_lstm_has_the_form_both_kernels_need():
    """The requirements the kernels do not check (INT8_NOTES.md): per-tensor weights, biases at
    s_in * s_w, int16 cell at 2^k with k in [-15, -9], output = h = intermediate 4."""
    model = quantize(fixture("tfk_lstm_q16"), _data("tfk_lstm_q16", "calib"), verify=False).model
    (op,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    s_x = scale_zp(op.inputs[0].quantization)[0]
    for k in range(1, 9):
        w = op.inputs[k]
        assert w.type_name == "INT8" and len(w.quantization["scale"]) == 1
        assert w.quantization["zero_point"][0] == 0
    for gate, k in enumerate(range(12, 16)):
        b, w = op.inputs[k], op.inputs[1 + gate]
        assert b.type_name == "INT32"
        assert np.isclose(b.quantization["scale"][0], s_x * w.quantization["scale"][0])
    cell = op.inputs[19]
    k = np.log2(cell.quantization["scale"][0])
    assert cell.type_name == "INT16" and k == round(k) and -15 <= k <= -9
    hidden = scale_zp(op.inputs[18].quantization)
    assert scale_zp(op.outputs[0].quantization) == hidden
    assert len(op.intermediates) == 5
    assert scale_zp(op.intermediates[4].quantization) == hidden


@pytest.fixture
def rng(request):
    """Seeded by the test's name: each test draws the same inputs whatever runs before it."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def _calibration(tmp_path, model, rng, n=64, held=16) -> tuple[str, str]:
    """Uniform [-1, 1) inputs (what the fixtures' models were made for), keyed by position,
    in two files: calibration and held-out."""
    paths = []
    for name, count in (("calib", n), ("heldout", held)):
        path = tmp_path / f"{name}.npz"
        arrays = {
            str(i): rng.uniform(-1, 1, (count, *t.shape)).astype(np.float32)
            for i, t in enumerate(model.main.inputs)
        }
        np.savez(path, **arrays)
        paths.append(str(path))
    return paths[0], paths[1]


def _quantized_loop_fixture(name, tmp_path, rng, **kw):
    """(the float bytes, quantize's Result) of a loop fixture after the default pipeline,
    calibrated on 512 uniform samples (128 for the T=50 `..._big` ones)."""
    model, _ = run(name, resolve("default"))
    float_bytes = tflgraph.to_bytes(model)
    calib, held = _calibration(tmp_path, model, rng, n=128 if name.endswith("big") else 512)
    return float_bytes, quantize(float_bytes, calib, held_out=held, **kw)


KERAS3_LSTMS = [
    "k3_lstm",
    "k3_lstm_big",
    "k3_lstm_seq",
    "k3_lstm_stacked",
    "k3_bilstm",
    "k3_seq2seq",
    "k3_lstm_return_state",
]


@pytest.mark.parametrize("name", KERAS3_LSTMS)
def test_keras3_lstm_after_optimize(name, tmp_path, rng):
    """Keras 3 LSTMs (WHILE loops: last step, sequence, stacked, bidirectional, seq2seq whose
    decoder starts from the encoder's states, states as outputs) fused by optimize, then
    quantized: both runtimes run them and agree within 1 LSB, the error is under 2% of each
    output's range; for u=128 the file is at most 0.35x the float one. (512 calibration
    samples: the hidden states' distribution has long tails, and a held-out value beyond the
    calibrated range is clipped, as in the converter's int8.)"""
    model, _ = run(name, resolve("default"))
    float_bytes = tflgraph.to_bytes(model)
    calib, held = _calibration(tmp_path, model, rng, n=512)
    result = quantize(float_bytes, calib, held_out=held)
    report = result.report
    assert not report.skipped, report.skipped
    assert report.ok, report.lines()
    for out in report.outputs:
        assert out.disagreement <= 1.0
        assert max(out.error.values()) < 0.02 * out.span
    if name == "k3_lstm_big":
        assert len(tflgraph.to_bytes(result.model)) <= 0.35 * len(float_bytes)


def _loop_values_agree(model) -> None:
    """TFLM copies a loop value's bytes between the WHILE and its subgraphs: each one has the
    same dtype and parameters on the WHILE's input and output, the cond's and body's inputs
    and the body's output; counters stay int32."""
    for sg in model.reachable_subgraphs():
        for op in sg.ops_of_type("WHILE"):
            cond, body = op.option("cond_subgraph_index"), op.option("body_subgraph_index")
            for i, t in enumerate(op.inputs):
                ends = [t, op.outputs[i], cond.inputs[i], body.inputs[i], body.outputs[i]]
                assert len({x.type_name for x in ends}) == 1, [x.type_name for x in ends]
                if t.type_name in ("INT8", "INT16"):
                    assert len({scale_zp(x.quantization) for x in ends}) == 1
                else:
                    assert t.type_name == "INT32"
            for x in body.tensors:
                assert x.type_name != "FLOAT32" or not body.graph.degree(x), x.name


@pytest.mark.parametrize("name", ["k3_gru", "k3_gru_seq", "tfk_gru", "k3_gru_big"])
def test_gru_loops_get_int8_bodies(name, tmp_path, rng):
    """--loops int8: a GRU stays a WHILE loop; its body becomes int8 with one set of
    parameters per loop value (calibrated over every step). Both runtimes run it (their
    outputs drift apart by a few LSB over the steps: reported), the error is under 2% of the
    output range, and for u=64 the file is at most 0.35x the float one."""
    float_bytes, result = _quantized_loop_fixture(name, tmp_path, rng, loops="int8")
    report = result.report
    assert not report.skipped and report.ok, report.lines()
    assert max(report.outputs[0].error.values()) < 0.02 * report.outputs[0].span
    _loop_values_agree(result.model)
    if name.endswith("big"):
        assert len(tflgraph.to_bytes(result.model)) <= 0.35 * len(float_bytes)


@pytest.mark.parametrize(
    "name",
    [
        "k3_gru",
        "k3_gru_seq",
        "tfk_gru",
        "k3_gru_big",
        "k3_simplernn",
        "k3_simplernn_seq",
        "k3_custom_cell",
    ],
)
def test_int16_loop_bodies(name, tmp_path, rng):
    """--loops int16: the bodies compute in int16 with int8 weights (16x8), the loop values
    are int16 except the input sequence: GRU, SimpleRNN and a custom cell stay under 2% of the
    output range, LiteRT and TFLM agree within 1 LSB after every step, and for u=64 the file
    is at most 0.35x the float one."""
    float_bytes, result = _quantized_loop_fixture(name, tmp_path, rng, loops="int16")
    report = result.report
    assert not report.skipped and report.ok, report.lines()
    for out in report.outputs:
        assert max(out.error.values()) < 0.02 * out.span
        assert out.disagreement <= 1.0
    _loop_values_agree(result.model)
    (loop,) = result.model.main.ops_of_type("WHILE")
    assert _body_kind(loop) == "int16"
    fcs = loop.option("body_subgraph_index").ops_of_type("FULLY_CONNECTED")
    assert all(op.inputs[1].type_name == "INT8" for op in fcs)
    if name.endswith("big"):
        assert len(tflgraph.to_bytes(result.model)) <= 0.35 * len(float_bytes)


@pytest.mark.parametrize("name", ["k3_simplernn", "k3_simplernn_seq", "k3_custom_cell"])
def test_other_cells_run_int8_within_five_percent(name, tmp_path, rng):
    """--loops int8: SimpleRNN and a user-written cell as int8 loops run in both runtimes with
    their loop values consistent; their error is 2-4% of the output range (the tanh's int8
    pre-activation is 3x coarser than its output and the recurrence carries the rounding on),
    so the check is given --tolerance 0.05 here: the issue's 2% is met for them in int16
    (which --loops auto chooses)."""
    model, _ = run(name, resolve("default"))
    calib, held = _calibration(tmp_path, model, rng, n=512)
    result = quantize(tflgraph.to_bytes(model), calib, held_out=held, tolerance=0.05, loops="int8")
    assert not result.report.skipped and result.report.ok, result.report.lines()
    _loop_values_agree(result.model)


def _body_kind(loop) -> str:
    """What a WHILE body computes in: the type of its FULLY_CONNECTED activations."""
    fcs = loop.option("body_subgraph_index").ops_of_type("FULLY_CONNECTED")
    (kind,) = {op.inputs[0].type_name.lower() for op in fcs}
    return kind


@pytest.mark.parametrize(
    "name", ["k3_gru", "k3_gru_big", "k3_simplernn", "k3_custom_cell", "k3_stacked_flex_bnone"]
)
def test_auto_loops_meet_both_bounds(name, tmp_path, rng):
    """The default, --loops auto: every output within 2% of its range and LiteRT and TFLM
    within 1 LSB (the check bounds loops' outputs too), the file at most 0.35x the float one
    for u=64. One choice per loop (two GRUs in the stacked model, each measured on its own
    values), the bodies as chosen, and int16 exactly where the all-int8 model misses a bound
    on the model's outputs."""
    model, _ = run(name, resolve("default"))
    float_bytes = tflgraph.to_bytes(model)
    calib, held = _calibration(tmp_path, model, rng, n=128 if name.endswith("big") else 256)
    result = quantize(float_bytes, calib, held_out=held)
    report = result.report
    assert not report.skipped and report.ok, report.lines()
    for out in report.outputs:
        assert max(out.error.values()) <= 0.02 * out.span and out.disagreement <= 1.0
    loops = result.model.main.ops_of_type("WHILE")
    assert [c.name for c in result.loops] == [op.option("body_subgraph_index").name for op in loops]
    assert [c.kind for c in result.loops] == [_body_kind(op) for op in loops]
    _loop_values_agree(result.model)
    int8 = quantize(float_bytes, calib, held_out=held, loops="int8").report
    missed = any(max(o.error.values()) > o.bound or o.disagreement > 1.0 for o in int8.outputs)
    if missed:
        assert any(c.kind == "int16" for c in result.loops), [c.line() for c in result.loops]
    for c in result.loops:
        assert c.why.startswith("all-int8 measured" if c.kind == "int8" else "all-int8 missed")
    if name.endswith("big"):
        assert len(tflgraph.to_bytes(result.model)) <= 0.35 * len(float_bytes)


def test_auto_keeps_int8_loops_measured_within_the_bounds(tmp_path, rng, monkeypatch):
    """A loop whose all-int8 values are measured within both bounds keeps int8 bodies (the
    measurement is faked here: every real loop fixture drifts by more than 1 LSB in int8), and
    the final check then holds its outputs to 1 LSB: the real drift fails it."""
    model, _ = run("k3_simplernn", resolve("default"))
    calib, held = _calibration(tmp_path, model, rng, n=256)

    def perfect(*args):
        report = check(*args)
        for out in report.outputs:
            out.error = dict.fromkeys(out.error, 0.0)
            out.disagreement = 0.0
        return report

    monkeypatch.setattr(auto, "check", perfect)
    result = quantize(tflgraph.to_bytes(model), calib, held_out=held)
    (choice,) = result.loops
    assert choice.kind == "int8" and choice.why.startswith("all-int8 measured: error 0.00%")
    (loop,) = result.model.main.ops_of_type("WHILE")
    assert _body_kind(loop) == "int8"
    (out,) = result.report.outputs
    assert out.agreement == 1.0 and out.disagreement > 1.0 and not result.report.ok


def test_auto_without_a_check_takes_int16(tmp_path, rng):
    """--no-verify: nothing measures int8, so every loop computes in int16."""
    model, _ = run("k3_gru", resolve("default"))
    calib, _ = _calibration(tmp_path, model, rng)
    result = quantize(tflgraph.to_bytes(model), calib, verify=False)
    (choice,) = result.loops
    assert choice.kind == "int16" and "no held-out samples" in choice.why
    (loop,) = result.model.main.ops_of_type("WHILE")
    assert _body_kind(loop) == "int16" and result.report is None


def test_float_io_refuses_a_returned_lstm_state(tmp_path, rng):
    """LiteRT's XNNPACK delegate reads a returned LSTM state before the LSTM writes it when the
    outputs are dequantized (no graph edge orders them): refused with the way out."""
    model, _ = run("k3_lstm_return_state", resolve("default"))
    calib, held = _calibration(tmp_path, model, rng)
    with pytest.raises(QuantizeError, match="use --io int8"):
        quantize(tflgraph.to_bytes(model), calib, "float", held_out=held)


def test_float_io_quantizes_and_dequantizes_at_the_edges():
    model = quantize(
        fixture("tfk_lstm_q16"),
        _data("tfk_lstm_q16", "calib"),
        io="float",
        held_out=_data("tfk_lstm_q16", "heldout"),
    )
    assert model.report.ok, model.report.lines()
    sg = model.model.main
    ops = [op.type for op in sg.operators]
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    assert [t.type_name for t in sg.inputs + sg.outputs] == ["FLOAT32", "FLOAT32"]
    assert [t.name for t in sg.outputs] == [
        t.name for t in tflgraph.load(fixture("tfk_lstm_q16")).main.outputs
    ]


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_layers(name, tmp_path, rng):
    """FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, RESHAPE, SOFTMAX: both runtimes
    give the float model's outputs within the bound; weights per channel exactly where some
    channel gains resolution by it (channel_axis)."""
    calib, held = _calibration(tmp_path, tflgraph.load(fixture(name)), rng, n=256)
    result = quantize(fixture(name), calib, held_out=held)
    assert result.report.ok, result.report.lines()
    float_ops = tflgraph.load(fixture(name)).main.operators
    for op, float_op in zip(result.model.main.operators, float_ops):
        if op.type in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
            axis = 3 if op.type == "DEPTHWISE_CONV_2D" else 0
            chosen = channel_axis(float_op.inputs[1].data, axis)
            w = op.inputs[1]
            assert len(w.quantization["scale"]) == (1 if chosen is None else w.shape[axis])


def test_leaky_relu(tmp_path, rng):
    """The converter's LEAKY_RELU (Keras LeakyReLU(0.2) between two Dense layers) runs int8
    in both runtimes within the bound, its slope kept and its output at its own calibrated
    range. (1024 calibration samples: with 256 the held-out tail beyond the first layer's
    calibrated range is clipped, 2.4% of the output range, whatever the activation.)"""
    model = tflgraph.load(fixture("mlp_leaky_relu"))
    calib, held = _calibration(tmp_path, model, rng, n=1024)
    result = quantize(fixture("mlp_leaky_relu"), calib, held_out=held)
    assert result.report.ok, result.report.lines()
    (op,) = result.model.main.ops_of_type("LEAKY_RELU")
    assert op.option("alpha") == pytest.approx(0.2)
    assert op.inputs[0].type_name == op.outputs[0].type_name == "INT8"
    assert scale_zp(op.outputs[0].quantization) != scale_zp(op.inputs[0].quantization)


def test_per_channel_weights_where_a_channel_is_small(tmp_path, rng):
    """One output channel 20x smaller than the others: per-channel scales, and the small
    channel's outputs keep their resolution in both runtimes."""
    w = rng.uniform(-1, 1, (8, 16)).astype(np.float32)
    w[0] *= 0.05
    model = dense_model(w, rng.uniform(-0.1, 0.1, 8).astype(np.float32))
    calib, held = _calibration(tmp_path, model, rng, n=128)
    result = quantize(tflgraph.to_bytes(model), calib, held_out=held)
    assert result.report.ok, result.report.lines()
    (op,) = result.model.main.ops_of_type("FULLY_CONNECTED")
    assert len(op.inputs[1].quantization["scale"]) == 8
    assert len(op.inputs[2].quantization["scale"]) == 8
    uniform = rng.uniform(-1, 1, (8, 16))
    assert channel_axis(w, 0) == 0 and channel_axis(uniform, 0) is None


def test_bias_correction(tmp_path):
    """Inputs around 1 (a ReLU layer's are far from zero too) into rows of weights summing to
    zero: the weights' roundings add up to a shift of each output's mean that is several
    output steps (6-7 LSB, over 2.8% of the range, measured without the correction); the bias
    takes it back: within 4 LSB in both runtimes."""
    rng = np.random.default_rng(2)
    w = rng.uniform(-1, 1, (16, 256))
    model = dense_model(
        (w - w.mean(axis=1, keepdims=True)).astype(np.float32), np.zeros(16, np.float32)
    )
    paths = []
    for name, count in (("calib", 256), ("heldout", 64)):
        paths.append(tmp_path / f"{name}.npz")
        np.savez(paths[-1], x0=rng.uniform(0.9, 1.1, (count, 1, 256)).astype(np.float32))
    result = quantize(tflgraph.to_bytes(model), str(paths[0]), held_out=str(paths[1]))
    assert result.report.ok, result.report.lines()
    out = result.report.outputs[0]
    assert max(out.error.values()) <= 4 * out.lsb


@pytest.mark.parametrize("io", ["int8", "float"])
def test_cell_ops(io, tmp_path, rng):
    """LOGISTIC and TANH at their fixed scales, CONCATENATION's inputs with its output's
    parameters, a float constant operand quantized, slices and reshapes passing parameters
    through: both runtimes give the float outputs within the bound."""
    model = gated_cell_model()
    calib, held = _calibration(tmp_path, model, rng, n=256)
    result = quantize(tflgraph.to_bytes(model), calib, io, held_out=held)
    assert not result.report.skipped and result.report.ok, result.report.lines()
    sg = result.model.main
    for op in sg.ops_of_type("LOGISTIC", "TANH"):
        want = (1 / 256, -128) if op.type == "LOGISTIC" else (1 / 128, 0)
        assert scale_zp(op.outputs[0].quantization) == want
    (cat,) = sg.ops_of_type("CONCATENATION")
    out_q = scale_zp(cat.outputs[0].quantization)
    assert all(scale_zp(t.quantization) == out_q for t in cat.inputs)
    # the ADD computing y writes the concatenation's parameters itself; the LOGISTIC's and
    # TANH's fixed ones are requantized
    assert sg.producer(cat.inputs[0]).type == "ADD"
    assert sum(1 for op in sg.operators if op.type == "QUANTIZE") == 2 + (io == "float")


def _cli_quantize(tmp_path, source, data, *extra):
    out = tmp_path / "out.tflite"
    r = tflgraph_cli("quantize", source, "-o", out, "--calibration", data, *extra)
    return r, out


def test_cli_writes_and_reports(tmp_path):
    base = "tfk_lstm_q16"
    r, out = _cli_quantize(
        tmp_path, fixture(base), _data(base, "calib"), "--held-out", _data(base, "heldout")
    )
    assert r.returncode == 0, r.stderr
    assert "max error litert" in r.stdout and "LiteRT-TFLM" in r.stdout
    assert out.exists() and tflgraph.load(out).main.inputs[0].type_name == "INT8"
    assert "larger than the float" not in r.stdout  # 0.6x the float file


def test_cli_says_when_int8_is_larger(tmp_path, rng):
    """A 2-input, 20-unit dense layer (the size of published 3-op MLPs): its int8 file is
    larger than the float one (quantization parameters outweigh the weight bytes saved), and
    the command says so."""
    model = dense_model(rng.uniform(-1, 1, (20, 2)).astype(np.float32), np.zeros(20, np.float32))
    source = tmp_path / "tiny.tflite"
    source.write_bytes(tflgraph.to_bytes(model))
    calib, _ = _calibration(tmp_path, model, rng, n=64, held=0)
    r, out = _cli_quantize(tmp_path, source, calib)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > source.stat().st_size
    assert "note: the int8 file is larger than the float one" in r.stdout


def test_cli_says_what_each_loop_got(tmp_path, rng):
    """The summary names each loop, what its body computes in and the measurement behind it;
    --loops int8 keeps all-int8 bodies and says nothing of a choice."""
    model, _ = run("k3_simplernn", resolve("default"))
    source = tmp_path / "rnn.tflite"
    tflgraph.save(model, source)
    calib, _ = _calibration(tmp_path, model, rng, n=256, held=0)
    r, out = _cli_quantize(tmp_path, source, calib)
    assert r.returncode == 0, r.stderr
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("loop ")]
    assert line.startswith("loop 'functional_1/simple_rnn_1/while_body': int16 bodies (all-int8")
    assert "LSB (bound 1)" in line
    (loop,) = tflgraph.load(out).main.ops_of_type("WHILE")
    assert _body_kind(loop) == "int16"
    r, out = _cli_quantize(tmp_path, source, calib, "--loops", "int8", "--tolerance", "0.05")
    assert r.returncode == 0, r.stderr
    assert not any(x.startswith("loop ") for x in r.stdout.splitlines())
    (loop,) = tflgraph.load(out).main.ops_of_type("WHILE")
    assert _body_kind(loop) == "int8"


def test_optimize_then_quantize(tmp_path, rng):
    """`optimize --quantize`: the Keras 3 LSTM loop is fused, verified, then quantized: one
    int8 fused LSTM, int8 input and output, checked in both runtimes."""
    source = tflgraph.load(fixture("k3_lstm"))
    calib, _ = _calibration(tmp_path, source, rng, n=300, held=0)
    out = tmp_path / "out.tflite"
    r = tflgraph_cli("optimize", fixture("k3_lstm"), "-o", out, "--quantize", calib)
    assert r.returncode == 0, r.stderr
    assert "LiteRT-TFLM" in r.stdout
    model = tflgraph.load(out)
    (op,) = model.main.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
    assert op.inputs[1].type_name == "INT8" and op.inputs[19].type_name == "INT16"
    assert [t.type_name for t in model.main.inputs + model.main.outputs] == ["INT8", "INT8"]


def _bad(tmp_path, **arrays) -> str:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


GOOD = np.zeros((8, 1, 10, 8), np.float32)
NAN = GOOD.copy()
NAN[3, 0, 2, 1] = np.nan


@pytest.mark.parametrize(
    "arrays,says",
    [
        ({"y": GOOD}, "no data for input"),
        ({"x": GOOD, "z": GOOD}, "no model input is called 'z'"),
        ({"x": np.zeros((8, 1, 10, 7), np.float32)}, "has shape"),
        ({"x": GOOD.astype(np.int32)}, "is int32"),
        ({"x": NAN}, "NaN"),
        ({"x": GOOD[:3]}, "at least"),
    ],
)
def test_bad_calibration_data_is_one_line(tmp_path, arrays, says):
    r, out = _cli_quantize(tmp_path, fixture("tfk_lstm_q16"), _bad(tmp_path, **arrays))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tflgraph: error: calibration data:"), lines
    assert says in lines[0]
    assert not out.exists()


def test_refuses_what_it_cannot_quantize(tmp_path):
    """An op without an int8 form here (SQRT) is refused with its name, nothing written."""
    model, _ = single_op("SQRT", [np.ones((1, 10, 8), np.float32)])
    source = tmp_path / "sqrt.tflite"
    tflgraph.save(model, source)
    r, out = _cli_quantize(tmp_path, source, _bad(tmp_path, x=GOOD + 1))
    assert r.returncode == 2
    assert r.stderr.strip() == "tflgraph: error: cannot quantize: SQRT has no int8 form here"
    assert not out.exists()


@pytest.mark.parametrize(
    "name,says",
    [
        ("k3_lstm_dynrange", "int8 weights and float activations"),
        ("multi_sig", "several entry subgraphs"),
    ],
)
def test_refuses_hybrid_and_multi_signature_models(tmp_path, name, says):
    r, out = _cli_quantize(tmp_path, fixture(name), _bad(tmp_path, x=GOOD))
    assert r.returncode == 2 and says in r.stderr and not out.exists()


def test_a_failed_check_writes_nothing(tmp_path):
    base = "tfk_lstm_q16"
    r, out = _cli_quantize(tmp_path, fixture(base), _data(base, "calib"), "--tolerance", "1e-6")
    assert r.returncode == 1
    assert "failed its check" in r.stderr and not out.exists()


def _int8_fc(w: np.ndarray, b: np.ndarray, x_q: tuple, w_scale: float, out_q: tuple):
    """A model of one int8 FULLY_CONNECTED (per-tensor weights, int32 bias at s_x * s_w)."""
    model = tflgraph.Model()
    sg = model.add_subgraph("main")
    x = sg.new_tensor("x", (1, w.shape[1]), "int8", quantization=qparams(*x_q))
    y = sg.new_tensor("y", (1, w.shape[0]), "int8", quantization=qparams(*out_q))
    weights = sg.new_constant(w, "w", qparams(w_scale, 0))
    bias = sg.new_constant(b, "b", qparams(np.float32(x_q[0]) * np.float32(w_scale), 0))
    sg.add_op("FULLY_CONNECTED", [x, weights, bias], [y], {})
    sg.inputs, sg.outputs = [x], [y]
    return tflgraph.to_bytes(model)


def _shift_right(h: np.ndarray, e: int, half_up: bool) -> np.ndarray:
    """h / 2^e rounded to nearest, ties half up or (gemmlowp's RoundingDivideByPOT) away from
    zero."""
    if half_up:
        return (h + (1 << (e - 1))) >> e
    mask = (1 << e) - 1
    return (h >> e) + ((h & mask) > (mask >> 1) + (h < 0))


def test_int8_fully_connected_rounds_differently_in_each_runtime(rng):
    """Why all-int8 loops drift apart between the runtimes (auto.py): each requantizes the int8
    FULLY_CONNECTED's accumulator in its own way, measured bit-exactly here on the parameters
    of a SimpleRNN body: TFLM rounds the high multiply, then the shift half away from zero;
    LiteRT's builtin kernels the same but the shift half up; XNNPACK multiplies in float32 and
    rounds half to even. They differ by 1 LSB exactly on the ties (0.1-0.2% of values)."""
    w = rng.integers(-127, 128, (16, 16)).astype(np.int8)
    b = rng.integers(-3000, 3000, 16).astype(np.int32)
    x_q, w_scale, out_q = (1 / 128, 0), 0.0039241225, (0.020994194, 2)
    data = _int8_fc(w, b, x_q, w_scale, out_q)
    xs = rng.integers(-128, 128, (3000, 1, 16)).astype(np.int8)
    acc = xs[:, 0].astype(np.int64) @ w.T.astype(np.int64) + b
    real = float(np.float32(x_q[0])) * float(np.float32(w_scale)) / float(np.float32(out_q[0]))
    frac, shift = np.frexp(real)
    q, e = int(round(frac * 2**31)), -int(shift)  # the multiplier, the final right shift
    product = acc * q
    high = np.where(product >= 0, product + (1 << 30), product + 1 - (1 << 30))
    high = np.where(high >= 0, high >> 31, -((-high) >> 31))  # rounding doubling high multiply
    want = {
        ("tflm", "default"): _shift_right(high, e, half_up=False),
        ("litert", "builtin"): _shift_right(high, e, half_up=True),
        ("litert", "default"): np.rint(acc.astype(np.float32) * np.float32(q * 2.0 ** -(31 + e))),
    }
    for (rt, kernels), y in want.items():
        got = np.stack(runtimes.run(data, list(xs[:, None]), rt, kernels=kernels))
        assert np.array_equal(got[:, 0, 0], np.clip(y + out_q[1], -128, 127)), (rt, kernels)
    ties = np.count_nonzero(want[("tflm", "default")] != want[("litert", "builtin")])
    assert 0 < ties < 0.005 * acc.size


def test_the_check_falls_back_to_litert_builtin_kernels(monkeypatch):
    """LiteRT's XNNPACK delegate cannot prepare some int8 WHILE bodies (a published relu LSTM:
    "failed to create XNNPACK runtime"): the check then runs LiteRT's builtin kernels, as
    verify does, and says so; only when those fail too is LiteRT a failed runtime."""
    from tflgraph.quant import check as check_module

    base = "tfk_lstm_q16"
    float_model = tflgraph.load(fixture(base))
    tests = load_inputs(_data(base, "heldout"), ports(float_model, "inputs"))
    real = check_module.run_isolated
    calls = []

    def xnnpack_refuses(data, feeds, rt, *args, kernels="default", **kw):
        calls.append((rt, kernels))
        if rt == "litert" and kernels == "default":
            raise runtimes.RuntimeUnavailable(
                "litert cannot load the model: failed to create XNNPACK runtime"
            )
        return real(data, feeds, rt, *args, kernels=kernels, **kw)

    monkeypatch.setattr(check_module, "run_isolated", xnnpack_refuses)
    report = check(float_model, tflgraph.load(fixture(base + "_int8")), tests)
    assert ("litert", "builtin") in calls and report.ok, report.lines()
    assert any("checked on its builtin kernels" in line for line in report.lines())

    def everything_refuses(data, feeds, rt, *args, kernels="default", **kw):
        if rt == "litert":
            raise runtimes.RuntimeUnavailable("litert cannot load the model")
        return real(data, feeds, rt, *args, kernels=kernels, **kw)

    monkeypatch.setattr(check_module, "run_isolated", everything_refuses)
    report = check(float_model, tflgraph.load(fixture(base + "_int8")), tests)
    assert "litert" in report.skipped and not report.ok
