"""CLI edges (issue 16 point 7): output into a pipe that closes early, a second path given
without -o, the verify failure line naming the optimized model."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import fixture, tflgraph_cli

from tflgraph.cli import SIGPIPE_EXIT
from tflgraph.runtime import runtimes

# a pass that moves one weight: verification must refuse the result
PERTURB = """
import numpy as np
from tflgraph import Pass, register

@register("test-perturb-weight")
class PerturbWeight(Pass):
    def run(self, model):
        op = model.main.ops_of_type("FULLY_CONNECTED")[0]
        w = op.inputs[1]
        model.main.set_input(op, 1, model.main.new_constant(w.data + np.float32(0.5)))
        return True
"""


def _commands(tmp_path):
    return {
        "inspect": ["inspect", fixture("k3_gru")],
        "inspect --json": ["inspect", fixture("k3_gru"), "--json"],
        "dot": ["dot", fixture("k3_gru")],
        "passes": ["passes"],
        "verify": ["verify", fixture("mlp"), fixture("mlp"), "--runtime", "litert"],
        "optimize": ["optimize", fixture("mlp"), "-o", tmp_path / "m.tflite", "--no-verify"],
    }


@pytest.mark.parametrize(
    "command", ["inspect", "inspect --json", "dot", "passes", "verify", "optimize"]
)
def test_a_pipe_closed_early_ends_quietly(command, tmp_path):
    """`tflgraph ... | head`: the reader is gone before the command writes (the deterministic
    form of head exiting early): no "internal error", exit 141 as after SIGPIPE."""
    args = _commands(tmp_path)[command]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tflgraph", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(120) == SIGPIPE_EXIT, err
    assert err == ""


def test_optimize_with_two_paths_suggests_dash_o(tmp_path):
    out = tmp_path / "b.tflite"
    proc = tflgraph_cli("optimize", fixture("mlp"), out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"-o {out}" in lines[0], proc.stderr
    assert not out.exists()


def test_verify_failure_names_the_optimized_model(tmp_path):
    plugin = tmp_path / "perturb.py"
    plugin.write_text(PERTURB)
    out = tmp_path / "out.tflite"
    proc = tflgraph_cli(
        "optimize", fixture("mlp"), "-o", out, "--load", plugin, "--passes", "test-perturb-weight"
    )
    if "cannot verify" in proc.stderr or "reference interpreter" in proc.stderr:
        pytest.skip("needs a runtime to verify in")
    assert proc.returncode == 1, proc.stderr
    verdict = next(x for x in proc.stderr.splitlines() if x.startswith("verdict:"))
    assert f"B = <optimized model for {out}>" in verdict and "bytes>" not in verdict


def test_optimize_says_what_was_verified_where(tmp_path):
    """The README's "Try it" model: LiteRT compares the two; TFLM cannot run the original
    WHILE loop, and the summary says so and that TFLM runs the result with LiteRT's outputs."""
    if not (runtimes.available("litert") and runtimes.available("tflm")):
        pytest.skip("needs ai-edge-litert and tflite-micro")
    proc = tflgraph_cli("optimize", fixture("k3_lstm_seq"), "-o", tmp_path / "k3.opt.tflite")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("verified: outputs equal in litert ("), lines[0]
    assert lines[1].startswith("  tflm: not compared: it cannot run the original: WHILE body")
    assert lines[1].endswith(
        "TFLM runs the optimized model and gives LiteRT's outputs (one invoke)"
    )


def test_a_result_tflm_cannot_be_trusted_with_is_not_run_there(tmp_path, monkeypatch, capsys):
    """A result whose loop body keeps dynamic-shape tensors (static-loop-outputs not run) makes
    TFLM hang or return wrong values: optimize says so at once instead of running TFLM on it
    (a published GRU waited 10 s for TFLM's timeout)."""
    from loop_models import keras_lstm_loop

    from tflgraph import cli
    from tflgraph.runtime import tflm_check

    def never(*args, **kwargs):
        raise AssertionError("TFLM was run on a model it cannot be trusted with")

    monkeypatch.setattr(tflm_check, "check", never)
    source, out = tmp_path / "seq.tflite", tmp_path / "out.tflite"
    source.write_bytes(keras_lstm_loop(steps=4, features=3, units=5, sequences=True))
    assert cli.main(["optimize", str(source), "-o", str(out), "--passes", "cleanup"]) == 0
    said = capsys.readouterr().out
    assert "the optimized model: WHILE body 'while_body' has dynamic-shape tensors" in said
