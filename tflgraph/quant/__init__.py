"""Post-training full-integer (int8) quantization of float models: `tflgraph quantize`.

quantize.py is the command as a function. calibration.py reads the representative samples and
records the range of every float value the model computes on them (inside fused LSTMs and WHILE
bodies too); params.py turns ranges and weights into int8/int16/int32 tensors with their
QuantizationParameters; emit.py rewrites each op into the integer form both LiteRT and TFLM
accept (lstm.py: the fused LSTM's int8x8_16 form; loops.py: WHILE loops with int8 or int16
bodies; edges.py: the model's inputs and outputs) and refuses ops it does not know; check.py runs
the result in LiteRT and TFLM against the float model on held-out inputs and reports the error
per output; auto.py chooses per loop between int8 and int16 bodies by such a check.
"""
