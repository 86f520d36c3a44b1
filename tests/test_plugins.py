"""User passes: the README example run as printed through the CLI, --load files, and plugins
installed through the `tflgraph.passes` entry-point group."""

from __future__ import annotations

import os
import re
import textwrap

import numpy as np
import pytest
from helpers import ROOT, assert_same_outputs, fixture, tflgraph_cli
from modelbuild import fc_mul_model

import tflgraph
from tflgraph.pipeline import BUILTIN_PASSES


def readme_example() -> str:
    """The first python block of the README section 'Write your own pass', as printed."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Write your own pass", 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def readme_pass(tmp_path_factory):
    path = tmp_path_factory.mktemp("readme") / "my_passes.py"
    path.write_text(readme_example())
    return path


def mlp_with_mul():
    """The converter's mlp.tflite with a MUL by a per-channel constant inserted between its
    second FULLY_CONNECTED (no fused activation) and the SOFTMAX."""
    model = tflgraph.load(fixture("mlp"))
    sg = model.main
    fc = sg.ops_of_type("FULLY_CONNECTED")[1]
    y = fc.outputs[0]
    scale = sg.new_constant(np.linspace(0.5, 2.0, y.shape[-1], dtype=np.float32), "scale")
    scaled = sg.new_tensor("scaled", y.shape)
    (softmax,) = sg.ops_of_type("SOFTMAX")
    sg.set_input(softmax, 0, scaled)
    sg.add_op("MUL", [y, scale], [scaled], options={})
    model.check()
    return model


CASES = {
    "ir_fc_mul": lambda: fc_mul_model(),
    "ir_scale_first": lambda: fc_mul_model(scale_first=True),
    "ir_scalar_scale": lambda: fc_mul_model(scale_shape=(1,)),
    "mlp_with_mul": mlp_with_mul,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_readme_example_folds_the_mul_as_printed(case, readme_pass, tmp_path):
    src, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    src.write_bytes(tflgraph.to_bytes(CASES[case]()))
    r = tflgraph_cli(
        "optimize", src, "-o", out, "--load", readme_pass,
        "--passes", "fold-mul-into-fc,cleanup", "--check-each",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    before, after = tflgraph.load(src), tflgraph.load(out)
    assert before.op_counts().get("MUL") == 1
    assert "MUL" not in after.op_counts()
    assert after.op_counts()["FULLY_CONNECTED"] == before.op_counts()["FULLY_CONNECTED"]
    assert [t.name for t in after.main.outputs] == [t.name for t in before.main.outputs]
    after.check()
    assert_same_outputs(src, out)


@pytest.mark.parametrize(
    "model, reason",
    [
        (lambda: fc_mul_model(act=1), "fused activation is RELU, want NONE"),
        (lambda: fc_mul_model(second_use=True), "want a single use"),
        (lambda: fc_mul_model(scale_shape=(2, 1)), "declined: not a float FC, or the scale"),
        (lambda: fc_mul_model(scale_shape=(1, 1, 4)), "declined: the MUL broadcasts"),
    ],
    ids=["relu", "second_use", "per_row_scale", "broadcasting_mul"],
)
def test_readme_example_leaves_near_misses_alone(model, reason, readme_pass, tmp_path):
    src, out = tmp_path / "in.tflite", tmp_path / "out.tflite"
    src.write_bytes(tflgraph.to_bytes(model()))
    r = tflgraph_cli(
        "optimize", src, "-o", out, "--load", readme_pass,
        "--passes", "fold-mul-into-fc", "--explain",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert reason in r.stdout
    assert tflgraph.load(out).op_counts() == tflgraph.load(src).op_counts()


PLUGIN = '''
"""A plugin pass found through the tflgraph.passes entry-point group."""
import tflgraph


class StampDescription(tflgraph.Pass):
    """Write a marker into the model description."""

    def run(self, model):
        if model.description == "stamped by a plugin":
            return False
        model.description = "stamped by a plugin"
        return True
'''


def install_plugin(tmp_path, source: str) -> dict:
    """A 'pip-installed' plugin (module + dist-info with entry_points.txt) in a folder; returns
    the environment that puts it on the path of a subprocess."""
    site = tmp_path / "site"
    dist = site / "tflgraph_demo_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "tflgraph_demo_plugin.py").write_text(source)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tflgraph-demo-plugin\n"
                                   "Version: 0.1\n")  # fmt: skip
    (dist / "entry_points.txt").write_text(
        "[tflgraph.passes]\nstamp-description = tflgraph_demo_plugin:StampDescription\n"
    )
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_entry_point_plugin_is_found_listed_and_run(tmp_path):
    env = install_plugin(tmp_path, PLUGIN)
    listed = tflgraph_cli("passes", env=env)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^stamp-description\s+Write a marker", listed.stdout, re.M)
    out = tmp_path / "out.tflite"
    r = tflgraph_cli("optimize", fixture("mlp"), "-o", out, "--passes",
                     "stamp-description,cleanup", env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "changed the model: stamp-description" in r.stdout
    assert tflgraph.load(out).description == "stamped by a plugin"
    # without the plugin on the path the name is unknown: one line, exit 2
    r = tflgraph_cli("optimize", fixture("mlp"), "-o", out, "--passes", "stamp-description")
    assert r.returncode == 2
    assert r.stderr.startswith("tflgraph: error: unknown pass 'stamp-description'")
    assert len(r.stderr.strip().splitlines()) == 1


def test_broken_plugin_is_a_one_line_error(tmp_path):
    env = install_plugin(tmp_path, "raise ImportError('needs numpy 9')\n")
    r = tflgraph_cli("optimize", fixture("mlp"), "-o", tmp_path / "o.tflite", "--passes",
                     "stamp-description", env=env)  # fmt: skip
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert (
        "plugin pass 'stamp-description' (tflgraph_demo_plugin:StampDescription) failed to "
        "load: ImportError: needs numpy 9"
    ) in r.stderr


def test_load_registers_a_pass_class(tmp_path):
    user = tmp_path / "stamp.py"
    user.write_text(PLUGIN + '\ntflgraph.register("stamp")(StampDescription)\n')
    out = tmp_path / "out.tflite"
    r = tflgraph_cli("optimize", fixture("mlp"), "-o", out, "--load", user, "--passes", "stamp")
    assert r.returncode == 0, r.stderr
    assert tflgraph.load(out).description == "stamped by a plugin"
    assert_same_outputs(fixture("mlp"), out, exact=True)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such pass file"),
        ("raise RuntimeError('boom')", "failed to load (RuntimeError: boom)"),
        ("import tflgraph\n", "unknown pass 'fold-mul-into-fc'"),
    ],
    ids=["missing", "raises", "registers_nothing"],
)
def test_bad_pass_files_are_one_line_errors(content, message, tmp_path):
    user = tmp_path / "user.py"
    if content is not None:
        user.write_text(textwrap.dedent(content))
    r = tflgraph_cli("optimize", fixture("mlp"), "-o", tmp_path / "o.tflite", "--load", user,
                     "--passes", "fold-mul-into-fc")  # fmt: skip
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.tflite").exists()


def test_docs_passes_md_lists_the_registered_passes_and_pipelines():
    """docs/passes.md names the same passes and pipelines as `tflgraph passes --markdown`
    (the text of each docstring may lag; regenerate the file to refresh it)."""
    r = tflgraph_cli("passes", "--markdown")
    assert r.returncode == 0, r.stderr
    for name in BUILTIN_PASSES:
        assert f"\n## `{name}`\n" in r.stdout

    def outline(text):
        return [line for line in text.splitlines() if line.startswith(("## ", "| `"))]

    doc = (ROOT / "docs" / "passes.md").read_text()
    assert outline(doc) == outline(r.stdout), (
        "docs/passes.md is stale: run `tflgraph passes --markdown > docs/passes.md`"
    )


def test_markdown_includes_loaded_passes(readme_pass):
    r = tflgraph_cli("passes", "--markdown", "--load", readme_pass)
    assert r.returncode == 0, r.stderr
    assert "\n## `fold-mul-into-fc`\n\nMUL(FC(x, W, b), s) -> FC(x, W * s[:, None]" in r.stdout
