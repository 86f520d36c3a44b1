"""Pass options are typed fields (tflgraph.Option) that run_passes and `optimize --pass-option
PASS.FIELD=VALUE` set generically: the CLI has no per-pass flags."""

from __future__ import annotations

import re

import pytest
from helpers import fixture

import tflgraph
from tflgraph import cli
from tflgraph.pipeline import PassError, get_pass, parse_pass_options, run_passes, unregister

STAMP = '''
"""A pass with one option of each type, which writes their values into the description."""
import tflgraph
from tflgraph import Option


@tflgraph.register("stamp-options")
class StampOptions(tflgraph.Pass):
    """Write the option values into the model description."""

    count = Option(3, "how many")
    scale = Option(0.5)
    label = Option("x", "a label")
    loud = Option(False)

    def run(self, model):
        text = f"{self.count!r} {self.scale!r} {self.label!r} {self.loud!r}"
        changed = model.description != text
        model.description = text
        return changed
'''


@pytest.fixture
def stamp(tmp_path):
    """The path of a file that registers `stamp-options` (unregistered afterwards)."""
    path = tmp_path / "stamp.py"
    path.write_text(STAMP)
    yield path
    unregister("stamp-options")


def optimize(tmp_path, *args) -> tuple[int, str]:
    out = tmp_path / "out.tflite"
    code = cli.main(["optimize", str(fixture("mlp")), "-o", str(out), "--no-verify", "-q", *args])
    return code, tflgraph.load(out).description if code == 0 else ""


def test_the_cli_sets_options_of_every_type(stamp, tmp_path):
    base = ["--load", str(stamp), "--passes", "stamp-options"]
    assert optimize(tmp_path, *base) == (0, "3 0.5 'x' False")
    values = ["count=7", "scale=2", "label=a=b", "loud=YES"]
    set_all = [s for v in values for s in ("--pass-option", f"stamp-options.{v}")]
    assert optimize(tmp_path, *base, *set_all) == (0, "7 2.0 'a=b' True")


@pytest.mark.parametrize(
    "text, value",
    [("true", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("No", False)],
)
def test_bool_options_parse_the_usual_spellings(text, value):
    assert parse_pass_options([f"fuse-lstm.stateful_streaming={text}"]) == {
        "fuse-lstm": {"stateful_streaming": value}
    }


@pytest.mark.parametrize(
    "option, message",
    [
        ("fuse-lstn.stateful_streaming=true", "unknown pass 'fuse-lstn'"),
        ("fuse-lstm.stateful_stream=true", "pass 'fuse-lstm' has no option 'stateful_stream' "
         "(did you mean stateful_streaming?); its options: stateful_streaming (a bool (true/"
         "false), default false)"),
        ("cleanup.anything=1", "pass 'cleanup' has no option 'anything'; it has no options"),
        ("fuse-lstm.stateful_streaming=maybe",
         "pass 'fuse-lstm': option stateful_streaming: 'maybe' is not a bool (true/false)"),
        ("stateful_streaming=true",
         "--pass-option 'stateful_streaming=true': want PASS.FIELD=VALUE"),
        ("fuse-lstm.stateful_streaming", "want PASS.FIELD=VALUE"),
    ],
)  # fmt: skip
def test_bad_pass_options_are_one_line_errors(option, message, tmp_path, capsys):
    code, _ = optimize(tmp_path, "--pass-option", option)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_bad_values_of_typed_options(stamp, tmp_path, capsys):
    base = ["--load", str(stamp), "--passes", "stamp-options", "--pass-option"]
    for option, message in [
        ("stamp-options.count=1.5", "option count: '1.5' is not an int"),
        ("stamp-options.scale=fast", "option scale: 'fast' is not a float"),
    ]:
        assert optimize(tmp_path, *base, option)[0] == 2
        assert message in capsys.readouterr().err


def test_an_option_for_a_pass_outside_the_pipeline_is_refused(tmp_path, capsys):
    code, _ = optimize(tmp_path, "--passes", "cleanup", "--pass-option",
                       "fuse-lstm.stateful_streaming=true")  # fmt: skip
    assert code == 2
    assert "options for pass 'fuse-lstm', which is not in the pipeline (cleanup)" in (
        capsys.readouterr().err
    )


def test_run_passes_checks_option_names_and_types():
    model = tflgraph.load(fixture("k3_lstm"))
    for options, message in [
        ({"stateful_streaming": 1}, "1 is not a bool"),
        ({"stateful_streaming": "maybe"}, "'maybe' is not a bool"),
        ({"statefull_streaming": True}, "did you mean stateful_streaming?"),
    ]:
        with pytest.raises(PassError, match=message):
            run_passes(model, ["fuse-lstm"], options={"fuse-lstm": options})
    assert "WHILE" in model.op_counts()  # refused before any pass ran


def test_options_are_declared_on_the_pass_class():
    option = get_pass("fuse-lstm").options()["stateful_streaming"]
    assert (option.name, option.type, option.default) == ("stateful_streaming", bool, False)
    assert option.carries_state
    p = get_pass("fuse-lstm")()
    p.stateful_streaming = "on"
    assert p.stateful_streaming is True and get_pass("fuse-lstm")().stateful_streaming is False
    with pytest.raises(TypeError, match="bool, int, float or str"):
        tflgraph.Option([1])


def test_the_default_value_given_explicitly_writes_the_same_bytes(tmp_path):
    out = tmp_path / "a.tflite"
    args = ["optimize", str(fixture("k3_lstm")), "--no-verify", "-q"]
    assert cli.main([*args, "-o", str(out)]) == 0
    explicit = tmp_path / "b.tflite"
    default = ["--pass-option", "fuse-lstm.stateful_streaming=false"]
    assert cli.main([*args, "-o", str(explicit), *default]) == 0
    assert out.read_bytes() == explicit.read_bytes()


def test_the_cli_has_no_per_pass_flags(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        optimize(tmp_path, "--stateful-streaming")
    assert e.value.code == 2
    assert "unrecognized arguments: --stateful-streaming" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["optimize", "--help"])
    flags = re.findall(r"(?<![\w-])--?[a-z][\w-]*", capsys.readouterr().out)
    assert "--pass-option" in flags and "--explain" in flags
    assert not [f for f in flags if "lstm" in f or "stream" in f]


def test_passes_lists_each_option_with_its_type_and_default(stamp, capsys):
    assert cli.main(["passes", "--load", str(stamp)]) == 0
    out = capsys.readouterr().out
    assert "option stateful_streaming: bool = false  LSTMs that start from zeros" in out
    assert "option count: int = 3  how many" in out and "option scale: float = 0.5" in out
    assert "option label: str = 'x'  a label" in out
    assert cli.main(["passes", "--markdown"]) == 0
    md = capsys.readouterr().out
    assert "Options (`tflgraph optimize --pass-option fuse-lstm.FIELD=VALUE`):" in md
    assert "- `stateful_streaming`: bool, default `false`. LSTMs that start" in md
