"""The quantized model's inputs and outputs.

With `--io int8` they are int8 tensors with their own parameters (an LSTM's int16 cell state
returned as an output is requantized to int8); with `--io float` a QUANTIZE follows each input
and a DEQUANTIZE precedes each output, and the float tensors keep the names and signature
places. Ops that read a fused LSTM's state after it are ordered after it (check_state_order).
"""

from __future__ import annotations

import numpy as np

from tflgraph.io.schema import tensor_type_of
from tflgraph.ir import Subgraph, Tensor
from tflgraph.quant import lstm, params
from tflgraph.quant.calibration import QuantizeError


def check_float_outputs(sg: Subgraph) -> None:
    """--io float cannot return a fused LSTM's state: LiteRT's default XNNPACK delegate takes
    the output's DEQUANTIZE together with the inputs' QUANTIZE and runs it before the LSTM has
    written the state (only the variable orders them, no graph edge): measured zeros on
    k3_lstm_return_state, while TFLM and LiteRT without delegates are right."""
    states = {
        id(op.inputs[k])
        for op in sg.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM")
        for k in (lstm.H, lstm.C)
    }
    for t in sg.outputs:
        if id(t) in states:
            raise QuantizeError(
                f"--io float: output {t.name!r} is a fused LSTM's state, which LiteRT's XNNPACK "
                "delegate would read before the LSTM writes it; use --io int8"
            )


def float_inputs(sg: Subgraph) -> None:
    """Float inputs: a QUANTIZE after each; the float tensors keep their names (and their
    places in the signature)."""
    for t in sg.inputs:
        q = sg.new_tensor(f"{t.name}_int8", t.shape, "int8", quantization=t.quantization)
        for op in sg.consumers(t):
            for k, x in enumerate(op.inputs):
                if x is t:
                    sg.set_input(op, k, q)
        t.type, t.quantization = tensor_type_of(np.float32), None
        sg.add_op("QUANTIZE", [t], [q])


def float_outputs(sg: Subgraph) -> None:
    """Float outputs: a DEQUANTIZE before each, which takes the output's name."""
    for i, t in enumerate(sg.outputs):
        _convert_output(sg, i, "DEQUANTIZE", sg.new_tensor(f"{t.name}_float", t.shape))


def check_state_order(sg: Subgraph) -> None:
    """An op reading a fused LSTM's state variable after the LSTM (a state returned as an
    output) depends on it through the variable alone, which no graph edge shows: the writer
    keeps the ops' order, so the reader must come later. Ops added after everything the LSTM
    reads do (the execution order takes the op added first among those ready); this checks it.
    (LSTMs sharing a state, a seq2seq's encoder and decoder, keep the model's own order.)"""
    position = {op: i for i, op in enumerate(sg.operators)}
    for op in sg.ops_of_type("UNIDIRECTIONAL_SEQUENCE_LSTM"):
        for state in (op.inputs[lstm.H], op.inputs[lstm.C]):
            for reader in sg.consumers(state):
                if reader.type != op.type and position[reader] < position[op]:
                    raise QuantizeError(
                        f"internal: {reader.type} reads {state.name!r} before the LSTM writes it"
                    )


def int8_outputs(sg: Subgraph) -> None:
    """An int16 output (an LSTM's cell state) becomes int8 by a QUANTIZE at 2^(k+8): the same
    range, the last 8 bits dropped."""
    for i, t in enumerate(sg.outputs):
        if t.type_name == "INT16":
            scale, _ = params.scale_zp(t.quantization)
            q = params.qparams(scale * 256, 0)
            _convert_output(
                sg, i, "QUANTIZE", sg.new_tensor(f"{t.name}_int8", t.shape, "int8", quantization=q)
            )


def _convert_output(sg: Subgraph, i: int, op_type: str, new: Tensor) -> None:
    """Output i becomes `new`, computed from the old one by `op_type`; `new` takes its name
    and its place in the signature."""
    old = sg.outputs[i]
    sg.outputs[i] = new
    for sd in sg.model.signature_defs if sg.model is not None else ():
        if sd.subgraph is sg:
            sd.outputs = [(n, new if x is old else x) for n, x in sd.outputs]
    sg.add_op(op_type, [old], [new])
    old.name, new.name = new.name, old.name
