"""Run two models on the same inputs in LiteRT and TFLM and compare their outputs.

`verify(a, b)` treats A as the reference. Inputs and outputs are matched by signature name,
else by tensor name, else by position. Each runtime runs both models twice: once feeding the
samples one after another into one interpreter ("no-reset"), once resetting between samples
("reset"), so a model that keeps (or stops keeping) state across invokes shows up as a
difference. A is compared with B within each runtime, never one runtime with the other.

Tolerance, per output and invoke: max|B - A| <= max(atol, rtol * max finite |A|) (the
equivalence checker's `bound`, tflgraph/reference/equivalence.py). Defaults: floats
atol = rtol = 1e-5, i.e. 1e-5 x max(1, max|A|); quantized integers atol = 1 (one quantization
step); plain integers (indices, counts), booleans and strings must be equal. Giving atol or
rtol replaces both defaults (the other becomes 0). Quantized outputs whose scale or zero point
differ between A and B are compared as real values, within one step of A's scale. The report's
relative error is max|B - A| / max|A| (norm-wise, so zeros in A do not blow it up).

Only the main subgraph (subgraph 0) is run, as both runtimes do by default.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.io.reader import load
from tflgraph.io.writer import to_bytes
from tflgraph.ir import Model, Subgraph, Tensor
from tflgraph.reference.equivalence import RTOL, bound, finite_max_abs, max_error
from tflgraph.reference.kernels_nn import STATE_OPERANDS
from tflgraph.runtime import runtimes
from tflgraph.runtime.runtimes import MODES, IODetail, RuntimeUnavailable

FLOAT_TOLERANCE = RTOL  # the equivalence checker's bound: 1e-5 x max(1, max|A|)


class VerifyError(TflgraphError):
    """The models cannot be compared: unreadable, different inputs, bad --inputs data."""


@dataclass
class Port:
    """One input or output of a model's main subgraph."""

    name: str  # signature name, else tensor name
    tensor: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int
    signature: tuple[int, ...] | None = None  # shape_signature: -1 where the size is open

    def detail(self) -> IODetail:
        return IODetail(self.tensor, self.shape, self.dtype, self.scale, self.zero_point)


@dataclass
class Row:
    """A vs B for one output, in one runtime and mode, over all samples."""

    runtime: str
    mode: str
    output: str
    max_abs: float
    max_rel: float
    tolerance: float  # the largest allowed |B - A| over the invokes
    equal: bool
    note: str = ""


@dataclass
class RuntimeStatus:
    runtime: str
    compared: bool
    message: str = ""  # why it could not compare, or why it counts as a difference
    different: bool = False  # A runs but B does not


@dataclass
class VerifyReport:
    a: str
    b: str
    samples: int
    seed: int | None
    runtimes: list[RuntimeStatus] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """'equal', 'different', or 'unverified' (no runtime could run both models)."""
        if any(r.different for r in self.runtimes) or any(not r.equal for r in self.rows):
            return "different"
        return "equal" if any(r.compared for r in self.runtimes) else "unverified"

    @property
    def ok(self) -> bool:
        return self.verdict == "equal"

    @property
    def exit_code(self) -> int:
        return {"equal": 0, "different": 1}.get(self.verdict, 2)

    def differences(self) -> list[str]:
        """One line per (runtime, mode, output) that differs, and per runtime B broke."""
        out = [f"{r.runtime}: {r.message}" for r in self.runtimes if r.different]
        for r in self.rows:
            if not r.equal:
                what = r.note or f"max abs err {r.max_abs:.3g} > {r.tolerance:.3g}"
                out.append(f"{r.runtime}/{r.mode} {r.output}: {what}")
        return out

    def reason(self) -> str:
        """Why nothing was compared (for 'unverified')."""
        return "; ".join(f"{r.runtime}: {r.message}" for r in self.runtimes if not r.compared)

    def to_dict(self) -> dict:
        """Plain JSON-able data; an infinite error (NaN vs number, shape change) is "inf"."""
        d = asdict(self)
        for row in d["rows"]:
            for k in ("max_abs", "max_rel"):
                row[k] = row[k] if np.isfinite(row[k]) else str(row[k])
        d.update(verdict=self.verdict, exit_code=self.exit_code)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default, allow_nan=False)

    def format(self) -> str:
        header = ("runtime", "mode", "output", "max abs err", "max rel err", "tolerance", "verdict")
        table = [header] + [
            (
                r.runtime,
                r.mode,
                r.output,
                f"{r.max_abs:.3g}",
                f"{r.max_rel:.3g}",
                f"{r.tolerance:.3g}",
                "equal" if r.equal else "DIFFERENT" + (f" ({r.note})" if r.note else ""),
            )
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in table
        ]
        lines = [line.rstrip() for line in lines] if self.rows else []
        lines += [f"{r.runtime}: {r.message}" for r in self.runtimes if r.message]
        hint = _state_hint(self.rows)
        if hint:
            lines.append(hint)
        seed = "" if self.seed is None else f", seed {self.seed}"
        lines.append(
            f"verdict: {self.verdict} (B = {self.b} against A = {self.a} in each runtime; "
            f"{self.samples} samples{seed})"
        )
        return "\n".join(lines)


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def _state_hint(rows: list[Row]) -> str:
    bad = {(r.runtime, r.mode) for r in rows if not r.equal}
    only = [
        rt
        for rt in dict.fromkeys(r.runtime for r in rows)
        if (rt, "no-reset") in bad and (rt, "reset") not in bad
    ]
    if not only:
        return ""
    return (
        f"{', '.join(only)}: outputs differ only when samples follow each other without a "
        "reset: the models keep different state across invokes"
    )


# --------------------------------------------------------------------------- inputs/outputs


def _as_model(x, label: str) -> tuple[Model, bytes, str]:
    if isinstance(x, Model):
        return x, to_bytes(x), f"<{label}: Model in memory>"
    if isinstance(x, (bytes, bytearray, memoryview)):
        data = bytes(x)
        return load(data), data, f"<{label}: bytes>"
    if isinstance(x, (str, os.PathLike)):
        model = load(x)  # raises ModelError with the reason (no such file, not a model, ...)
        with open(x, "rb") as f:
            return model, f.read(), str(x)
    raise VerifyError(f"{label}: expected a Model, bytes or a path, not {type(x).__name__}")


def ports(model: Model, which: str) -> list[Port]:
    """The main subgraph's inputs or outputs, named by signature where one covers them."""
    sg = model.main
    tensors = sg.inputs if which == "inputs" else sg.outputs
    sig_names: dict[int, str] = {}
    for sig in model.signature_defs:
        if sig.subgraph is sg:
            sig_names = {id(t): name for name, t in getattr(sig, which)}
            break
    out = []
    for i, t in enumerate(tensors):
        name = sig_names.get(id(t)) or t.name or f"{which[:-1]} {i}"
        out.append(_port(name, t))
    return out


def _port(name: str, t: Tensor) -> Port:
    dtype = np.dtype("S") if t.type_name == "STRING" else t.dtype
    if dtype is None:
        raise VerifyError(f"{name}: tensor type {t.type_name} is not supported")
    q = t.quantization or {}
    scale = np.ravel(q.get("scale", [])) if q.get("scale") is not None else []
    zp = np.ravel(q.get("zero_point", [])) if q.get("zero_point") is not None else []
    return Port(
        name,
        t.name,
        tuple(int(d) for d in t.shape),
        np.dtype(dtype),
        float(scale[0]) if len(scale) == 1 else 0.0,
        int(zp[0]) if len(zp) == 1 else 0,
        t.shape_signature,
    )


def match(a: list[Port], b: list[Port], which: str) -> list[int]:
    """For each port of A, the index of its partner in B: by name, else by position."""
    if len(a) != len(b):
        raise VerifyError(f"A has {len(a)} {which}, B has {len(b)}")
    for key in ("name", "tensor"):
        names_a, names_b = [getattr(p, key) for p in a], [getattr(p, key) for p in b]
        if len(set(names_a)) == len(a) and set(names_a) == set(names_b):
            return [names_b.index(n) for n in names_a]
    return list(range(len(a)))


def _check_pairs(a: list[Port], b: list[Port], order: list[int], which: str) -> None:
    """Same dtypes and shapes. An output dimension that A's shape_signature leaves open (-1)
    may differ: A's stored size there is a converter's placeholder (TF 2.15 writes [1, 1, 16]
    for a [-1, -1, 16] sequence output whose length is 10), and the runs compare the values."""
    for p, j in zip(a, order):
        q = b[j]
        if p.dtype != q.dtype:
            raise VerifyError(f"{which[:-1]} {p.name!r}: dtype {p.dtype} in A, {q.dtype} in B")
        if not _shapes_agree(p, q, open_dims=which == "outputs"):
            raise VerifyError(
                f"{which[:-1]} {p.name!r}: shape {list(p.shape)} in A, {list(q.shape)} in B"
            )


def _shapes_agree(p: Port, q: Port, open_dims: bool) -> bool:
    if p.shape == q.shape:
        return True
    sig = p.signature if open_dims else None
    if sig is None or len(sig) != len(p.shape) or len(q.shape) != len(p.shape):
        return False
    return all(s < 0 or d == e for s, d, e in zip(sig, p.shape, q.shape))


def load_inputs(source, inputs: list[Port]) -> list[list[np.ndarray]]:
    """Samples from an .npz path (or .npy for one input) or a mapping, keyed by input name,
    tensor name or position ('0', 'arr_0'). An array of the input's shape is one sample; one
    with an extra leading axis holds several."""
    if isinstance(source, (str, os.PathLike)):
        try:
            z = np.load(source, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise VerifyError(f"{source}: cannot read inputs ({e})") from None
        if hasattr(z, "files"):  # .npz; a plain .npy array is the first input
            with z:
                source = {k: z[k] for k in z.files}
        else:
            source = {"0": z}
    if isinstance(source, (list, tuple)):
        source = {str(i): x for i, x in enumerate(source)}
    given = {str(k): np.asarray(v) for k, v in dict(source).items()}
    columns, used = [], set()
    for i, p in enumerate(inputs):
        keys = [k for k in (p.name, p.tensor, str(i), f"arr_{i}") if k in given]
        if not keys:
            raise VerifyError(f"inputs: no data for input {p.name!r} (or position {i})")
        used.add(keys[0])
        x = given[keys[0]]
        if x.shape == p.shape:
            x = x[None]
        if x.shape[1:] != p.shape:
            raise VerifyError(
                f"inputs: {keys[0]!r} has shape {list(x.shape)}, input {p.name!r} needs "
                f"{list(p.shape)} (or [N, ...] for N samples)"
            )
        if x.dtype.kind != p.dtype.kind:
            raise VerifyError(f"inputs: {keys[0]!r} is {x.dtype}, input {p.name!r} is {p.dtype}")
        if p.dtype.kind in "iu" and x.size:
            info = np.iinfo(p.dtype)
            if x.min() < info.min or x.max() > info.max:
                raise VerifyError(f"inputs: {keys[0]!r} has values outside the {p.dtype} range")
        columns.append(x.astype(p.dtype))
    extra = sorted(set(given) - used)
    if extra:
        raise VerifyError(f"inputs: no model input is called {extra[0]!r}")
    counts = {len(c) for c in columns}
    if len(counts) > 1:
        raise VerifyError(f"inputs: the arrays hold different numbers of samples {sorted(counts)}")
    n = counts.pop() if counts else 1
    return [[c[k] for c in columns] for k in range(n)]


# --------------------------------------------------------------------------- comparison


def _tolerance(pa: Port, pb: Port, atol, rtol) -> tuple[float, float, bool]:
    """(atol, rtol, as_real) for one output; as_real: quantized differently in A and B."""
    quantized = pa.dtype.kind in "iu" and pa.scale != 0
    as_real = quantized and (pa.scale, pa.zero_point) != (pb.scale, pb.zero_point)
    if pa.dtype.kind not in "fiu":  # booleans, strings
        return 0.0, 0.0, False
    if atol is not None or rtol is not None:
        return atol or 0.0, rtol or 0.0, as_real
    if as_real:
        return pa.scale, 0.0, True
    if pa.dtype.kind == "f":
        return FLOAT_TOLERANCE, FLOAT_TOLERANCE, False
    return (1.0 if quantized else 0.0), 0.0, False  # one step; plain integers are exact


def _compare(
    ref: list[np.ndarray], got: list[np.ndarray], pa: Port, pb: Port, atol, rtol
) -> tuple[float, float, float, bool, str]:
    """Worst case over the invokes: (max abs, max rel, tolerance, equal, note)."""
    atol, rtol, as_real = _tolerance(pa, pb, atol, rtol)
    worst_abs = worst_rel = worst_tol = 0.0
    ok = True
    for a, b in zip(ref, got):
        if a.shape != b.shape:
            return np.inf, np.inf, 0.0, False, f"shape {list(b.shape)} vs {list(a.shape)}"
        if a.dtype.kind in "SUO":  # strings must be equal (no tolerance applies)
            err, mag, tol = float(np.count_nonzero(a != b)), 1.0, 0.0
        else:
            if as_real:
                a = (a.astype(np.float64) - pa.zero_point) * pa.scale
                b = (b.astype(np.float64) - pb.zero_point) * pb.scale
            # finite values only: an inf in A must not make every finite error tolerable
            err, mag, tol = max_error(a, b), finite_max_abs(a), bound(a, rtol, atol)
        worst_abs = max(worst_abs, err)
        worst_rel = max(worst_rel, err / mag if mag else (np.inf if err else 0.0))
        worst_tol = max(worst_tol, tol)
        ok = ok and err <= tol
    note = "" if ok or not as_real else "quantized differently; compared as real values"
    return worst_abs, worst_rel, worst_tol, ok, note


def verify(
    a,
    b,
    runtime: str = "both",
    samples: int = 5,
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    inputs=None,
    timeout: float = 60.0,
    modes: tuple[str, ...] = MODES,
) -> VerifyReport:
    """Compare model B with reference A in LiteRT and/or TFLM (see the module docstring).

    `a`, `b`: Model, bytes or path. `inputs`: an .npz path, a mapping or a list of arrays
    (keyed by input name or position); otherwise `samples` seeded random inputs. `modes`:
    ("no-reset", "reset") by default; ("reset",) for models meant to carry state.
    Raises VerifyError when the models cannot be compared at all."""
    names = runtimes.RUNTIMES if runtime == "both" else (runtime,)
    if any(n not in runtimes.RUNTIMES for n in names):
        raise VerifyError(f"unknown runtime {runtime!r}; choose litert, tflm or both")
    if not modes or any(m not in MODES for m in modes):
        raise VerifyError(f"modes must be some of {MODES}, not {modes!r}")
    if inputs is None and samples < 1:
        raise VerifyError("samples must be at least 1")
    for label, tol in (("atol", atol), ("rtol", rtol)):
        if tol is not None and not tol >= 0:
            raise VerifyError(f"{label} must be a number >= 0, not {tol}")
    model_a, data_a, name_a = _as_model(a, "A")
    model_b, data_b, name_b = _as_model(b, "B")
    in_a, in_b = ports(model_a, "inputs"), ports(model_b, "inputs")
    out_a, out_b = ports(model_a, "outputs"), ports(model_b, "outputs")
    in_order, out_order = match(in_a, in_b, "inputs"), match(out_a, out_b, "outputs")
    _check_pairs(in_a, in_b, in_order, "inputs")
    _check_pairs(out_a, out_b, out_order, "outputs")
    if inputs is not None:
        feeds_a = load_inputs(inputs, in_a)
    else:
        rng = np.random.default_rng(seed)
        details = [p.detail() for p in in_a]
        try:
            feeds_a = [runtimes.random_inputs(details, rng) for _ in range(samples)]
        except RuntimeUnavailable as e:
            raise VerifyError(str(e)) from None
    position = {j: i for i, j in enumerate(in_order)}  # B's input j is A's input position[j]
    feeds_b = [[f[position[j]] for j in range(len(in_b))] for f in feeds_a]

    report = VerifyReport(name_a, name_b, len(feeds_a), None if inputs is not None else seed)
    for rt in names:
        runs = _Runs(rt, timeout, modes)
        try:
            got_a = runs.run(model_a, data_a, feeds_a)
        except RuntimeUnavailable as e:
            report.runtimes.append(RuntimeStatus(rt, False, f"cannot run A: {_strip(e, rt)}"))
            continue
        try:
            kernels_a = runs.kernels
            got_b = runs.run(model_b, data_b, feeds_b)
            if runs.kernels != kernels_a:  # B needed LiteRT's builtin kernels: A runs on them too
                got_a = runs.run(model_a, data_a, feeds_a)
        except RuntimeUnavailable as e:
            msg = f"cannot run B: {_strip(e, rt)} (A runs)"
            report.runtimes.append(RuntimeStatus(rt, False, msg, different=True))
            continue
        report.runtimes.append(RuntimeStatus(rt, True, runs.note))
        for mode in modes:
            for i, (pa, j) in enumerate(zip(out_a, out_order)):
                ref = [outs[i] for outs in got_a[mode]]
                new = [outs[j] for outs in got_b[mode]]
                report.rows.append(
                    Row(rt, mode, pa.name, *_compare(ref, new, pa, out_b[j], atol, rtol))
                )
    return report


class _Runs:
    """Runs the models of one comparison in one runtime, all on the same kernels. LiteRT starts
    with its default delegate; when that cannot prepare a model and LiteRT's builtin kernels
    run it, every later run uses the builtin kernels (the delegate's int8 results differ from
    theirs by many quantization steps), and `note` says why."""

    def __init__(self, rt: str, timeout: float, modes):
        self.rt, self.timeout, self.modes = rt, timeout, modes
        self.kernels, self.note = "default", ""

    def run(self, model: Model, data: bytes, feeds) -> dict[str, list]:
        blocker = tflm_blocker(model) if self.rt == "tflm" else None
        if blocker:
            raise RuntimeUnavailable(blocker)
        misread = _state_reader(model) if self.rt == "litert" else None
        if misread and self.kernels == "default":
            self.kernels = "builtin"
            self.note = f"{misread}; compared on LiteRT's builtin kernels"
        try:
            return self._invoke(data, feeds)
        except RuntimeUnavailable as e:
            if self.rt != "litert" or self.kernels == "builtin":
                raise
            self.kernels = "builtin"
            try:
                got = self._invoke(data, feeds)
            except RuntimeUnavailable:
                self.kernels = "default"
                raise e from None
            self.note = (
                f"its default delegate failed ({_strip(e, self.rt)}); compared on LiteRT's "
                "builtin kernels"
            )
            return got

    def _invoke(self, data: bytes, feeds) -> dict[str, list]:
        return runtimes.run_isolated(data, feeds, self.rt, self.timeout, self.modes, self.kernels)


def _state_reader(model: Model) -> str | None:
    """Which op reads a variable tensor other than as its own state (onnx2tf 2.x reshapes an
    LSTM's final state into an output): LiteRT's XNNPACK delegate gives such a reader the
    value from before the LSTM ran (zeros on the first invoke), its builtin kernels do not."""
    for sg in model.reachable_subgraphs():
        for op in sg.iter_ops():
            own = STATE_OPERANDS.get(op.type, ())
            for k, t in enumerate(op.inputs):
                if t is not None and t.is_variable and k not in own:
                    return f"{op.type} reads the variable tensor {t.name}"
    return None


def tflm_blocker(model: Model) -> str | None:
    """Why TFLM cannot be trusted with this model, known before running it. TFLM has no
    dynamic tensors: a WHILE body with dynamic-shape tensors (Keras' return_sequences
    accumulator) returns zeros or wrong values, or never ends (TFLITE_NOTES)."""
    for sg in model.reachable_subgraphs():
        for op in sg.ops_of_type("WHILE"):
            for role in ("cond", "body"):
                loop_sg = op.option(f"{role}_subgraph_index")
                if isinstance(loop_sg, Subgraph) and any(t.is_dynamic for t in loop_sg.tensors):
                    return (
                        f"WHILE {role} {loop_sg.name!r} has dynamic-shape tensors, which TFLM "
                        "does not support (it returns wrong values or hangs)"
                    )
    return None


def _strip(e: Exception, rt: str) -> str:
    """The runtime's message without a leading repetition of its name."""
    text = str(e)
    return (
        text[len(rt) + 1 :].lstrip(": ")
        if text.startswith(rt + " ") or text.startswith(rt + ":")
        else text
    )
