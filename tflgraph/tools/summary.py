"""What a model contains, as dicts (for --json and reports) and as text."""

from __future__ import annotations

from tflgraph.io.nodedef import NodeDefError, flex_node
from tflgraph.ir import Model, Subgraph, Tensor


def _tensor_info(name: str, t: Tensor) -> dict:
    info = {"name": name, "shape": list(t.shape), "dtype": t.type_name.lower()}
    if t.shape_signature is not None and list(t.shape_signature) != list(t.shape):
        info["shape_signature"] = list(t.shape_signature)
    q = t.quantization or {}
    if q.get("scale") is not None and len(q["scale"]):
        info["quantization"] = {
            "scale": [float(x) for x in q["scale"][:4]],
            "zero_point": [int(x) for x in q.get("zero_point", [])[:4]],
            "per_axis": len(q["scale"]) > 1,
        }
    return info


def summary(model: Model, nbytes: int) -> dict:
    """Bytes, subgraph count and op counts by type (reachable subgraphs only)."""
    counts = model.op_counts()
    return {
        "bytes": nbytes,
        "subgraphs": len(model.reachable_subgraphs()),
        "ops": sum(counts.values()),
        "op_counts": counts,
    }


def _weight_bytes(model: Model) -> dict[str, int]:
    """Constant bytes by the type of op that reads them; a buffer several ops share (the T
    copies of an unrolled cell read one weight buffer) counts once, for the first op."""
    out: dict[str, int] = {}
    counted: set[int] = set()
    for sg in model.reachable_subgraphs():
        for op in sg.operators:
            n = 0
            for t in op.inputs:
                if t is not None and t.is_constant and id(t.buffer) not in counted:
                    counted.add(id(t.buffer))
                    n += t.buffer.nbytes
            if n:
                out[op.type] = out.get(op.type, 0) + n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _control_flow(model: Model) -> list[dict]:
    index = {sg: i for i, sg in enumerate(model.subgraphs)}
    flows = []
    for sg in model.subgraphs:
        for op in sg.operators:
            refs = op.subgraphs()
            if refs:
                flows.append(
                    {
                        "subgraph": index[sg],
                        "op": op.type,
                        "calls": [
                            {"index": index.get(r, -1), "name": r.name, "ops": r.num_ops}
                            for r in refs
                        ],
                    }
                )
    return flows


def _signature_io(model: Model, sg: Subgraph):
    for sd in model.signature_defs:
        if sd.subgraph is sg:
            return (
                [_tensor_info(n, t) for n, t in sd.inputs],
                [_tensor_info(n, t) for n, t in sd.outputs],
            )
    return (
        [_tensor_info(t.name, t) for t in sg.inputs],
        [_tensor_info(t.name, t) for t in sg.outputs],
    )


def describe(model: Model, nbytes: int) -> dict:
    subgraphs = []
    for i, sg in enumerate(model.subgraphs):
        ins, outs = _signature_io(model, sg)
        counts: dict[str, int] = {}
        for op in sg.iter_ops():
            counts[op.type] = counts.get(op.type, 0) + 1
        subgraphs.append(
            {
                "index": i,
                "name": sg.name,
                "ops": sg.num_ops,
                "op_counts": dict(sorted(counts.items())),
                "inputs": ins,
                "outputs": outs,
            }
        )
    return {
        "bytes": nbytes,
        "version": model.version,
        "description": model.description,
        "subgraphs": subgraphs,
        "op_counts": model.op_counts(),
        "weight_bytes_by_op": _weight_bytes(model),
        "control_flow": _control_flow(model),
        "flex_ops": _flex_ops(model),
        "signatures": [sd.key for sd in model.signature_defs],
        "metadata": [name for name, _ in model.metadata],
    }


def _flex_ops(model: Model) -> dict[str, list[str]]:
    """Each Flex op type -> the TensorFlow ops it holds, as their NodeDefs describe them
    (e.g. "Erf(T=float32)"), each distinct description once."""
    out: dict[str, list[str]] = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.type.startswith("CUSTOM:Flex"):
                try:
                    text = flex_node(op.custom_options).describe()
                except NodeDefError as e:
                    text = f"undecodable: {e}"
                seen = out.setdefault(op.type, [])
                if text not in seen:
                    seen.append(text)
    return out


def _fmt_io(items: list[dict]) -> str:
    return ", ".join(f"{x['name']} {x['dtype']}{x['shape']}" for x in items) or "-"


def format_description(path: str, info: dict) -> str:
    lines = [
        f"{path}: {info['bytes']:,} bytes, {len(info['subgraphs'])} subgraph(s), "
        f"schema version {info['version']}"
    ]
    if info["signatures"]:
        lines.append(f"signatures: {', '.join(info['signatures'])}")
    if info["metadata"]:
        lines.append(f"metadata: {', '.join(info['metadata'])}")
    for sg in info["subgraphs"]:
        lines.append(f"subgraph {sg['index']} {sg['name']!r}: {sg['ops']} ops")
        lines.append(f"  inputs:  {_fmt_io(sg['inputs'])}")
        lines.append(f"  outputs: {_fmt_io(sg['outputs'])}")
        lines.append("  ops: " + ", ".join(f"{k} x{v}" for k, v in sg["op_counts"].items()))
    if info["weight_bytes_by_op"]:
        lines.append(
            "weights: " + ", ".join(f"{k} {v:,} B" for k, v in info["weight_bytes_by_op"].items())
        )
    for cf in info["control_flow"]:
        calls = ", ".join(
            f"subgraph {c['index']} {c['name']!r} ({c['ops']} ops)" for c in cf["calls"]
        )
        lines.append(f"control flow: {cf['op']} in subgraph {cf['subgraph']} -> {calls}")
    for kind, nodes in info["flex_ops"].items():
        lines.append(f"flex: {kind} = {'; '.join(nodes)}")
    return "\n".join(lines)


def format_summary_table(src: str, dst: str, before: dict, after: dict) -> str:
    def pct(a, b):
        return f"{(b - a) / a * 100:+.1f}%" if a else ""

    rows = [
        ("bytes", before["bytes"], after["bytes"]),
        ("subgraphs", before["subgraphs"], after["subgraphs"]),
        ("ops", before["ops"], after["ops"]),
    ]
    types = sorted(set(before["op_counts"]) | set(after["op_counts"]))
    rows += [(f"  {t}", before["op_counts"].get(t, 0), after["op_counts"].get(t, 0)) for t in types]
    width = max(len(r[0]) for r in rows)
    lines = [f"{src} -> {dst}", f"{'':{width}s} {'before':>12s} {'after':>12s}"]
    for name, a, b in rows:
        lines.append(f"{name:{width}s} {a:>12,} {b:>12,} {pct(a, b)}")
    return "\n".join(lines)
