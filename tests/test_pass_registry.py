"""Registering passes: a name that a built-in or another pass has is refused unless
override=True; --load files import their neighbours; unknown names get a suggestion."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from helpers import fixture

import tflgraph
from tflgraph import Any, Op, cli
from tflgraph.pipeline import PIPELINES, PassError, get_pass, load_pass_file, register, unregister

CLEANUP = '''
import tflgraph


@tflgraph.register("cleanup"{extra})
class MyCleanup(tflgraph.Pass):
    """Stamp the description instead of cleaning up."""

    def run(self, model):
        changed = model.description != "mine"
        model.description = "mine"
        return changed
'''


@pytest.fixture
def forget():
    """Names to unregister after the test (a pass that an override replaced comes back)."""
    names: list[str] = []
    yield names
    for name in reversed(names):
        unregister(name)


def write(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


def optimize(tmp_path, *args) -> int:
    out = tmp_path / "out.tflite"
    return cli.main(["optimize", str(fixture("mlp")), "-o", str(out), "--no-verify", "-q", *args])


def test_a_loaded_pass_named_like_a_built_in_is_refused(tmp_path, capsys):
    user = write(tmp_path / "mine.py", CLEANUP.format(extra=""))
    assert optimize(tmp_path, "--load", str(user), "--passes", "cleanup") == 2
    err = capsys.readouterr().err
    assert (
        f"{user}:5: failed to load (PassError: pass name 'cleanup' is taken by the built-in" in err
    )
    assert "register('cleanup', override=True) to replace it" in err
    assert get_pass("cleanup").__module__ == "tflgraph.passes.cleanup"


def test_override_replaces_a_built_in_until_it_is_unregistered(tmp_path, forget):
    builtin = get_pass("cleanup")
    user = write(tmp_path / "mine.py", CLEANUP.format(extra=", override=True"))
    forget.append("cleanup")
    assert optimize(tmp_path, "--load", str(user), "--passes", "cleanup") == 0
    assert tflgraph.load(tmp_path / "out.tflite").description == "mine"
    assert get_pass("cleanup").__name__ == "MyCleanup"
    unregister("cleanup")
    assert get_pass("cleanup") is builtin


def test_a_built_in_not_imported_yet_is_protected_too():
    code = textwrap.dedent("""
        import sys
        import tflgraph
        assert "tflgraph.passes.fuse_lstm" not in sys.modules

        class Mine(tflgraph.Pass):
            def run(self, model):
                return False

        try:
            tflgraph.register("fuse-lstm")(Mine)
        except tflgraph.PassError as e:
            print(e)
        tflgraph.register("fuse-lstm", override=True)(Mine)
        import tflgraph.passes.fuse_lstm  # the built-in module imported later keeps away
        from tflgraph.pipeline import get_pass
        print(get_pass("fuse-lstm").__name__)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "pass name 'fuse-lstm' is taken by the built-in pass in tflgraph.passes.fuse_lstm; pick "
        "another name, or register('fuse-lstm', override=True) to replace it",
        "Mine",
    ]


def test_two_files_with_one_pass_name_are_refused(tmp_path, forget, capsys):
    stamp = CLEANUP.replace('"cleanup"', '"stamp"').format(extra="")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = write(tmp_path / "a" / "passes.py", stamp)
    second = write(tmp_path / "b" / "passes.py", stamp)
    forget.append("stamp")
    assert load_pass_file(str(first)) == ["stamp"]
    assert load_pass_file(str(first)) == []  # the same file again: the same definition
    with pytest.raises(PassError, match="pass name 'stamp' is taken by the pass MyCleanup from "
                       "tflgraph_user_passes_"):  # fmt: skip
        load_pass_file(str(second))


def test_rule_passes_override_through(forget):
    pattern = Op("MUL", Any(), Any())

    def noop(m):
        return "never"

    with pytest.raises(PassError, match="pass name 'cleanup' is taken"):
        tflgraph.rule("cleanup", pattern)(noop)
    forget.append("cleanup")
    tflgraph.rule("cleanup", pattern, override=True)(noop)
    assert get_pass("cleanup") is noop.pass_class
    with pytest.raises(PassError, match="pass name 'cleanup' is taken by the pass Rule_noop"):

        @register("cleanup")
        class Other(tflgraph.Pass):
            def run(self, model):
                return False


def test_load_puts_the_files_folder_on_sys_path(tmp_path, forget):
    write(tmp_path / "shared_rule_bits_for_test.py", "PATTERN_TYPES = ('MUL',)\n")
    user = write(tmp_path / "rules.py", '''
        import tflgraph
        from shared_rule_bits_for_test import PATTERN_TYPES


        @tflgraph.rule("imports-a-neighbour", tflgraph.Op(PATTERN_TYPES))
        def rewrite(m):
            return "left alone"
    ''')  # fmt: skip
    forget.append("imports-a-neighbour")
    assert load_pass_file(str(user)) == ["imports-a-neighbour"]


@pytest.mark.parametrize(
    "passes, hint",
    [("fuse-lstn", "(did you mean fuse-lstm?)"), ("defualt", "(did you mean default?)"),
     ("my-own-pass", "; a pass of your own: --load FILE.py")],
)  # fmt: skip
def test_an_unknown_pass_name_suggests_a_close_one_or_load(passes, hint, tmp_path, capsys):
    assert optimize(tmp_path, "--passes", passes) == 2
    err = capsys.readouterr().err
    assert f"unknown pass {passes!r}" in err and hint in err and "--load FILE.py" in err
    assert len(err.strip().splitlines()) == 1


def test_run_passes_expands_pipeline_names():
    """run_passes(model, ["default"]) runs the default pipeline, as optimize does."""
    model = tflgraph.load(fixture("k3_lstm"))
    records = tflgraph.run_passes(model, ["default"])
    assert [r.name for r in records if r.iteration == 1] == PIPELINES["default"]
    assert model.op_counts().get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
