"""Command-line front end: `tflgraph optimize | quantize | inspect | dot | verify | passes`.

Every user-facing failure is one line on stderr and exit code 2, and every warning one line
(`_say`: a message's own line breaks, e.g. in a runtime's or a plugin's text, are joined);
nothing half-written is left behind (outputs are written atomically) and the input is never
modified.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from tflgraph import __version__
from tflgraph.errors import TflgraphError
from tflgraph.io.reader import load
from tflgraph.io.writer import to_bytes, write_atomic
from tflgraph.objective import keep_within
from tflgraph.pipeline import (
    all_passes,
    carries_state,
    describe_options,
    get_pass,
    load_pass_file,
    parse_pass_options,
    resolve,
    run_passes,
    state_option_passes,
)
from tflgraph.quant.check import TOLERANCE
from tflgraph.quant.quantize import IO_KINDS, LOOP_KINDS, quantize
from tflgraph.reference.equivalence import can_evaluate, check_models
from tflgraph.rnn.reroll_requant import output_steps
from tflgraph.runtime import tflm_check
from tflgraph.runtime.arena import OBJECTIVES
from tflgraph.runtime.targets import (
    SHAPE_PROBLEMS,
    TARGETS,
    hybrid_layers,
    shape_problems,
    unsupported_ops,
)
from tflgraph.runtime.verify import tflm_blocker, verify
from tflgraph.tools.dot import dot_after, to_dot
from tflgraph.tools.dot import write as write_dot
from tflgraph.tools.passdoc import passes_markdown
from tflgraph.tools.summary import describe, format_description, format_summary_table, summary


def _say(kind: str, message: str) -> None:
    """'tflgraph: KIND: MESSAGE' as one line on stderr, ended by a newline (line breaks inside
    the message become '; '); stdout is flushed first, so that where both go to one file the
    lines keep their order and never share a line."""
    text = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
    sys.stdout.flush()
    print(f"tflgraph: {kind}: {text}", file=sys.stderr, flush=True)


def _die(message: str, code: int = 2) -> int:
    _say("error", message)
    return code


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other failure
        command = self.prog.split()[-1]
        _say("error", f"{message} (see tflgraph {command} --help)" if " " in self.prog else message)
        sys.exit(2)


def _quantize_options(p: argparse.ArgumentParser) -> None:
    """The options `quantize` and `optimize --quantize` share."""
    p.add_argument(
        "--io",
        choices=IO_KINDS,
        default="int8",
        help="int8 inputs and outputs (default), or float ones with QUANTIZE/DEQUANTIZE",
    )
    p.add_argument(
        "--loops",
        choices=LOOP_KINDS,
        default="auto",
        help="what WHILE bodies (GRU, SimpleRNN, custom cells) compute in: int8, int16 "
        "activations and loop values with int8 weights (16x8: about 3x less error, LiteRT and "
        "TFLM within 1 LSB), or auto (default): int8 for each loop measured within the "
        "tolerance and 1 LSB on the held-out samples, else int16",
    )
    p.add_argument(
        "--held-out",
        metavar="DATA.npz",
        help="inputs to check the int8 model on (default: the last fifth of the calibration "
        "samples, which then do not calibrate)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        metavar="F",
        help=f"the int8 check's bound: F x the float output's range (default {TOLERANCE:g})",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tflgraph", description="Graph-rewriting compiler for TFLite models.")
    p.add_argument("--version", action="version", version=f"tflgraph {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    o = sub.add_parser("optimize", help="rewrite a model and write a compact .tflite")
    o.add_argument("input")
    o.add_argument("stray_output", nargs="?", help=argparse.SUPPRESS)  # `optimize in out`
    o.add_argument("-o", "--output", help="output path (default: INPUT with .opt.tflite)")
    o.add_argument("--in-place", action="store_true", help="allow OUTPUT to be the input")
    o.add_argument(
        "--passes",
        default="default",
        help="comma-separated passes or pipelines; 'none' = plain load/save",
    )
    o.add_argument(
        "--load",
        action="append",
        default=[],
        metavar="FILE.py",
        help="import a Python file that registers passes",
    )
    o.add_argument("--report", metavar="JSON", help="write a JSON report here")
    o.add_argument(
        "--check-each", action="store_true", help="check graph invariants after every pass"
    )
    o.add_argument("--explain", action="store_true", help="print why passes left candidates alone")
    o.add_argument(
        "--pass-option",
        action="append",
        default=[],
        metavar="PASS.FIELD=VALUE",
        help="set an option of a pass, e.g. fuse-lstm.stateful_streaming=true (`tflgraph "
        "passes` lists them); repeatable",
    )
    o.add_argument(
        "--dot-after",
        action="append",
        default=[],
        metavar="PASS[=PATH]",
        help="write the graph as DOT after PASS runs (after its last run when the pipeline "
        "repeats) to PATH (.dot, or .svg/.png through Graphviz), default OUTPUT-stem.PASS.dot "
        "next to the output; repeatable",
    )
    o.add_argument(
        "--target",
        choices=TARGETS,
        default="any",
        help="runtime the output must run on: emit only ops it has (default any: LiteRT and "
        "TFLM both)",
    )
    o.add_argument(
        "--batch",
        type=int,
        default=0,
        metavar="N",
        help="freeze a batch-None model's batch to N (freeze-shapes.batch; the check then runs "
        "the input file with its batch-None inputs resized to N)",
    )
    o.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="balanced",
        help="what must not grow from the input to the output, measured (TFLM's arena when "
        "the target includes TFLM and tflite-micro is installed): balanced (default) neither "
        "the arena nor the file, ram the arena, size the file, latency nothing; a result that "
        "grows one is replaced by the last intermediate result that does not",
    )
    o.add_argument("--quiet", "-q", action="store_true")
    o.add_argument(
        "--verify",
        dest="verify",
        action="store_true",
        default=None,
        help="compare the result with the input in LiteRT/TFLM before writing; refuse to write "
        "if outputs differ (default: on when ai-edge-litert is installed)",
    )
    o.add_argument("--no-verify", dest="verify", action="store_false", help="skip that check")
    o.add_argument(
        "--rtol",
        type=float,
        default=None,
        metavar="R",
        help="the check's bound |B - A| <= R * max(1, max|A|) (default 1e-5), for passes whose "
        "result differs within a stated error (your own, say)",
    )
    o.add_argument(
        "--requantize",
        type=float,
        metavar="STEPS",
        help="re-roll int8 unrolled RNNs whose steps have their own quantization parameters "
        "(reroll.requantize): one set per recurring value, the union of the steps' ranges, kept "
        "when every output stays within STEPS quantization steps of the input model's (one "
        "step = 1/255 of an int8 output's range; a float output's: the scale its DEQUANTIZE "
        "reads) in LiteRT and TFLM; the check before writing then allows STEPS too, and the "
        "summary prints the error measured",
    )
    o.add_argument(
        "--inputs",
        metavar="DATA.npz",
        help="the inputs the check runs both models on (as `verify --inputs`: one array per "
        "model input, keyed by name or position, samples on the first axis), and --requantize's "
        "too; default: seeded random inputs over each input's whole range",
    )
    o.add_argument(
        "--allow-unverified",
        action="store_true",
        help="write the result even when no runtime and no reference evaluation can check it",
    )
    o.add_argument(
        "--quantize",
        metavar="DATA.npz",
        help="then quantize the optimized model to int8 (what `tflgraph quantize "
        "--calibration DATA.npz` does: LSTM loops fused first become int8 fused LSTMs)",
    )
    _quantize_options(o)

    q = sub.add_parser("quantize", help="full-integer (int8) quantization of a float model")
    q.add_argument("input")
    q.add_argument("-o", "--output", help="output path (default: INPUT with .int8.tflite)")
    q.add_argument(
        "--calibration",
        required=True,
        metavar="DATA.npz",
        help="representative inputs: one array per model input, keyed by input name or "
        "position, samples on the first axis",
    )
    _quantize_options(q)
    q.add_argument(
        "--no-verify", dest="verify", action="store_false", help="skip the runtime check"
    )

    v = sub.add_parser("verify", help="run two models on the same inputs and compare outputs")
    v.add_argument("a", metavar="A.tflite", help="the reference model")
    v.add_argument("b", metavar="B.tflite", help="the model to check against A")
    v.add_argument("--runtime", choices=("litert", "tflm", "both"), default="both")
    v.add_argument("--samples", type=int, default=5, help="random samples (default 5)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--atol", type=float, help="absolute tolerance (replaces the defaults)")
    v.add_argument("--rtol", type=float, help="tolerance relative to max|A| (ditto)")
    v.add_argument("--inputs", metavar="DATA.npz", help="inputs keyed by input name or position")
    v.add_argument("--timeout", type=float, default=60.0, help="seconds per model and runtime")
    v.add_argument("--json", action="store_true", help="machine-readable report")
    v.add_argument(
        "--hybrid-as-float",
        action="store_true",
        help="compute A's hybrid layers (int8 weights, float activations) with their "
        "dequantized weights, the float layers they stand for (what optimize --target tflm "
        "checks its result against)",
    )

    i = sub.add_parser("inspect", help="describe a model")
    i.add_argument("input")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument(
        "--target",
        choices=TARGETS,
        help="also say whether this runtime runs the model: the ops it lacks; for tflm (and "
        "any) TFLM itself allocates it and invokes it once when tflite-micro is installed",
    )
    i.add_argument(
        "--strict", action="store_true", help="exit 1 when the --target runtime cannot run it"
    )
    i.add_argument(
        "--timeout",
        type=float,
        default=tflm_check.TIMEOUT,
        help=f"seconds for TFLM's invoke (default {tflm_check.TIMEOUT:g})",
    )

    d = sub.add_parser("dot", help="draw a model as a Graphviz graph")
    d.add_argument("input")
    d.add_argument(
        "-o", "--output", help="OUT.dot, OUT.svg or OUT.png (svg/png need Graphviz); default stdout"
    )
    d.add_argument("--subgraph", default="all", help="N (with the subgraphs it runs) or 'all'")

    ps = sub.add_parser("passes", help="list the registered passes")
    ps.add_argument(
        "--markdown", action="store_true", help="print docs/passes.md (from the pass docstrings)"
    )
    ps.add_argument("--load", action="append", default=[], metavar="FILE.py")
    return p


SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for `yes | head`


def main(argv: list[str] | None = None) -> int:
    """Run one command. Output into a pipe that closes early (`tflgraph inspect m | head`)
    ends the command quietly with exit code 141, as a program killed by SIGPIPE would."""
    args = build_parser().parse_args(argv)
    try:
        code = {
            "optimize": cmd_optimize,
            "quantize": cmd_quantize,
            "inspect": cmd_inspect,
            "passes": cmd_passes,
            "verify": cmd_verify,
            "dot": cmd_dot,
        }[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return SIGPIPE_EXIT
    except TflgraphError as e:
        return _die(str(e))
    except KeyboardInterrupt:
        return _die("interrupted", 130)
    except Exception as e:  # a bug: still one line (TFLGRAPH_DEBUG=1 shows the traceback)
        if os.environ.get("TFLGRAPH_DEBUG"):
            raise
        return _die(
            f"internal error: {type(e).__name__}: {e} (set TFLGRAPH_DEBUG=1 for the "
            "traceback and please report it)",
            70,
        )


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _default_output(path: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}.opt{ext or '.tflite'}"


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def cmd_optimize(args) -> int:
    if args.stray_output:  # the output is an option, not a second path
        return _die(
            f"unrecognized argument {args.stray_output!r}: the output path goes after -o "
            f"(tflgraph optimize {args.input} -o {args.stray_output})"
        )
    output = args.output or (args.input if args.in_place else _default_output(args.input))
    if _same_file(args.input, output) and not args.in_place:
        return _die(f"{output}: output is the input file; pass --in-place to overwrite it")
    if why := _output_problem(output):
        return _die(why)
    for path in args.load:
        load_pass_file(path)
    names = resolve(args.passes)
    options = parse_pass_options(args.pass_option)
    if args.batch:
        options.setdefault("freeze-shapes", {})["batch"] = args.batch
    if args.requantize is not None:
        options.setdefault("reroll", {})["requantize"] = args.requantize
        if args.inputs:
            options["reroll"]["check_inputs"] = args.inputs
    batch = options.get("freeze-shapes", {}).get("batch", 0)
    args.reference = _with_batch(args.input, batch) if batch else args.input
    model = load(args.input)
    if model.dropped_fields:  # one line, however many tables carried them
        _say(
            "warning",
            f"{args.input}: fields this schema does not know and cannot keep are not "
            f"written: {', '.join(dict.fromkeys(model.dropped_fields))}",
        )
    before = summary(model, os.path.getsize(args.input))
    hybrid_input = bool(hybrid_layers(model))  # before the passes change the model
    after_pass = dot_after(args.dot_after, names, output, model)
    records = run_passes(
        model,
        names,
        check_each=args.check_each,
        explain=args.explain,
        after_pass=after_pass,
        options=options,
        target=args.target,
    )
    data = to_bytes(model)  # serialized once: measured, verified, then written as it is
    kept = None
    if names:
        kept = _keep_within_objective(args, data, names, options, records)
        if kept.data is not data:
            data, model = kept.data, load(kept.data)
    checked, hybrid_source = None, None
    if hybrid_input and not hybrid_layers(model):
        # dequantize-hybrid gave the hybrid layers float weights: the result is checked
        # against the original with those weights, what the hybrid kernels approximate
        hybrid_source, args.reference = args.reference, _with_float_weights(args.reference)
    if _verification_wanted(args):
        stateful = carries_state(options)
        refused, checked = _verify_before_writing(
            args, data, names, records, output, stateful, hybrid_source
        )
        if refused:
            return refused
    elif args.verify is None:  # no runtime installed: the reference interpreter judges
        ran = _ran(args, names)
        refused = _check_on_reference(
            args, data, "no runtime installed", records, output, ran, hybrid_source is not None
        )
        if refused:
            return refused
    if args.quantize:  # the optimized model, verified above, is the float reference
        source = data if data is not None else to_bytes(model)
        refused, result, data = _quantized(
            args, source, args.quantize, output, args.verify is not False, args.quiet
        )
        if refused:
            return refused
        model = result.model
    try:
        write_atomic(output, [data])
    except OSError as e:
        return _die(f"{output}: cannot write ({e.strerror or e})")
    after = summary(model, os.path.getsize(output))
    written = records  # the pass runs the written result has seen
    if kept is not None and kept.pass_runs is not None:
        written = records[: kept.pass_runs]
    if not args.quiet:
        print(format_summary_table(args.input, output, before, after))
        changed = [r.name for r in written if r.changed]
        print(
            f"passes: {', '.join(names) or 'none'}; changed the model: "
            f"{', '.join(dict.fromkeys(changed)) or 'none'}"
        )
        for line in kept.lines() if kept is not None else ():
            print(line)
        for r in written:  # passes may describe their stats (e.g. channels removed per layer)
            fmt = getattr(get_pass(r.name), "format_stats", None)
            if r.changed and r.stats and fmt is not None:
                for line in fmt(r.stats):
                    print(f"[{r.name}] {line}")
    missing = unsupported_ops(model, args.target)
    if missing and not args.quiet:
        who = "TFLM or LiteRT" if args.target == "any" else args.target
        print(f"note: {output} has ops {who} cannot run: {_fmt_counts(missing)}")
    hybrid = hybrid_layers(model) if args.target != "litert" else []
    if hybrid and not args.quiet:
        print(f"note: {output} has {_hybrid_advice(len(hybrid))}")
    shapes = shape_problems(model) if args.target != "litert" else {}
    if any(shapes.values()) and not args.quiet:
        counts = ", ".join(f"{len(v)} {SHAPE_PROBLEMS[k]}" for k, v in shapes.items() if v)
        print(f"note: {output} has tensors TFLM cannot hold: {counts}")
    if args.explain:  # a fixed-point pipeline re-runs passes: say each reason once
        for line in dict.fromkeys(f"[{r.name}] {x}" for r in records for x in r.explanations):
            print(line)
        for name, counts in _rule_counts(records).items():
            print(f"[{name}] matched {counts['matched']}, rewritten {counts['rewritten']}")
    if args.report:
        report = {
            "input": args.input,
            "output": output,
            "passes": names,
            "before": before,
            "after": after,
            "verify": checked.to_dict() if checked is not None else None,
            "footprint": kept.to_dict() if kept is not None else None,
            "records": [
                {
                    "pass": r.name,
                    "iteration": r.iteration,
                    "changed": r.changed,
                    "seconds": round(r.seconds, 6),
                    "stats": r.stats,
                    "explanations": r.explanations,
                }
                for r in records
            ],
        }
        _write_json(args.report, report)
    return 0


def _hybrid_advice(count: int) -> str:
    """What `count` hybrid layers mean for TFLM, and the commands that make them run there."""
    return (
        f"{count} hybrid layer(s) (int8 weights, float activations) TFLM cannot run: "
        "`tflgraph optimize --target tflm` gives them their dequantized float weights "
        "(dequantize-hybrid), `tflgraph optimize --target tflm --quantize data.npz` makes the "
        "whole model int8"
    )


def _with_float_weights(source) -> bytes:
    """`source` (a path or bytes) with its hybrid layers given their dequantized float weights
    (dequantize-hybrid alone): the model the hybrid layers stand for."""
    model = load(source)
    run_passes(model, ["dequantize-hybrid"], target="tflm")
    return to_bytes(model)


def _hybrid_kernels_difference(hybrid_source, float_source, inputs=None) -> str:
    """In words: how far LiteRT's hybrid kernels are from the float layers they approximate,
    on the original (max|hybrid - float| / max|float| over the outputs; `inputs`: the
    check's inputs, else seeded random ones)."""
    report = verify(float_source, hybrid_source, runtime="litert", modes=("reset",), inputs=inputs)
    if not report.rows:
        return f"not measured ({report.reason() or 'LiteRT compared nothing'})"
    worst = max(r.max_rel for r in report.rows)
    return f"{worst:.2%} of max|y| in LiteRT ({report.samples} samples)"


def _with_batch(path: str, batch: int) -> bytes:
    """The input file with `batch` on axis 0 of its batch-None entry inputs and outputs: what
    LiteRT runs when such an input is resized (it derives every other shape itself), the
    reference a --batch result is checked against."""
    model = load(path)
    for sg in {model.main, *(s.subgraph for s in model.signature_defs)}:
        for t in (*sg.inputs, *sg.outputs):
            t.shape = t.with_batch(batch)
    return to_bytes(model)


def _keep_within_objective(args, data: bytes, names, options, records):
    """The pipeline's result `data`, or, when it grows what --objective keeps (TFLM's arena,
    the file), the last intermediate result that does not (tflgraph.objective), never one
    from before a pass that a state option (fuse-lstm.reset_states, ...) asked to change."""
    source = args.reference
    if isinstance(source, str):
        with open(source, "rb") as f:
            source = f.read()

    def rerun(after_pass) -> None:
        model = load(args.input)
        run_passes(model, names, options=options, target=args.target, after_pass=after_pass)

    asked = state_option_passes(options)
    least = next((k + 1 for k, r in enumerate(records) if r.changed and r.name in asked), 0)
    return keep_within(source, data, args.objective, args.target, rerun, least)


def _rule_counts(records) -> dict[str, dict[str, int]]:
    """Matches and rewrites per rule pass, summed over the fixed-point iterations."""
    counts: dict[str, dict[str, int]] = {}
    for r in records:
        if "matched" in r.stats and "rewritten" in r.stats:
            c = counts.setdefault(r.name, {"matched": 0, "rewritten": 0})
            c["matched"] += r.stats["matched"]
            c["rewritten"] += r.stats["rewritten"]
    return counts


def _verification_wanted(args) -> bool:
    """--verify / --no-verify, else on when LiteRT is installed."""
    import importlib.util

    if args.verify is not None:
        return args.verify
    return importlib.util.find_spec("ai_edge_litert") is not None


def _verify_before_writing(
    args, data: bytes, names, records, output, stateful: bool, hybrid_source=None
):
    """With --verify (the default when LiteRT is installed): compare the optimized model with
    the input file in memory. Returns (exit code, report): the code is 1 after printing the
    difference (then nothing is written), 2 when --verify was asked for but impossible.
    `stateful`: a pass option made the model carry state across invokes on purpose.
    `hybrid_source`: the hybrid original, when args.reference is it with float weights."""
    # a model optimized for LiteRT alone may use ops TFLM lacks: judge it in LiteRT only
    target = getattr(args, "target", "any")
    # a model that carries state across invokes on purpose (e.g. fuse-lstm's
    # stateful_streaming) must still match when the runtime resets between samples
    modes = ("reset",) if stateful else ("no-reset", "reset")
    runtime = "litert" if target == "litert" else "both"
    rtol = getattr(args, "rtol", None)  # the checker's bound when given: atol = rtol
    atol, step = rtol, 1.0
    requantized = _requantized_error(records)
    if requantized is not None:  # --requantize's bound, in the outputs' quantization steps
        steps = output_steps(load(data))  # 1 for int8 outputs; a float one's DEQUANTIZE scale
        step = min(steps) if isinstance(steps, list) else 1.0
        atol, rtol = args.requantize * step, None
    report = verify(
        args.reference,
        data,
        runtime=runtime,
        modes=modes,
        atol=atol,
        rtol=rtol,
        inputs=getattr(args, "inputs", None),
    )
    report.b = f"<optimized model for {output}>"  # B was bytes in memory: name what they are
    ran = _ran(args, names)
    if report.verdict == "unverified":
        if args.verify:
            return _die(f"cannot verify: {report.reason()}"), report
        hybrid = hybrid_source is not None
        refused = _check_on_reference(args, data, report.reason(), records, output, ran, hybrid)
        return refused, report
    if report.verdict == "different":
        sys.stdout.flush()
        print(report.format(), file=sys.stderr)
        changed = ", ".join(dict.fromkeys(r.name for r in records if r.changed)) or "none"
        return _die(
            f"{ran} changed the outputs (passes that changed the model: {changed}): "
            f"{report.differences()[0]}; {output} not written",
            1,
        ), report
    if not args.quiet:
        compared = [r.runtime for r in report.runtimes if r.compared]
        how = "with a reset between samples" if len(modes) == 1 else "with and without reset"
        print(f"verified: outputs equal in {', '.join(compared)} ({report.samples} samples, {how})")
        if requantized is not None:
            worst = {rt: max(r.max_abs for r in report.rows if r.runtime == rt) for rt in compared}
            errors = ", ".join(f"{rt} {e / step:.3g}" for rt, e in worst.items())
            print(
                f"  requantized (--requantize {args.requantize:g}): max error {errors} "
                f"quantization steps (bound {args.requantize:g}; reroll measured "
                f"{requantized} against the model it got)"
            )
        for r in report.runtimes:
            if not r.compared:
                print(f"  {r.runtime}: not compared: {_not_compared(r, data)}")
        if hybrid_source is not None:
            print(
                "  the original's hybrid layers were computed with their dequantized weights, "
                "the float layers they stand for; LiteRT's hybrid kernels differ from those by "
                + _hybrid_kernels_difference(
                    hybrid_source, args.reference, getattr(args, "inputs", None)
                )
            )
    return 0, report


def _requantized_error(records) -> int | None:
    """The largest output error reroll's --requantize measured, None if it requantized no
    chain (then the check keeps its default bounds)."""
    errors = [r.stats["requantized_error"] for r in records if "requantized_error" in r.stats]
    return max(errors) if errors else None


def _not_compared(status, data: bytes) -> str:
    """Why a runtime compared nothing, in words about the models (verify says "A" for the
    original). When TFLM cannot run the original, say whether it runs the optimized model and
    gives LiteRT's outputs for it (LiteRT compared both, so these are the original's too)."""
    why = status.message.replace("cannot run A:", "it cannot run the original:", 1)
    if status.runtime != "tflm" or not status.message.startswith("cannot run A"):
        return why
    optimized = load(data)
    blocker = tflm_blocker(optimized)  # TFLM would hang or return wrong values: say so now
    if blocker:
        return f"{why}; the optimized model: {blocker}"
    result = tflm_check.check(optimized, data, arena=False)
    if result.runs and result.compared_with:
        return (
            f"{why}; TFLM runs the optimized model and gives {result.compared_with}'s outputs "
            "(one invoke)"
        )
    return f"{why}; the optimized model: {result.lines()[0]}"


def _ran(args, names) -> str:
    return f"pipeline {args.passes!r} ({', '.join(names) or 'no passes'})"


def _check_on_reference(
    args, data: bytes, unverified: str, records, output, ran, hybrid: bool = False
) -> int:
    """No runtime could compare the models: compare them on the reference interpreter (around
    ops it cannot run). A result nothing could check is written only with --allow-unverified
    (or when no pass changed the model). `hybrid`: args.reference is the hybrid original
    with float weights."""
    original, result = load(args.reference), load(data)
    why = check_models(original, result)
    if why and why.startswith("cannot check") and hybrid_layers(original):
        why, hybrid = check_models(original, result, hybrid_as_float=True), True
    if why is None:
        if not args.quiet:
            claim = _reference_claim(original, hybrid)
            print(f"verified: {claim}; no runtime could compare the models")
        return 0
    if why.startswith("not equal"):
        return _die(
            f"{ran} changed the outputs on the reference interpreter: {why}; {output} not written",
            1,
        )
    if args.allow_unverified or not any(r.changed for r in records):
        how = "--allow-unverified" if args.allow_unverified else "no pass changed the model"
        _say("warning", f"written unverified ({how}): {why}")
        return 0
    return _die(
        f"not verified: {unverified}; {why}; {output} not written "
        "(--allow-unverified writes it anyway)"
    )


def _reference_claim(original, hybrid: bool = False) -> str:
    """What check_models proved, in words: all of the original's outputs when the interpreter
    computes the whole original (a Flex TensorList model, say), else the values at the ops it
    cannot run (the same ops in both models). `hybrid`: it computed hybrid layers as the float
    layers they approximate."""
    if hybrid:
        return (
            "outputs equal the reference interpreter's outputs for the original, which computes "
            "its hybrid layers with their dequantized weights (LiteRT's hybrid kernels differ "
            "from that by the activations' quantization error; 3 invokes)"
        )
    if all(can_evaluate(op) for op in original.main.operators):
        return "outputs equal the reference interpreter's outputs for the original (3 invokes)"
    return (
        "outputs equal on the reference interpreter, compared at the inputs of the ops it "
        "cannot run (the same ops in both models)"
    )


def _output_problem(output: str) -> str | None:
    """Why nothing can be written to `output` (None if it can be)."""
    if os.path.isdir(output):
        return f"{output}: output is a directory"
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        return f"{output}: output folder {out_dir} does not exist"
    return None


def cmd_quantize(args) -> int:
    root, ext = os.path.splitext(args.input)
    output = args.output or f"{root}.int8{ext or '.tflite'}"
    if _same_file(args.input, output):
        return _die(f"{output}: output is the input file")
    if why := _output_problem(output):
        return _die(why)
    refused, result, data = _quantized(args, args.input, args.calibration, output, args.verify)
    if refused:
        return refused
    try:
        write_atomic(output, [data])
    except OSError as e:
        return _die(f"{output}: cannot write ({e.strerror or e})")
    size = os.path.getsize(args.input)
    print(
        f"{output}: {len(data):,} bytes ({len(data) / size:.2f}x the float {size:,}), "
        f"calibrated on {result.calibrated_on} samples"
        + ("" if result.report is not None else "; not verified (--no-verify)")
    )
    return 0


def _quantized(args, source, calibration: str, output: str, check: bool, quiet: bool = False):
    """(exit code, Result, bytes) of quantizing `source` (a path or bytes): the code is 1, after
    the check's lines, when the int8 model failed its check (then nothing is to be written)."""
    result = quantize(
        source, calibration, args.io, args.held_out, args.tolerance, check, args.loops
    )
    report = result.report
    lines = [c.line() for c in result.loops] + (report.lines() if report is not None else [])
    for line in lines if not quiet or (report is not None and not report.ok) else ():
        print(line)
    if report is not None and not report.ok:
        return _die(f"the int8 model failed its check; {output} not written", 1), None, None
    data = to_bytes(result.model)
    size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
    if len(data) > size and not quiet:
        print(
            f"note: the int8 file is larger than the float one ({size:,} -> {len(data):,} "
            "bytes): this model has few weight bytes to save, and every int8 tensor carries "
            "its quantization parameters (per-channel weights and their biases one scale and "
            "zero point per channel)"
        )
    return 0, result, data


def cmd_verify(args) -> int:
    reference = _with_float_weights(args.a) if args.hybrid_as_float else args.a
    report = verify(
        reference,
        args.b,
        runtime=args.runtime,
        samples=args.samples,
        seed=args.seed,
        atol=args.atol,
        rtol=args.rtol,
        inputs=args.inputs,
        timeout=args.timeout,
    )
    if args.hybrid_as_float:
        report.a = f"{args.a} (hybrid layers with dequantized weights)"
    original = load(reference) if report.verdict == "unverified" and not args.inputs else None
    hybrid = original is not None and bool(hybrid_layers(original))
    if original is None or not all(can_evaluate(op, hybrid) for op in original.main.operators):
        print(report.to_json() if args.json else report.format())
        if report.verdict == "unverified":
            return _die(f"no runtime could compare the models: {report.reason()}")
        if report.verdict == "different" and not args.hybrid_as_float and not args.json:
            a = load(args.a)
            if hybrid_layers(a) and not hybrid_layers(load(args.b)):
                print(
                    "note: A has hybrid layers (int8 weights, float activations), which B "
                    "computes in float (optimize --target tflm does that): --hybrid-as-float "
                    "compares B with them"
                )
        return report.exit_code
    # no runtime runs A (Flex ops, say), but the interpreter computes all of it (hybrid layers
    # as the float layers they approximate): compare B with its outputs for A on seeded inputs
    why = check_models(original, load(args.b), seed=args.seed, hybrid_as_float=hybrid)
    verdict = "different" if why else "equal"
    if args.json:
        d = json.loads(report.to_json())
        d.update(verdict=verdict, exit_code=int(bool(why)), reference_interpreter=why or "equal")
        print(json.dumps(d, indent=2))
    else:
        print(report.format())
        ref = "the reference interpreter's outputs for A (no runtime could compare the models"
        if hybrid:
            ref += "; it computes A's hybrid layers with their dequantized weights"
        print(f"DIFFERENT from {ref}): {why}" if why else f"verified: B equals {ref}; 3 invokes)")
    return int(bool(why))


def _write_json(path: str, obj) -> None:
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, default=str)
        os.replace(tmp, path)
    except OSError as e:
        raise TflgraphError(f"{path}: cannot write report ({e.strerror or e})") from None


def cmd_inspect(args) -> int:
    model = load(args.input)
    info = describe(model, os.path.getsize(args.input))
    lines = [] if args.json else [format_description(args.input, info)]
    if args.target:
        info["target"] = args.target
        info["runs"], said = _target_verdict(args, model, info)
        lines += said
    print(json.dumps(info, indent=2) if args.json else "\n".join(lines))
    return 1 if args.strict and args.target and not info["runs"] else 0


def _target_verdict(args, model, info: dict) -> tuple[bool, list[str]]:
    """Whether the model runs on --target, and the lines that say why (info gets the data).
    For TFLM, tflite-micro itself is asked when it is installed: the op table and the shape
    rules only predict."""
    missing = info["unsupported_ops"] = unsupported_ops(model, args.target)
    lines = [
        f"ops {args.target} cannot run: {_fmt_counts(missing)}"
        if missing
        else f"every op type has a kernel in {args.target}"
    ]
    if args.target == "litert":
        return not missing, lines
    shapes = info["tflm_shape_problems"] = shape_problems(model)
    with open(args.input, "rb") as f:
        tflm = tflm_check.check(model, f.read(), args.timeout)
    info["tflm"] = tflm.to_dict()
    lines += tflm.lines()
    asked = tflm.verdict != "not installed"
    runs = tflm.runs and (args.target == "tflm" or not missing)
    if not asked:
        runs = not missing and not any(shapes.values())
        lines.append("(judged from the op table and the tensor shapes only)")
    hybrid = info["hybrid_layers"] = hybrid_layers(model)
    if hybrid and not tflm.runs:
        lines.append(f"it has {_hybrid_advice(len(hybrid))}")
    if not asked or not tflm.runs:
        for kind, names in shapes.items():
            if names:
                lines.append(
                    f"TFLM cannot hold {len(names)} {SHAPE_PROBLEMS[kind]} (e.g. {names[0]}); "
                    "`tflgraph optimize --target tflm` gives WHILE loops static shapes"
                )
    return runs, lines


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in counts.items())


def cmd_dot(args) -> int:
    model = load(args.input)
    if args.output:
        write_dot(model, args.output, args.subgraph)
    else:
        sys.stdout.write(to_dot(model, args.subgraph))
    return 0


def cmd_passes(args) -> int:
    loaded = [name for path in args.load for name in load_pass_file(path)]
    if args.markdown:
        sys.stdout.write(passes_markdown(loaded))
        return 0
    for name, cls in all_passes().items():
        print(f"{name:28s} {cls.describe()}")
        for line in describe_options(cls):
            print(f"{'':28s}   option {line}")
    return 0
