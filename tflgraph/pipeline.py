"""Passes: the base class, the registry, named pipelines and the driver.

Built-in passes live in `tflgraph.passes` (the repository's top-level `passes/` folder), one per
module named after the pass, and are found lazily through BUILTIN_PASSES (derived from the
module names), so importing the core never imports a pass. Plugins register through the
`tflgraph.passes` entry-point group or a file given to `--load`. The driver removes dead code
after every pass, so pass authors never do, and can run `Model.check()` after each pass,
naming the pass that broke the graph.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import pkgutil
import sys
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from tflgraph.errors import TflgraphError, did_you_mean
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
        "freeze-shapes",
        "densify-weights",  # these six: --target tflm/any only (TFLM lacks the ops)
        "float16-weights",
        "dequantize-hybrid",  # --target tflm only: TFLM has no hybrid kernels
        "reduce-any-for-tflm",
        "gather-bool-for-tflm",
        "select-for-tflm",
        "pow-by-constant",
        "split-bidirectional-lstm",
        "fold-constants",
        "reroll",  # unrolled RNNs -> one loop, which fuse-lstm may fuse
        "lower-tensor-lists",
        "strip-dead-channels",
        "fuse-lstm",
        "chunk-sequence-lstm",
        "lstm-output-from-state",
        *LOOP_PASSES,
        "drop-dead-variables",
        "cleanup",
        "reorder-for-memory",  # last: the order the file keeps
    ],
    "loops": LOOP_PASSES,
}

_REGISTRY: dict[str, type[Pass]] = {}


class PassError(TflgraphError):
    """A pass is unknown, failed to load, or broke the graph."""


_BOOLS = {"true": True, "1": True, "yes": True, "on": True,
          "false": False, "0": False, "no": False, "off": False}  # fmt: skip


class Option:
    """A typed setting of a pass, declared as a class attribute of the Pass subclass:

        class FuseLstm(Pass):
            stateful_streaming = Option(False, "keep LSTM state across invokes")

    `self.stateful_streaming` reads the value (the default unless set). The type is the
    default's (bool, int, float or str). run_passes(options={pass: {field: value}}) and
    `optimize --pass-option PASS.FIELD=VALUE` set it; both go through `convert`. An option
    with `carries_state=True` makes the optimized model keep state across invokes on purpose
    when set, so the CLI then verifies it with a reset between samples."""

    def __init__(self, default, help: str = "", carries_state: bool = False):
        if type(default) not in (bool, int, float, str):
            raise TypeError(f"an Option's default is a bool, int, float or str, not {default!r}")
        self.default, self.type, self.help = default, type(default), help
        self.carries_state = carries_state
        self.name = ""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self  # on the class: the declaration
        return obj.__dict__.get(self.name, self.default)

    def __set__(self, obj, value):
        obj.__dict__[self.name] = self.convert(value)

    def convert(self, value):
        """`value` as the option's type: strings are parsed (bool: true/false, 1/0, yes/no,
        on/off), other values must already have the type (an int is a float too)."""
        if isinstance(value, str) and self.type is not str:
            parsed = self._parse(value)
        elif self.type is float and isinstance(value, int) and not isinstance(value, bool):
            parsed = float(value)
        elif isinstance(value, self.type) and (self.type is bool or not isinstance(value, bool)):
            parsed = value
        else:
            parsed = None
        if parsed is None:
            raise PassError(f"option {self.name}: {value!r} is not {self.type_name()}")
        return parsed

    def _parse(self, text: str):
        if self.type is bool:
            return _BOOLS.get(text.strip().lower())
        try:
            return self.type(text)
        except ValueError:
            return None

    def type_name(self) -> str:
        """How `tflgraph passes` and the errors name the type."""
        return {
            bool: "a bool (true/false)",
            int: "an int",
            float: "a float",
            str: "a string",
        }[self.type]

    def default_text(self) -> str:
        """The default as it is written on the command line (bools: true/false)."""
        return str(self.default).lower() if self.type is bool else repr(self.default)

    def describe(self) -> str:
        """`name: type = default  help`, one line."""
        line = f"{self.name}: {self.type.__name__} = {self.default_text()}"
        return f"{line}  {self.help}" if self.help else line


class Pass(ABC):
    """Base class of a rewrite pass: `run(model)` mutates in place, returns True on change.
    Settings are `Option` class attributes (see Option)."""

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

    @classmethod
    def options(cls) -> dict[str, Option]:
        """The pass's options by name, base classes' first."""
        found: dict[str, Option] = {}
        for klass in reversed(cls.__mro__):
            found.update((k, v) for k, v in vars(klass).items() if isinstance(v, Option))
        return found

    def set_options(self, values: dict) -> None:
        """Set options by name (values converted by Option.convert); an unknown name raises
        PassError listing the pass's options."""
        declared = self.options()
        for key, value in values.items():
            if key not in declared:
                raise PassError(
                    f"pass {self.name!r} has no option {key!r}{did_you_mean(key, declared)}; "
                    f"{_options_text(declared)}"
                )
            try:
                setattr(self, key, value)
            except PassError as e:
                raise PassError(f"pass {self.name!r}: {e}") from None


def _options_text(declared: dict[str, Option]) -> str:
    if not declared:
        return "it has no options"
    return "its options: " + "; ".join(
        f"{o.name} ({o.type_name()}, default {o.default_text()})" for o in declared.values()
    )


def register(name: str, override: bool = False):
    """Class decorator: make a Pass subclass available under `name`. A name that a built-in
    pass (imported or not) or another registered pass already has is refused unless
    `override=True`; the same class registered again (a file loaded twice) replaces itself."""

    def wrap(cls):
        if not _is_pass(cls):
            raise TypeError("@register expects a subclass of tflgraph.Pass")
        taken = _taken_by(name, cls)
        if taken == "an override":  # a built-in imported after a user replaced it
            return cls
        if taken and not override:
            raise PassError(
                f"pass name {name!r} is taken by {taken}; pick another name, or "
                f"register({name!r}, override=True) to replace it"
            )
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _is_pass(obj) -> bool:
    return isinstance(obj, type) and issubclass(obj, Pass)


def _taken_by(name: str, cls: type) -> str | None:
    """What already owns `name`, if it is not `cls` itself: None, 'an override' (when `cls`
    is the built-in that a registered pass replaced), or a description of the owner."""
    existing = _REGISTRY.get(name)
    if existing is not None and (existing.__module__, existing.__qualname__) == (
        cls.__module__,
        cls.__qualname__,
    ):
        return None  # the same definition run again
    builtin = f"tflgraph.passes.{BUILTIN_PASSES[name]}" if name in BUILTIN_PASSES else None
    if cls.__module__ == builtin:
        return "an override" if existing is not None else None
    if existing is not None and existing.__module__ != builtin:
        return f"the pass {existing.__qualname__} from {existing.__module__}"
    return f"the built-in pass in {builtin}" if builtin else None


def unregister(name: str) -> None:
    """Forget a registered pass (e.g. one a test or a --load file registered); a built-in of
    that name (one it overrode) is found again by the next get_pass."""
    _REGISTRY.pop(name, None)


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group="tflgraph.passes")}


def get_pass(name: str) -> type[Pass]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in BUILTIN_PASSES:
        module = importlib.import_module(f"tflgraph.passes.{BUILTIN_PASSES[name]}")
        for obj in vars(module).values():  # imported before, then unregistered: again
            if _is_pass(obj) and obj.__module__ == module.__name__ and obj.name == name:
                _REGISTRY[name] = obj
    else:
        ep = _entry_points().get(name)
        if ep is not None:
            try:
                obj = ep.load()
            except Exception as e:  # a broken plugin: one line, not a traceback
                raise PassError(
                    f"plugin pass {name!r} ({ep.value}) failed to load: {type(e).__name__}: {e}"
                ) from None
            if _is_pass(obj) and name not in _REGISTRY:
                obj.name = name
                _REGISTRY[name] = obj
    if name not in _REGISTRY:
        known = sorted(set(_REGISTRY) | set(BUILTIN_PASSES) | set(_entry_points()))
        raise PassError(
            f"unknown pass {name!r}{did_you_mean(name, [*known, *PIPELINES])}; passes: "
            f"{', '.join(known)}; pipelines: {', '.join(PIPELINES)}; a pass of your own: "
            "--load FILE.py"
        )
    return _REGISTRY[name]


def all_passes() -> dict[str, type[Pass]]:
    for name in list(BUILTIN_PASSES) + list(_entry_points()):
        get_pass(name)
    return dict(sorted(_REGISTRY.items()))


def load_pass_file(path: str) -> list[str]:
    """Import a user's Python file so that its @register calls take effect. Its folder goes
    on sys.path, so it can import the modules next to it."""
    if not os.path.isfile(path):
        raise PassError(f"{path}: no such pass file")
    before = set(_REGISTRY)
    real = os.path.realpath(path)
    folder = os.path.dirname(real)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    # one module name per file: two files with one name are two modules, not one re-run
    digest = hashlib.sha1(real.encode()).hexdigest()[:8]
    mod_name = f"tflgraph_user_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # name the line of the file that raised
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
        where = f"{path}:{lines[-1]}" if lines else path
        raise PassError(f"{where}: failed to load ({type(e).__name__}: {e})") from None
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


def parse_pass_options(specs: list[str]) -> dict[str, dict]:
    """`--pass-option` values, each `PASS.FIELD=VALUE`, -> {pass: {field: converted value}};
    an unknown pass, an unknown field or a value of the wrong type raises PassError."""
    out: dict[str, dict] = {}
    for text in specs:
        key, eq, value = text.partition("=")
        name, dot, field_ = key.strip().rpartition(".")
        if not (eq and dot and name and field_):
            raise PassError(f"--pass-option {text!r}: want PASS.FIELD=VALUE")
        p = get_pass(name)()
        p.set_options({field_: value})
        out.setdefault(name, {})[field_] = getattr(p, field_)
    return out


def state_option_passes(options: dict[str, dict]) -> list[str]:
    """The passes one of whose options, as set, changes on purpose what the model keeps across
    invokes (fuse-lstm's stateful_streaming and reset_states, ...)."""
    declared = {name: get_pass(name).options() for name in options}
    return [
        name
        for name, fields in options.items()
        if any(value and declared[name][key].carries_state for key, value in fields.items())
    ]


def carries_state(options: dict[str, dict]) -> bool:
    """True if one of these pass options changes what the model keeps across invokes."""
    return bool(state_option_passes(options))


def describe_options(cls: type[Pass]) -> list[str]:
    """One line per option of a pass (`tflgraph passes`, docs/passes.md)."""
    return [o.describe() for o in cls.options().values()]


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
    removing dead code after each (in the subgraphs it changed). With check_each, a broken
    graph raises PassError naming the pass and the ones that ran before it. `target` (tflm,
    litert, any) is given to every pass as `Pass.target`. `options` maps a pass name to
    values of the Options the pass declares, e.g. {"fuse-lstm": {"stateful_streaming": True}};
    they are checked (names, types) before any pass runs. `names` may hold pipeline names
    ("default"), expanded as `resolve` does."""
    check_target(target)
    names = resolve(names)
    options = options or {}
    for name in options:
        if name not in names:
            raise PassError(
                f"options for pass {name!r}, which is not in the pipeline "
                f"({', '.join(dict.fromkeys(names)) or 'no passes'})"
            )
        get_pass(name)().set_options(options[name])
    records: list[PassRecord] = []
    history: list[str] = []
    for iteration in range(1, max_iterations + 1):
        any_change = False
        for name in names:
            p = get_pass(name)()
            p.target = target
            p.set_options(options.get(name, {}))
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
