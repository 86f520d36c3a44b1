"""tflgraph.runtime.runtimes: the isolated worker (timeouts, crashes, reasons), the run modes."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from helpers import fixture

from tflgraph.runtime import runtimes

needs_both = pytest.mark.skipif(
    not (runtimes.available("litert") and runtimes.available("tflm")),
    reason="needs ai-edge-litert and tflite-micro",
)


def test_a_hanging_runtime_times_out(monkeypatch):
    monkeypatch.setattr(runtimes, "run_modes", lambda *a: time.sleep(30))
    start = time.perf_counter()
    with pytest.raises(runtimes.RuntimeUnavailable, match="did not finish within 0.5 s"):
        runtimes.run_isolated(b"", [], "litert", timeout=0.5)
    assert time.perf_counter() - start < 10


def test_a_crashing_runtime_is_reported(monkeypatch):
    monkeypatch.setattr(runtimes, "run_modes", lambda *a: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(runtimes.RuntimeUnavailable, match="crashed"):
        runtimes.run_isolated(b"", [], "litert", timeout=30)


@needs_both
def test_the_reason_includes_what_the_runtime_printed():
    data = fixture("strings").read_bytes()
    with pytest.raises(runtimes.RuntimeUnavailable, match="HASHTABLE"):
        runtimes.run_isolated(data, [], "tflm")


@needs_both
def test_modes_keep_or_reset_variable_state():
    """The fused LSTM keeps h/c across invokes unless reset: the same input twice gives two
    different outputs without reset and the same output with one, in both runtimes."""
    data = fixture("tfk_lstm_fused").read_bytes()
    x = [np.full((1, 10, 8), 0.25, np.float32)]
    for rt in ("litert", "tflm"):
        got = runtimes.run_isolated(data, [x, x], rt)
        assert set(got) == set(runtimes.MODES)
        assert not np.array_equal(got["no-reset"][0][0], got["no-reset"][1][0])
        np.testing.assert_array_equal(got["reset"][0][0], got["reset"][1][0])
        np.testing.assert_array_equal(got["reset"][0][0], got["no-reset"][0][0])
