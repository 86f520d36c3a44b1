"""Render a model as a Graphviz DOT graph (text), or as SVG/PNG through the `dot` binary.

Ops are boxes labelled with their type, the options that differ from the defaults, and the
constants they read (name, shape, dtype, bytes). Tensors are edges labelled with shape and
dtype (the tensor name is the edge tooltip); a constant of at most SMALL_CONSTANT elements
shows its values (a scalar 1.0, slice begin/end/strides, shape and axis operands). Subgraph
inputs and outputs are ellipses; tensors read without a producer that are neither inputs nor
constants (variables, states) are diamonds. Every subgraph is a cluster; WHILE/IF/CALL_ONCE
link to the clusters of the subgraphs they run with a dashed edge labelled
cond/body/then/else/init, and a WHILE's operand i has a dotted edge to the body input i it
becomes. Ops in `highlight` (those a pass added, with `optimize --dot-after`) are drawn bold
and green. The output depends only on the model: same model, same bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np

from tflgraph.errors import TflgraphError
from tflgraph.io.schema import ACTIVATION_NAMES, Options, spec
from tflgraph.ir import Model, Operator, Subgraph, Tensor

SMALL_CONSTANT = 8  # constants with at most this many elements show their values
ADDED_STYLE = ', style="filled,bold", penwidth=2, color="#2e7d32", fillcolor="#dff5d8"'
TEXT_FORMATS = {".dot", ".gv"}
IMAGE_FORMATS = {".svg", ".png", ".pdf"}


def to_dot(model: Model, subgraph: int | str = "all", highlight=frozenset()) -> str:
    """DOT text of subgraph `subgraph` (an index or a name; with the subgraphs its ops run),
    or of all of them. Ops in `highlight` are drawn bold."""
    index = {sg: k for k, sg in enumerate(model.subgraphs)}
    shown = _select(model, subgraph)
    lines = [
        "digraph tflgraph {",
        "  compound=true;",
        "  rankdir=TB;",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    links: list[str] = []
    for sg in shown:
        lines += _cluster(sg, index[sg], index, links, highlight)
    lines += links
    lines.append("}")
    return "\n".join(lines) + "\n"


def _select(model: Model, subgraph: int | str) -> list[Subgraph]:
    if subgraph in ("all", None):
        return list(model.subgraphs)
    try:
        k = int(subgraph)
    except ValueError:
        names = [sg.name for sg in model.subgraphs]
        if names.count(subgraph) != 1:
            known = ", ".join(repr(n) for n in names if n)
            why = "names several subgraphs" if subgraph in names else "is no subgraph's name"
            raise TflgraphError(
                f"--subgraph {subgraph!r} {why}: give an index, 'all' or one of {known}"
            ) from None
        k = names.index(subgraph)
    if not 0 <= k < len(model.subgraphs):
        raise TflgraphError(f"subgraph {k} does not exist (the model has {len(model.subgraphs)})")
    return model.reachable_subgraphs([model.subgraphs[k]])


def _cluster(sg: Subgraph, k: int, index: dict, links: list[str], highlight) -> list[str]:
    ops = sg.operators
    op_id = {op: f"s{k}_op{i}" for i, op in enumerate(ops)}
    source: dict[int, str] = {}  # id(tensor) -> node id of what provides it
    title = f"subgraph {k}: {sg.name}" if sg.name else f"subgraph {k}"
    out = [
        f"  subgraph cluster_s{k} {{",
        f"    label={_q(f'{title} ({len(ops)} ops)')};",
        '    style=rounded; color="#999999";',
    ]
    for j, t in enumerate(sg.inputs):
        source[id(t)] = f"s{k}_in{j}"
        label = f"input {j}: {_short(t.name)}\n{_tensor_label(t)}"
        out.append(f"    s{k}_in{j} [shape=ellipse, style=filled, fillcolor=\"#d8ecff\", "
                   f"label={_q(label)}];")  # fmt: skip
    for op in ops:
        for t in op.outputs:
            if t is not None:
                source[id(t)] = op_id[op]
    extra = 0
    edges = []
    for op in ops:
        consts = []
        for i, t in enumerate(op.inputs):
            if t is None:
                continue
            if id(t) not in source and t.is_constant:
                consts.append(f"#{i} {_short(t.name)}: {_constant_label(t)}")
                continue
            if id(t) not in source:
                source[id(t)] = f"s{k}_v{extra}"
                extra += 1
                out.append(f"    {source[id(t)]} [shape=diamond, label="
                           f"{_q(_short(t.name) + chr(10) + _tensor_label(t))}];")  # fmt: skip
            edges.append(_edge(source[id(t)], op_id[op], t))
        label = "\n".join([op.type, *_option_lines(op), *consts])
        style = ', style=filled, fillcolor="#fff2cc"' if op.subgraphs() else ""
        style = ADDED_STYLE if op in highlight else style
        out.append(f"    {op_id[op]} [shape=box{style}, label={_q(label)}];")
        for field, target in _subgraph_refs(op):
            links.append(
                f"  {op_id[op]} -> {_anchor(target, index[target])} [style=dashed, "
                f"lhead=cluster_s{index[target]}, label={_q(field)}];"
            )
            if field == "body":
                links += _operand_edges(op_id[op], op, target, index[target])
    for j, t in enumerate(sg.outputs):
        node = f"s{k}_out{j}"
        label = f"output {j}: {_short(t.name)}"
        out.append(f"    {node} [shape=ellipse, style=filled, fillcolor=\"#dff5d8\", "
                   f"label={_q(label)}];")  # fmt: skip
        if id(t) not in source:
            source[id(t)] = f"s{k}_v{extra}"
            extra += 1
            kind = f"constant, {_size(t.buffer.nbytes)}" if t.is_constant else "unproduced"
            out.append(f"    {source[id(t)]} [shape=diamond, label="
                       f"{_q(_short(t.name) + chr(10) + kind)}];")  # fmt: skip
        edges.append(_edge(source[id(t)], node, t))
    if not ops and not sg.inputs and not sg.outputs:
        out.append(f'    s{k}_empty [shape=point, label=""];')
    out += [f"    {e}" for e in edges]
    out.append("  }")
    return out


def _anchor(sg: Subgraph, k: int) -> str:
    """A node inside subgraph k's cluster for edges that point at the cluster."""
    if sg.inputs:
        return f"s{k}_in0"
    if sg.operators:
        return f"s{k}_op0"
    return f"s{k}_out0" if sg.outputs else f"s{k}_empty"


def _operand_edges(node: str, op: Operator, body: Subgraph, kb: int) -> list[str]:
    """Dotted edges from a WHILE to each body input, labelled with the operand they carry."""
    return [
        f'  {node} -> s{kb}_in{i} [style=dotted, arrowhead=empty, color="#888888", '
        f"label={_q(f'#{i}')}, tooltip={_q(t.name)}];"
        for i, t in enumerate(op.inputs[: len(body.inputs)])
        if t is not None
    ]


def _constant_label(t: Tensor) -> str:
    """Shape and dtype, then the values of a small constant or the size of a large one."""
    data = t.data if t.buffer is not None else None
    if data is None or data.size > SMALL_CONSTANT or data.dtype.kind not in "biuf":
        return f"{_tensor_label(t)}, {_size(t.buffer.nbytes)}"
    items = [f"{x:g}" if isinstance(x, float) else str(x) for x in data.reshape(-1).tolist()]
    values = items[0] if data.ndim == 0 else f"[{','.join(items)}]"
    return f"{_tensor_label(t)} = {values}"


def _edge(src: str, dst: str, t: Tensor) -> str:
    return f"{src} -> {dst} [label={_q(_tensor_label(t))}, tooltip={_q(t.name)}];"


def _subgraph_refs(op: Operator) -> list[tuple[str, Subgraph]]:
    refs = []
    for opts in (op.options, op.options2):
        if isinstance(opts, Options):
            for field, v in sorted(opts.items()):
                if isinstance(v, Subgraph):
                    refs.append((field.replace("_subgraph_index", "").replace("_index", ""), v))
    return refs


def _option_lines(op: Operator) -> list[str]:
    lines = []
    for opts in (op.options, op.options2):
        if not isinstance(opts, Options):
            if opts is not None:
                lines.append("(raw options)")
            continue
        defaults = {f.name: f.default for f in spec(opts.kind).fields}
        for field, v in sorted(opts.items()):
            if isinstance(v, Subgraph) or _same(v, defaults.get(field)):
                continue
            if field == "fused_activation_function":
                lines.append(f"act={ACTIVATION_NAMES.get(v, v)}")
            else:
                lines.append(f"{field}={_value(v)}")
    return lines


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return False
    return a == b


def _value(v) -> str:
    if isinstance(v, np.ndarray):
        items = v.reshape(-1).tolist()
        text = ",".join(str(x) for x in items[:8]) + (",..." if len(items) > 8 else "")
        return f"[{text}]"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (bytes, str)):
        s = v.decode(errors="replace") if isinstance(v, bytes) else v
        return repr(s if len(s) <= 24 else s[:21] + "...")
    return str(v)


def _tensor_label(t: Tensor) -> str:
    dims = t.shape_signature if t.shape_signature is not None else t.shape
    shape = ",".join("?" if d < 0 else str(d) for d in dims)
    return f"[{shape}] {t.type_name.lower()}"


def _short(name: str, limit: int = 40) -> str:
    """The last component of a long tensor name (names are often ';'-joined paths)."""
    name = name.split(";")[-1]
    return name if len(name) <= limit else "..." + name[-(limit - 3) :]


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def _q(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


# --------------------------------------------------------------------------- output


def render(dot_text: str, fmt: str) -> bytes:
    """Run Graphviz `dot -T<fmt>` on the text; a clear error when it is not installed."""
    exe = shutil.which("dot")
    if exe is None:
        raise TflgraphError(
            f"cannot write {fmt}: Graphviz 'dot' is not installed "
            "(apt-get install graphviz, brew install graphviz), or write a .dot file"
        )
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise TflgraphError(f"Graphviz dot failed: {err[0] if err else proc.returncode}")
    return proc.stdout


def write(model: Model, path: str, subgraph: int | str = "all", highlight=frozenset()) -> None:
    """Write DOT text (.dot, .gv) or an image rendered by Graphviz (.svg, .png, .pdf)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in TEXT_FORMATS | IMAGE_FORMATS:
        formats = ", ".join(sorted(TEXT_FORMATS | IMAGE_FORMATS))
        raise TflgraphError(f"{path}: unknown graph format {ext or '(none)'}; use {formats}")
    text = to_dot(model, subgraph, highlight)
    data = text.encode() if ext in TEXT_FORMATS else render(text, ext[1:])
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise TflgraphError(f"{path}: cannot write ({e.strerror or e})") from None


def dot_after(specs: list[str], names: list[str], output: str, model: Model | None = None):
    """The `optimize --dot-after PASS[=PATH]` hook: None, or a callback for run_passes that
    writes the graph each time one of the named passes has run, the ops that pass added (in
    any round of a fixed-point pipeline) drawn bold (`model`: the model before the first
    pass, to know what the first pass added). Bad specs fail up front."""
    targets: dict[str, str] = {}
    for item in specs:
        name, _, path = item.partition("=")
        if name not in names:
            raise TflgraphError(
                f"--dot-after {name}: not in the pipeline ({', '.join(names) or 'no passes'})"
            )
        path = path or f"{os.path.splitext(output)[0]}.{name}.dot"
        ext = os.path.splitext(path)[1].lower()
        if ext not in TEXT_FORMATS | IMAGE_FORMATS:
            raise TflgraphError(f"--dot-after {item}: unknown graph format {ext or '(none)'}")
        if ext in IMAGE_FORMATS and shutil.which("dot") is None:
            render("", ext[1:])  # raises the 'Graphviz is not installed' error
        targets[name] = path
    if not targets:
        return None

    seen = _ops(model) if model is not None else None
    added: dict[str, set] = {name: set() for name in targets}  # over the fixed-point rounds

    def after_pass(name: str, model: Model) -> None:
        nonlocal seen
        now = _ops(model)
        if name in targets:
            added[name] |= now - seen if seen is not None else set()
            write(model, targets[name], highlight=added[name] & now)
        seen = now

    return after_pass


def _ops(model: Model) -> set[Operator]:
    return {op for sg in model.subgraphs for op in sg.iter_ops()}
