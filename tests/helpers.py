"""Shared test helpers: fixture paths, running the CLI and passes, the runtime judges (LiteRT,
TFLM) and the comparison of their outputs (the equivalence checker's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

import tflgraph
from tflgraph.ir import Model
from tflgraph.pipeline import run_passes, unregister
from tflgraph.reference.equivalence import RTOL, compare
from tflgraph.runtime import runtimes

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


def fixture(name: str) -> Path:
    """Path of a committed fixture, e.g. fixture('k3_lstm')."""
    path = FIXTURES / (name if name.endswith(".tflite") else name + ".tflite")
    assert path.exists(), f"missing fixture {path.name}: regenerate with fixtures/generate.py"
    return path


def all_fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*.tflite"))


def manifest() -> dict:
    data = json.loads((FIXTURES / "manifest.json").read_text())
    return {f["name"]: f for f in data["fixtures"]}


def tflgraph_cli(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    """`python -m tflgraph ARGS` in a child process (extra `env` entries on top of ours)."""
    run_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "tflgraph", *map(str, args)],
        capture_output=True,
        text=True,
        env=run_env,
        cwd=cwd,
        timeout=120,
    )


def run(name_or_model, passes=("static-loop-outputs",), target="any"):
    """Load a fixture (or take a Model), run the passes with checks; (model, records)."""
    model = name_or_model
    if not isinstance(model, Model):
        model = tflgraph.load(fixture(name_or_model))
    records = run_passes(model, list(passes), check_each=True, explain=True, target=target)
    return model, records


def changed(records, name) -> bool:
    """Whether the pass `name` changed the model in a run's records."""
    return any(r.changed for r in records if r.name == name)


def assert_second_run_changes_nothing(name: str, passes, target: str = "any") -> None:
    """Running the passes again on their own output changes nothing, byte for byte."""
    model, _ = run(name, passes, target)
    before = tflgraph.to_bytes(model)
    _, records = run(model, passes, target)
    assert not any(r.changed for r in records)
    assert tflgraph.to_bytes(model) == before


@contextmanager
def registered_rules(rules: dict):
    """Register {pass name: (pattern, rewrite)} as rule passes inside the block, and forget
    them after it, so that no test leaves a pass in the global registry."""
    try:
        for name, (pattern, rewrite) in rules.items():
            tflgraph.rule(name, pattern)(rewrite)
        yield
    finally:
        for name in rules:
            unregister(name)


def as_bytes(model) -> bytes:
    if isinstance(model, tflgraph.Model):
        return tflgraph.to_bytes(model)
    if isinstance(model, (str, Path)):
        return Path(model).read_bytes()
    return bytes(model)


def outputs_in(model, runtime: str, samples: int = 5, seed: int = 0, reset: bool = False):
    """Outputs of `samples` seeded random inputs invoked in sequence in one interpreter."""
    data = as_bytes(model)
    session = runtimes.Session(data, runtime)
    rng = np.random.default_rng(seed)
    feeds = [runtimes.random_inputs(session.inputs, rng) for _ in range(samples)]
    mode = "reset" if reset else "no-reset"
    # in a child process: TFLM hangs on some dynamic-shape loops; that must fail, not hang
    return runtimes.run_isolated(data, feeds, runtime, timeout=60, modes=(mode,))[mode]


def assert_equal_values(a, b, rtol: float = RTOL, where: str = "values") -> None:
    """`b` equals the reference `a` by the equivalence checker's bound (tflgraph.reference.
    equivalence: |a - b| <= rtol * max(1, max finite |a|), integers exact, NaN meets NaN)."""
    why = compare(a, b, rtol, what=where)
    assert why is None, why


def assert_same_outputs(
    original,
    rewritten,
    runtime_names=("litert", "tflm"),
    samples: int = 5,
    rtol: float = RTOL,
    seed: int = 0,
    exact: bool = False,
) -> None:
    """The rewritten model gives the original's outputs, invoke after invoke, without reset,
    within the equivalence checker's bound. exact=True demands identical outputs."""
    for rt in runtime_names:
        want = outputs_in(original, rt, samples, seed)
        got = outputs_in(rewritten, rt, samples, seed)
        assert len(want) == len(got)
        for k, (w, g) in enumerate(zip(want, got)):
            assert len(w) == len(g), f"{rt}: output count differs"
            for j, (a, b) in enumerate(zip(w, g)):
                assert_equal_values(a, b, 0.0 if exact else rtol, f"{rt} invoke {k} output {j}")


def assert_gives_litert_reference(
    original, rewritten, runtime_names=("litert", "tflm"), samples: int = 5
) -> None:
    """The rewritten model gives the ORIGINAL's LiteRT outputs in each runtime, invoke after
    invoke (for inputs whose own TFLM outputs are wrong, e.g. dynamic-shape accumulators)."""
    want = outputs_in(original, "litert", samples)
    for rt in runtime_names:
        got = outputs_in(rewritten, rt, samples)
        for k, (w, g) in enumerate(zip(want, got)):
            for j, (a, b) in enumerate(zip(w, g)):
                assert_equal_values(a, b, where=f"{rt} invoke {k} output {j}")


def tf_reference(name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The seeded inputs and TensorFlow's own outputs for them, stored in the manifest with
    a fixture generated with store_reference=True (float32)."""
    stored = manifest()[name]["reference"]
    as_arrays = lambda values: [np.asarray(v, np.float32) for v in values]  # noqa: E731
    return as_arrays(stored["inputs"].values()), as_arrays(stored["outputs"])


def assert_gives_tf_reference(
    model, name: str, runtime_names=("litert", "tflm"), invokes: int = 3
) -> None:
    """The model gives the TensorFlow outputs stored with fixture `name` in each runtime,
    invoke after invoke without reset, within the equivalence checker's bound (1e-5)."""
    data = as_bytes(model)
    inputs, want = tf_reference(name)
    for rt in runtime_names:
        runs = runtimes.run_isolated(data, [inputs] * invokes, rt, timeout=60, modes=("no-reset",))
        for k, got in enumerate(runs["no-reset"]):
            assert len(got) == len(want), f"{rt}: output count differs"
            for j, (a, b) in enumerate(zip(want, got)):
                assert_equal_values(a, b, where=f"{rt} invoke {k} output {j}")


def trust_construction(monkeypatch) -> None:
    """Switch off strip-dead-channels' round check (it refuses rounds it cannot check), so
    that a test judges the slicing itself in LiteRT and TFLM or on the interpreter."""
    from tflgraph.channels.check import RoundCheck

    monkeypatch.setattr(RoundCheck, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(RoundCheck, "why", None, raising=False)
    monkeypatch.setattr(RoundCheck, "after", lambda self: None)
