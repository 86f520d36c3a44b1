"""Ask TFLM itself whether it runs a model: `inspect --target tflm`.

The op table (targets.py) and the shape rules only predict; this module runs tflite-micro in
forked child processes (`runtimes.call_isolated`), so that a hang or a crash is a verdict
rather than the caller's end:

1. allocate in a generous arena. When that fails, TFLM's log names the op, and the node is
   located in the model: "Didn't find op for builtin opcode 'X'" / "Failed to get registration
   from op code X" (TFLM resolves ops subgraph by subgraph, in file order: the first op of that
   type), "Node X (number N) failed to prepare" (op N of a subgraph whose op N is an X; TFLM
   does not say which subgraph), "Op#N (X) of subgraph S ..." (exact);
2. bisect the smallest arena that allocates (what to pass as the arena size to the Python
   interpreter; a C++ application needs about `allocations["total"]`, the recording
   allocator's count, plus its own interpreter's bookkeeping) and read `print_allocations`;
3. invoke once in that arena on seeded random inputs, within `timeout` seconds (TFLM never
   finishes some WHILE loops whose shapes change while they run), and compare the outputs with
   LiteRT's, or with the reference interpreter's where LiteRT cannot run the model: floats
   within the equivalence checker's bound, quantized integers within one step (the two
   runtimes round differently), everything else exactly.

Verdicts: "runs", "cannot allocate", "cannot invoke" (error, crash or timeout), "differs"
(runs with other outputs), "not installed".
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.ir import Model
from tflgraph.reference.equivalence import compare, max_error
from tflgraph.reference.interpreter import evaluate_tensors
from tflgraph.runtime import runtimes
from tflgraph.runtime.runtimes import RuntimeUnavailable, call_isolated, captured_output
from tflgraph.runtime.verify import ports

TIMEOUT = 10.0  # seconds for one invoke (the models we meet take milliseconds)


@dataclass
class TflmReport:
    verdict: str  # runs | cannot allocate | cannot invoke | differs | not installed
    message: str = ""  # TFLM's words, or how the outputs differ
    nodes: list[dict] = field(default_factory=list)  # where it failed: subgraph, index, op
    arena_bytes: int | None = None  # the smallest arena that allocates
    allocations: dict[str, int] = field(default_factory=dict)  # print_allocations, bytes
    compared_with: str = ""  # "LiteRT", "the reference interpreter" or "" (not compared)

    @property
    def runs(self) -> bool:
        return self.verdict == "runs"

    def to_dict(self) -> dict:
        return dict(asdict(self), runs=self.runs)

    def lines(self) -> list[str]:
        """The verdict, where and why it failed; then the arena, when TFLM allocated it."""
        where = " or ".join(
            f"node {n['index']} ({n['op']}) of subgraph {n['subgraph']}" for n in self.nodes
        )
        at = f"{where}: " if where else ""
        verdict = {
            "not installed": f"TFLM not asked: {self.message}",
            "cannot allocate": f"TFLM cannot allocate it: {at}{self.message}",
            "cannot invoke": f"TFLM allocates it but cannot invoke it: {at}{self.message}",
            "differs": f"TFLM runs it, but its outputs differ from {self.compared_with}'s: "
            f"{self.message}",
            "runs": "TFLM runs it: one invoke, "
            + (
                f"outputs equal {self.compared_with}'s"
                if self.compared_with
                else f"outputs not compared ({self.message})"
            ),
        }[self.verdict]
        if self.arena_bytes is None:
            return [verdict]
        parts = ", ".join(f"{k} {v:,}" for k, v in self.allocations.items() if k != "total")
        used = self.allocations.get("total")
        recorded = f" (recorded use {used:,} bytes: {parts})" if used is not None else ""
        return [verdict, f"TFLM arena: allocates in {self.arena_bytes:,} bytes{recorded}"]


def check(model: Model, data: bytes, timeout: float = TIMEOUT, arena: bool = True) -> TflmReport:
    """What TFLM does with the model (see the module docstring); arena=False skips the
    search for the smallest arena (the invoke then gets a generous one)."""
    if not runtimes.available("tflm"):
        return TflmReport("not installed", "tflite-micro is not installed")
    try:
        alloc = call_isolated(_allocate, (data,), "tflm", timeout=max(timeout, 60.0))
    except RuntimeUnavailable as e:  # a crash while allocating
        return TflmReport("cannot allocate", _strip(str(e)))
    said = alloc["log"]
    if not alloc["ok"]:
        return TflmReport("cannot allocate", tflm_message(said), failing_nodes(model, said))
    allocations = parse_allocations(said)
    size = smallest_arena(data, allocations.get("total", 0)) if arena else None
    report = TflmReport("runs", arena_bytes=size, allocations=allocations)
    outs = ports(model, "outputs")
    rng = np.random.default_rng(0)
    feed = runtimes.random_inputs([p.detail() for p in ports(model, "inputs")], rng)
    try:
        got = call_isolated(_invoke, (data, size, feed), "tflm", timeout)
    except RuntimeUnavailable as e:
        report.verdict, report.message = "cannot invoke", _strip(str(e))
        report.nodes = failing_nodes(model, [report.message])
        return report
    expected, report.compared_with, why = _expected(model, data, feed)
    if expected is None:
        report.message = why
        return report
    for port, ref, out in zip(outs, expected, got):
        why = _differs(ref, out, port.name, quantized=bool(port.scale))
        if why:
            report.verdict, report.message = "differs", why
            break
    return report


def _strip(text: str) -> str:
    return text.removeprefix("tflm ").removeprefix("tflm: ")


def _expected(model: Model, data: bytes, feed) -> tuple[list | None, str, str]:
    """(outputs, who computed them, why none): LiteRT's, else the reference interpreter's."""
    reasons = []
    if runtimes.available("litert"):
        try:
            # LiteRT's builtin kernels, which TFLM's are ported from: its default delegate's
            # int8 results differ from both by many quantization steps
            outs = runtimes.run_isolated(
                data, [feed], "litert", modes=("reset",), kernels="builtin"
            )
            return outs["reset"][0], "LiteRT", ""
        except RuntimeUnavailable as e:
            reasons.append(str(e))
    else:
        reasons.append("ai-edge-litert is not installed")
    sg = model.main
    try:
        outs = evaluate_tensors(sg, dict(zip(sg.inputs, feed)), list(sg.outputs), {})
        return [np.asarray(x) for x in outs], "the reference interpreter", ""
    except (TflgraphError, ValueError, TypeError, IndexError) as e:
        reasons.append(f"the reference interpreter: {e}")
    return None, "", "; ".join(reasons)


def _differs(ref: np.ndarray, out: np.ndarray, name: str, quantized: bool) -> str | None:
    """The equivalence checker's verdict; quantized integers may differ by one step."""
    if quantized and ref.shape == out.shape and ref.dtype.kind in "iu":
        err = max_error(ref, out)
        return None if err <= 1 else f"{name!r}: max error {err:g} quantization steps > 1"
    return compare(ref, out, what=repr(name))


# --------------------------------------------------------------------------- the child side


def _allocate(data: bytes) -> dict:
    """In the child: allocate in a generous arena; TFLM's log, and its allocation report
    when it allocated."""
    with captured_output() as said:
        ok = allocates(data, runtimes.arena_for(data), report=True)
    return {"ok": ok, "log": said}


def allocates(data: bytes, arena: int, report: bool = False) -> bool:
    from tflite_micro.python.tflite_micro import runtime as tflm

    try:
        it = tflm.Interpreter.from_bytes(bytes(data), arena_size=arena)
    except Exception:  # TFLM raises RuntimeError("TFLM failed to allocate tensors")
        return False
    if report:
        it.print_allocations()
    return True


def smallest_arena(data: bytes, used: int) -> int:
    """Bisect the smallest arena that allocates, from the recorded use upwards. Each try runs
    in a child of its own: some kernels crash instead of failing in an arena too small."""

    def fits(n: int) -> bool:
        try:
            return call_isolated(allocates, (data, n), "tflm", 60.0)
        except RuntimeUnavailable:
            return False

    lo, hi, most = 0, max(used, 16), runtimes.arena_for(data)  # lo fails, most allocates
    while hi < most and not fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, most)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def _invoke(data: bytes, arena: int | None, feed: list[np.ndarray]) -> list[np.ndarray]:
    return runtimes.Session(data, "tflm", arena_size=arena).invoke(feed)


# --------------------------------------------------------------------------- TFLM's words

_TOTAL = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_CATEGORY = re.compile(r"'([^']+)' used (\d+) bytes")


def parse_allocations(lines: list[str]) -> dict[str, int]:
    """`print_allocations` lines -> {"total", "head", "tail", category: bytes used}."""
    out = {}
    for line in lines:
        m = _TOTAL.search(line) or _CATEGORY.search(line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def tflm_message(said: list[str]) -> str:
    """TFLM's reason: its lines but the generic ones that follow a specific one."""
    generic = ("Failed to get registration", "Node ", "INFO:")
    specific = [x for x in said if not x.startswith(generic)]
    return (specific or said or ["TFLM failed to allocate tensors"])[0]


_MISSING = re.compile(r"Didn't find op for builtin opcode '(\w+)'|registration from op code (\w+)")
_NODE = re.compile(r"Node (\S+) \(number (\d+)f?\) failed to (?:prepare|invoke)")
_EXACT = re.compile(r"Op#(\d+) \((\w+)\) of subgraph (\d+)")


def failing_nodes(model: Model, said: list[str]) -> list[dict]:
    """The node(s) TFLM's log points at (several only when TFLM's words fit several)."""
    ops = [list(sg.iter_ops()) for sg in model.subgraphs]

    def node(s: int, i: int) -> dict:
        return {"subgraph": s, "index": i, "op": ops[s][i].type}

    for line in said:
        if m := _EXACT.search(line):
            s, i = int(m.group(3)), int(m.group(1))
            if s < len(ops) and i < len(ops[s]):
                return [node(s, i)]
        if m := _NODE.search(line):
            i, name = int(m.group(2)), m.group(1)
            found = [
                node(s, i) for s in range(len(ops)) if i < len(ops[s]) and _is(ops[s][i], name)
            ]
            if found:
                return found
        if m := _MISSING.search(line):
            name = m.group(1) or m.group(2)
            for s, sg_ops in enumerate(ops):
                for i, op in enumerate(sg_ops):
                    if _is(op, name):
                        return [node(s, i)]
    return []


def _is(op, name: str) -> bool:
    """TFLM names a builtin by its enum name and any custom op as CUSTOM (or its code)."""
    return op.type == name or op.type.startswith("CUSTOM:") and name in ("CUSTOM", op.type[7:])
