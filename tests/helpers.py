"""Shared test helpers: fixture paths and the runtime judges (LiteRT, TFLM)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import tflgraph
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


def assert_same_outputs(
    original,
    rewritten,
    runtime_names=("litert", "tflm"),
    samples: int = 5,
    atol: float = 1e-5,
    seed: int = 0,
    exact: bool = False,
) -> None:
    """The rewritten model gives the original's outputs, invoke after invoke, without reset.

    Float outputs: |a - b| <= atol * max(1, max|a|). exact=True demands bit-identical outputs.
    """
    for rt in runtime_names:
        want = outputs_in(original, rt, samples, seed)
        got = outputs_in(rewritten, rt, samples, seed)
        assert len(want) == len(got)
        for k, (w, g) in enumerate(zip(want, got)):
            assert len(w) == len(g), f"{rt}: output count differs"
            for j, (a, b) in enumerate(zip(w, g)):
                assert a.shape == b.shape, f"{rt} invoke {k} output {j}: {a.shape} vs {b.shape}"
                floats = a.dtype.kind in "fc"
                if exact or not floats:
                    assert np.array_equal(a, b, equal_nan=floats), (
                        f"{rt} invoke {k} output {j} differs"
                    )
                else:
                    assert np.array_equal(np.isnan(a), np.isnan(b)), f"{rt}: NaNs differ"
                    tol = atol * max(1.0, float(np.nanmax(np.abs(a))) if a.size else 1.0)
                    err = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
                    assert err <= tol, f"{rt} invoke {k} output {j}: max error {err} > {tol}"


def trust_construction(monkeypatch) -> None:
    """Switch off strip-dead-channels' round check (it refuses rounds it cannot check), so
    that a test judges the slicing itself in LiteRT and TFLM or on the interpreter."""
    from tflgraph.channels.check import RoundCheck

    monkeypatch.setattr(RoundCheck, "__init__", lambda self, *a, **k: None)
    monkeypatch.setattr(RoundCheck, "why", None, raising=False)
    monkeypatch.setattr(RoundCheck, "after", lambda self: None)
