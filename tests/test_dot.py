"""DOT output: `tflgraph dot`, `optimize --dot-after`, and Graphviz rendering of every fixture."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
from helpers import all_fixtures, fixture, tflgraph_cli

import tflgraph
from tflgraph.io.schema import new_options
from tflgraph.ir import Model
from tflgraph.tools.dot import render, to_dot

needs_graphviz = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz 'dot' is not installed (.ci/run installs it)"
)


def cluster(text: str, k: int) -> str:
    """The lines of subgraph k's cluster."""
    start = text.index(f"  subgraph cluster_s{k} {{\n")
    return text[start : text.index("\n  }\n", start)]


def node_labels(block: str) -> list[str]:
    return re.findall(r"^\s+s\d+_op\d+ \[shape=box[^\]]*label=\"([^\"]*)\"", block, re.M)


def links(text: str) -> list[tuple[str, int, str]]:
    """(source node, target cluster, label) of the dashed edges from ops to subgraphs."""
    return [
        (src, int(k), label)
        for src, k, label in re.findall(
            r"^  (s\d+_op\d+) -> \S+ \[style=dashed, lhead=cluster_s(\d+), label=\"(\w+)\"\];",
            text,
            re.M,
        )
    ]


# graphviz lays out the unrolled T=50 fixtures (750-850 ops in one subgraph) in minutes
RENDERED_OPS = 400


@needs_graphviz
@pytest.mark.parametrize("path", all_fixtures(), ids=lambda p: p.stem)
def test_every_fixture_renders_with_graphviz(path):
    model = tflgraph.load(path)
    text = to_dot(model)
    assert text == to_dot(tflgraph.load(path))  # deterministic
    ops = sum(len(sg.operators) for sg in model.subgraphs)
    assert len(re.findall(r"^    s\d+_op\d+ \[", text, re.M)) == ops
    refs = sum(len(op.subgraphs()) for sg in model.subgraphs for op in sg.operators)
    assert len(links(text)) == refs
    if ops > RENDERED_OPS:
        return
    svg = render(text, "svg")
    assert svg.lstrip().startswith(b"<?xml") and b"</svg>" in svg
    for k in range(len(model.subgraphs)):
        assert f"<title>cluster_s{k}</title>" in svg.decode()


def test_while_body_ops_are_a_cluster_linked_to_the_while():
    model = tflgraph.load(fixture("k3_lstm"))
    text = to_dot(model)
    (while_op,) = model.main.ops_of_type("WHILE")
    cond, body = while_op.options["cond_subgraph_index"], while_op.options["body_subgraph_index"]
    kc, kb = model.subgraphs.index(cond), model.subgraphs.index(body)
    assert sorted(links(text)) == sorted([("s0_op1", kc, "cond"), ("s0_op1", kb, "body")])
    body_ops = [label.split("\\n")[0] for label in node_labels(cluster(text, kb))]
    assert body_ops == [op.type for op in body.operators]
    assert {"FULLY_CONNECTED", "SPLIT", "LOGISTIC", "TANH"} <= set(body_ops)
    assert f'label="subgraph {kb}: {body.name} ({len(body.operators)} ops)"' in text


def test_labels_fold_constants_and_show_options_shapes_and_dtypes():
    model = tflgraph.load(fixture("mlp"))
    text = to_dot(model)
    labels = node_labels(cluster(text, 0))
    fc1, fc2, softmax = labels
    assert fc1.startswith("FULLY_CONNECTED\\nact=RELU\\n#1 ")
    assert "[32,16] float32, 2.0 KiB" in fc1 and "[32] float32, 128 B" in fc1
    assert "act=" not in fc2  # NONE is the default and not shown
    assert softmax == "SOFTMAX\\nbeta=1"  # the schema default is 0
    # constants are labels, not nodes or edges; activations are edges with shape and dtype
    assert "[32,16]" not in "".join(re.findall(r"-> .*", text))
    assert re.search(r's0_in0 -> s0_op0 \[label="\[1,16\] float32", tooltip="serving_default', text)
    assert 's0_op0 -> s0_op1 [label="[1,32] float32"' in text
    assert re.search(r's0_out0 \[shape=ellipse.*label="output 0: StatefulPartitionedCall', text)


def if_model() -> Model:
    """main: IF(flag, x) with then = RELU(x) and else = TANH(x)."""
    m = Model()
    main = m.add_subgraph("main")
    branches = []
    for name, op_type in (("then", "RELU"), ("else", "TANH")):
        sg = m.add_subgraph(name)
        x, y = sg.new_tensor(f"{name}_x", (3,)), sg.new_tensor(f"{name}_y", (3,))
        sg.add_op(op_type, [x], [y])
        sg.inputs, sg.outputs = [x], [y]
        branches.append(sg)
    flag = main.new_tensor("flag", (), "bool")
    x, y = main.new_tensor("x", (3,)), main.new_tensor("y", (3,))
    opts = new_options(
        "IfOptions", then_subgraph_index=branches[0], else_subgraph_index=branches[1]
    )
    main.add_op("IF", [flag, x], [y], options=opts)
    main.inputs, main.outputs = [flag, x], [y]
    return m


def test_if_branches_and_subgraph_selection():
    m = if_model()
    text = to_dot(m)
    assert sorted(links(text)) == [("s0_op0", 1, "then"), ("s0_op0", 2, "else")]
    assert node_labels(cluster(text, 1)) == ["RELU"] and node_labels(cluster(text, 2)) == ["TANH"]
    only_else = to_dot(m, 2)
    assert "cluster_s0" not in only_else and "cluster_s1" not in only_else
    assert node_labels(cluster(only_else, 2)) == ["TANH"]
    assert to_dot(m, 0) == to_dot(m, "all")  # subgraph 0 runs both branches
    if shutil.which("dot"):
        assert b"<title>cluster_s2</title>" in render(text, "svg")


def test_call_once_links_its_init_subgraph():
    model = tflgraph.load(fixture("resource_vars"))
    (call,) = model.main.ops_of_type("CALL_ONCE")
    k = model.subgraphs.index(call.subgraphs()[0])
    assert [(k2, label) for _, k2, label in links(to_dot(model))] == [(k, "init")]


def test_unread_state_and_names_are_escaped():
    m = Model()
    sg = m.add_subgraph('quote"and\\slash')
    state = sg.new_tensor('h"0', (1, 2), is_variable=True)
    c = sg.new_constant(np.ones((1, 2), np.float32), "one")
    out = sg.new_tensor("out", (1, 2))
    sg.add_op("ADD", [state, c], [out], options={})
    sg.outputs = [out]
    text = to_dot(m)
    assert 'label="subgraph 0: quote\\"and\\\\slash (1 ops)"' in text
    assert re.search(r's0_v0 \[shape=diamond, label="h\\"0\\n\[1,2\] float32"\]', text)
    if shutil.which("dot"):
        render(text, "svg")


# --------------------------------------------------------------------------- CLI


def test_cli_dot_stdout_files_and_errors(tmp_path):
    r = tflgraph_cli("dot", fixture("k3_lstm"), "--subgraph", "2")
    assert r.returncode == 0 and r.stdout.startswith("digraph tflgraph {")
    assert "cluster_s2" in r.stdout and "cluster_s0" not in r.stdout
    r = tflgraph_cli("dot", fixture("mlp"), "-o", tmp_path / "g.dot")
    assert r.returncode == 0 and (tmp_path / "g.dot").read_text() == to_dot(
        tflgraph.load(fixture("mlp"))
    )
    for args, message in [
        (("--subgraph", "7"), "subgraph 7 does not exist (the model has 3)"),
        (("--subgraph", "body"), "--subgraph 'body' is no subgraph's name: give an index, 'all'"),
        (("-o", tmp_path / "g.jpg"), "unknown graph format .jpg"),
    ]:
        r = tflgraph_cli("dot", fixture("k3_lstm"), *args)
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_small_constants_show_their_values_large_ones_their_size():
    model = tflgraph.load(fixture("k3_lstm"))
    text = to_dot(model)
    (slice_label,) = [x for x in node_labels(cluster(text, 0)) if x.startswith("STRIDED_SLICE")]
    # begin, end and strides of the slice that takes the last step
    assert re.search(r"#1 \S+: \[3\] int32 = \[-1,0,0\]", slice_label), slice_label
    assert re.search(r"#3 \S+: \[3\] int32 = \[1,1,1\]", slice_label), slice_label
    body = cluster(text, 2)
    assert re.search(r'label="ADD\\n#1 \S+: \[\] int32 = 1"', body)  # the step counter's +1
    assert "float32, 64 B" in text  # 16 floats: over the limit, shown by size
    m = Model()
    sg = m.add_subgraph("main")
    x, y = sg.new_tensor("x", (3,)), sg.new_tensor("y", (3,))
    sg.add_op("SUB", [sg.new_constant(np.float32(1.0), "one"), x], [y], options={})
    sg.inputs, sg.outputs = [x], [y]
    assert "#0 one: [] float32 = 1" in to_dot(m)


def test_while_operands_have_edges_to_the_body_inputs_they_become():
    model = tflgraph.load(fixture("k3_lstm"))
    (while_op,) = model.main.ops_of_type("WHILE")
    body = while_op.options["body_subgraph_index"]
    kb = model.subgraphs.index(body)
    text = to_dot(model)
    edges = re.findall(rf"^  s0_op1 -> s{kb}_in(\d+) \[style=dotted.*label=\"#(\d+)\"", text, re.M)
    assert [(int(a), int(b)) for a, b in edges] == [(i, i) for i in range(len(body.inputs))]
    if shutil.which("dot"):
        render(text, "svg")


def test_subgraph_by_name():
    m = if_model()
    assert to_dot(m, "else") == to_dot(m, 2)
    r = tflgraph_cli(
        "dot", fixture("k3_lstm"), "--subgraph", tflgraph.load(fixture("k3_lstm")).subgraphs[2].name
    )
    assert r.returncode == 0 and "cluster_s2" in r.stdout and "cluster_s0" not in r.stdout


def test_dot_after_highlights_the_ops_the_pass_added(tmp_path):
    from tflgraph.pipeline import run_passes
    from tflgraph.tools.dot import ADDED_STYLE, dot_after

    model = tflgraph.load(fixture("k3_lstm"))
    before = set(model.main.iter_ops())
    path = tmp_path / "after.dot"
    specs = [f"fuse-lstm={path}", f"cleanup={tmp_path / 'cleanup.dot'}"]
    hook = dot_after(specs, ["fuse-lstm", "cleanup"], str(tmp_path / "o.tflite"), model)
    run_passes(model, ["fuse-lstm", "cleanup"], after_pass=hook, fixed_point=False)
    bold = re.findall(
        r"^\s+s\d+_op\d+ \[shape=box" + re.escape(ADDED_STYLE) + r', label="(\w+)',
        path.read_text(),
        re.M,
    )
    added = [op.type for op in model.main.operators if op not in before]
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in bold and bold == added
    assert "penwidth" not in (tmp_path / "cleanup.dot").read_text()  # cleanup added no op


@needs_graphviz
def test_cli_dot_renders_svg_and_png(tmp_path):
    assert tflgraph_cli("dot", fixture("k3_lstm"), "-o", tmp_path / "g.svg").returncode == 0
    assert b"<svg" in (tmp_path / "g.svg").read_bytes()
    assert tflgraph_cli("dot", fixture("mlp"), "-o", tmp_path / "g.png").returncode == 0
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_without_graphviz_is_a_clear_error(tmp_path):
    r = tflgraph_cli("dot", fixture("mlp"), "-o", tmp_path / "g.svg", env={"PATH": ""})
    assert r.returncode == 2
    assert r.stderr.startswith("tflgraph: error: cannot write svg: Graphviz 'dot' is not")
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "g.svg").exists()
    # a .dot file needs no Graphviz
    r = tflgraph_cli("dot", fixture("mlp"), "-o", tmp_path / "g.dot", env={"PATH": ""})
    assert r.returncode == 0


def test_optimize_dot_after_a_pass(tmp_path):
    src = tmp_path / "in.tflite"
    src.write_bytes(tflgraph.to_bytes(tflgraph.load(fixture("dead_mlp"))))
    out = tmp_path / "out.tflite"
    r = tflgraph_cli("optimize", src, "-o", out, "--passes", "cleanup", "--dot-after", "cleanup",
                     "--dot-after", f"cleanup={tmp_path / 'custom.dot'}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    want = to_dot(tflgraph.load(out))
    assert (tmp_path / "custom.dot").read_text() == want
    assert not (tmp_path / "out.cleanup.dot").exists()  # the later spec for a pass wins
    r = tflgraph_cli("optimize", src, "-o", out, "--passes", "cleanup", "--dot-after", "cleanup")
    assert r.returncode == 0 and (tmp_path / "out.cleanup.dot").read_text() == want
    r = tflgraph_cli("optimize", src, "-o", out, "--passes", "cleanup", "--dot-after", "fuse")
    assert r.returncode == 2 and "--dot-after fuse: not in the pipeline (cleanup)" in r.stderr
    r = tflgraph_cli("optimize", src, "-o", out, "--passes", "cleanup",
                     "--dot-after", "cleanup=g.svg", env={"PATH": ""})  # fmt: skip
    assert r.returncode == 2 and "Graphviz 'dot' is not installed" in r.stderr
    assert os.path.getsize(out) > 0


def test_cli_dot_after_highlights_what_the_pass_added(tmp_path):
    out = tmp_path / "o.tflite"
    r = tflgraph_cli("optimize", fixture("k3_lstm"), "-o", out, "--passes", "fuse-lstm",
                     "--no-verify", "--dot-after", "fuse-lstm")  # fmt: skip
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "o.fuse-lstm.dot").read_text()
    assert re.search(r'penwidth=2.*label="UNIDIRECTIONAL_SEQUENCE_LSTM', text)
