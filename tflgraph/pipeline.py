"""Passes: the base class, the registry, named pipelines and the driver.

Built-in passes live in `tflgraph.passes` (the repository's top-level `passes/` folder), one per
module named after the pass, and are found lazily through BUILTIN_PASSES (derived from the
module names), so importing the core never imports a pass. Plugins register through the
`tflgraph.passes` entry-point group or a file given to `--load`. The driver removes dead code
after every pass, so pass authors never do, and can run `Model.check()` after each pass,
naming the pass that broke the graph.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from tflgraph.errors import TflgraphError
from tflgraph.ir import GraphError, Model, Operator, Subgraph
from tflgraph.runtime.targets import check_target


def _builtin_passes() -> dict[str, str]:
    """Pass name -> module under tflgraph.passes: each module is named after its pass
    (`constant_trip_count.py` registers `constant-trip-count`), so the table is derived."""
    import tflgraph.passes

    return {
        m.name.replace("_", "-"): m.name
        for m in pkgutil.iter_modules(tflgraph.passes.__path__)
        if not m.name.startswith("_")
    }


BUILTIN_PASSES: dict[str, str] = _builtin_passes()

# WHILE loops that stay loops: static shapes for TFLM, then less work per step
LOOP_PASSES = [
    "fuse-simple-rnn",  # --target litert only (TFLM has no UNIDIRECTIONAL_SEQUENCE_RNN)
    "static-loop-outputs",
    "merge-loop-counters",
    "constant-trip-count",
    "last-step-from-state",
    "hoist-input-projection",
    "drop-dead-loop-values",
]

PIPELINES: dict[str, list[str]] = {
    "default": [
        "strip-dead-channels",
        "fuse-lstm",
        *LOOP_PASSES,
        "cleanup",
    ],
    "loops": LOOP_PASSES,
}

_REGISTRY: dict[str, type[Pass]] = {}


class PassError(TflgraphError):
    """A pass is unknown, failed to load, or broke the graph."""


class Pass(ABC):
    """Base class of a rewrite pass: `run(model)` mutates in place, returns True on change."""

    name: str = ""
    summary: str = ""
    # runtime the rewritten model must run on: "tflm", "litert" or "any" (both); set by
    # run_passes. A pass emits an op only if tflgraph.runtime.targets.supports(self.target, op).
    target: str = "any"

    def __init__(self):
        self.explanations: list[str] | None = None  # collected when explaining
        self.stats: dict[str, object] = {}

    @abstractmethod
    def run(self, model: Model) -> bool:
        """Rewrite the model in place; True if anything changed."""

    def explain(self, message: str) -> None:
        """Record why a candidate was not rewritten (shown by `optimize --explain`)."""
        if self.explanations is not None:
            self.explanations.append(message)

    @classmethod
    def describe(cls) -> str:
        doc = (cls.__doc__ or "").strip().splitlines()
        return cls.summary or (doc[0] if doc else "")


def register(name: str):
    """Class decorator: make a Pass subclass available under `name`."""

    def wrap(cls):
        if not (isinstance(cls, type) and issubclass(cls, Pass)):
            raise TypeError("@register expects a subclass of tflgraph.Pass")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def unregister(name: str) -> None:
    """Forget a registered pass (e.g. one a test or a --load file registered)."""
    _REGISTRY.pop(name, None)


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group="tflgraph.passes")}


def get_pass(name: str) -> type[Pass]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in BUILTIN_PASSES:
        importlib.import_module(f"tflgraph.passes.{BUILTIN_PASSES[name]}")
    else:
        ep = _entry_points().get(name)
        if ep is not None:
            try:
                obj = ep.load()
            except Exception as e:  # a broken plugin: one line, not a traceback
                raise PassError(
                    f"plugin pass {name!r} ({ep.value}) failed to load: {type(e).__name__}: {e}"
                ) from None
            if isinstance(obj, type) and issubclass(obj, Pass) and name not in _REGISTRY:
                obj.name = name
                _REGISTRY[name] = obj
    if name not in _REGISTRY:
        known = ", ".join(sorted(set(_REGISTRY) | set(BUILTIN_PASSES) | set(_entry_points())))
        raise PassError(f"unknown pass {name!r} (known: {known})")
    return _REGISTRY[name]


def all_passes() -> dict[str, type[Pass]]:
    for name in list(BUILTIN_PASSES) + list(_entry_points()):
        get_pass(name)
    return dict(sorted(_REGISTRY.items()))


def load_pass_file(path: str) -> list[str]:
    """Import a user's Python file so that its @register calls take effect."""
    if not os.path.isfile(path):
        raise PassError(f"{path}: no such pass file")
    before = set(_REGISTRY)
    mod_name = "tflgraph_user_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise PassError(f"{path}: failed to load ({type(e).__name__}: {e})") from None
    return sorted(set(_REGISTRY) - before)


def resolve(spec_: str | list[str] | None) -> list[str]:
    """'default', 'none', 'a,b' or a list -> a list of pass names (pipelines expanded)."""
    if spec_ is None:
        spec_ = "default"
    names = spec_.split(",") if isinstance(spec_, str) else list(spec_)
    out = []
    for n in (x.strip() for x in names):
        if not n or n == "none":
            continue
        out.extend(PIPELINES.get(n, [n]))
    for n in out:
        get_pass(n)
    return out


# --------------------------------------------------------------------------- dead code

SIDE_EFFECT_OPS = {"ASSIGN_VARIABLE", "CALL_ONCE", "VAR_HANDLE"}


def has_side_effects(op: Operator, _seen=None) -> bool:
    """True if removing the op could change behaviour even when nobody reads its outputs."""
    if op.type in SIDE_EFFECT_OPS or op.type.startswith("CUSTOM:") or not op.outputs:
        return True
    if any(t is not None and t.is_variable for t in op.inputs):
        return True
    seen = _seen if _seen is not None else set()
    for sg in op.subgraphs():
        if sg in seen:
            continue
        seen.add(sg)
        if any(has_side_effects(o, seen) for o in sg.iter_ops()):
            return True
    return False


def remove_dead_code(model: Model) -> int:
    """Remove ops nobody reads (without side effects), unused tensors and unreachable
    subgraphs. Returns the number of ops removed.

    The model remembers the state of every subgraph this left clean (its `edits` count,
    inputs and outputs) and the entry subgraphs: a subgraph still in that state is skipped but
    for its ops that refer to a subgraph that changed (their side effects may have gone). So
    a call after a pass costs what the pass edited."""
    clean = model._clean
    changed = [sg for sg in model.subgraphs if clean.get(sg) != _state(sg)]
    if not changed and clean.get("entry subgraphs") == _entry_subgraphs(model):
        return 0
    removed = 0
    for sg, ops in _callers(model, changed).items():
        removed += _remove_dead_ops(sg, ops)
    for sg in changed:
        removed += _remove_dead_ops(sg, sg.iter_ops())
        sg.remove_unused_tensors()
    model.subgraphs = model.reachable_subgraphs()
    clean.clear()
    clean.update((sg, _state(sg)) for sg in model.subgraphs)
    clean["entry subgraphs"] = _entry_subgraphs(model)
    return removed


def _entry_subgraphs(model: Model) -> tuple:
    return tuple(model.subgraphs[:1]) + tuple(s.subgraph for s in model.signature_defs)


def _state(sg: Subgraph) -> tuple:
    return sg.edits, tuple(sg.inputs), tuple(sg.outputs)


def _callers(model: Model, changed: list[Subgraph]) -> dict[Subgraph, list[Operator]]:
    """The ops of unchanged subgraphs that refer to a changed one, directly or through the
    subgraph of another such op, by subgraph."""
    out: dict[Subgraph, list[Operator]] = {}
    work, seen = list(changed), set(changed)
    while work:
        for op in model.subgraph_users(work.pop()):
            owner = next((s for s in model.subgraphs if op in s), None)
            if owner is None or owner in changed:
                continue
            out.setdefault(owner, []).append(op)
            if owner not in seen:
                seen.add(owner)
                work.append(owner)
    return out


def _remove_dead_ops(sg: Subgraph, ops) -> int:
    """Remove the dead ones among `ops`, then the producers that die with them."""
    removed = 0
    work = list(ops)[::-1]  # any order removes the same ops: no need to sort
    queued = set(work)
    while work:
        op = work.pop()
        queued.discard(op)
        if op not in sg:
            continue
        if any(t is not None and sg.is_used(t) for t in op.outputs) or has_side_effects(op):
            continue
        producers = {sg.producer(t) for t in op.inputs if t is not None}
        sg.remove_op(op)
        removed += 1
        for p in producers:
            if p is not None and p not in queued:
                work.append(p)
                queued.add(p)
    return removed


# --------------------------------------------------------------------------- driver


@dataclass
class PassRecord:
    name: str
    changed: bool
    seconds: float
    iteration: int
    explanations: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def run_passes(
    model: Model,
    names: list[str],
    *,
    check_each: bool = False,
    fixed_point: bool = True,
    max_iterations: int = 8,
    explain: bool = False,
    after_pass: Callable[[str, Model], None] | None = None,
    target: str = "any",
    options: dict[str, dict] | None = None,
) -> list[PassRecord]:
    """Run the passes in order (repeating the list until nothing changes, when fixed_point),
    removing dead code after each (in the subgraphs it changed). With check_each, a broken graph
    raises PassError naming the pass and the ones that ran before it. `target` (tflm, litert,
    any) is given to every pass as `Pass.target`. `options` maps a pass name to settings that
    override class attributes the pass declares, e.g.
    {"fuse-lstm": {"stateful_streaming": True}}."""
    check_target(target)
    records: list[PassRecord] = []
    history: list[str] = []
    for iteration in range(1, max_iterations + 1):
        any_change = False
        for name in names:
            p = get_pass(name)()
            p.target = target
            for key, value in (options or {}).get(name, {}).items():
                if key.startswith("_") or not hasattr(type(p), key):
                    raise PassError(f"pass {name!r} has no option {key!r}")
                setattr(p, key, value)
            if explain:
                p.explanations = []
            start = time.perf_counter()
            changed = bool(p.run(model))
            remove_dead_code(model)
            history.append(name)
            if check_each:
                try:
                    model.check()
                except GraphError as e:
                    before = ", ".join(history[:-1]) or "none"
                    raise PassError(
                        f"pass {name!r} broke the graph: {e} (passes before it: {before})"
                    ) from None
            records.append(
                PassRecord(
                    name,
                    changed,
                    time.perf_counter() - start,
                    iteration,
                    p.explanations or [],
                    p.stats,
                )
            )
            if after_pass is not None:
                after_pass(name, model)
            any_change |= changed
        if not (fixed_point and any_change):
            break
    return records


def optimize(model: Model, passes: str | list[str] | None = "default", **kw) -> list[PassRecord]:
    """Run a pipeline ('default', 'a,b', or a list of names) on the model in place."""
    return run_passes(model, resolve(passes), **kw)
