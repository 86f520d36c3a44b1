"""Shared test helpers: fixture paths, the runtime judges (LiteRT, TFLM) and the comparison
of their outputs (the equivalence checker's)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import tflgraph
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


def trust_construction(monkeypatch) -> None:
    """Switch off strip-dead-channels' round check (it refuses rounds it cannot check), so
    that a test judges the slicing itself in LiteRT and TFLM or on the interpreter."""
    from tflgraph.channels.check import RoundCheck

    monkeypatch.setattr(RoundCheck, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(RoundCheck, "why", None, raising=False)
    monkeypatch.setattr(RoundCheck, "after", lambda self: None)
