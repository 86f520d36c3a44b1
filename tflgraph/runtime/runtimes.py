"""Run a .tflite in the real runtimes: LiteRT (`ai-edge-litert`) and TFLM (`tflite-micro`).

Both are optional imports (the `verify` extra). `run(model_bytes, samples, runtime)` feeds the
samples one after another into one interpreter, as an application would, optionally resetting
state between invokes, and returns the outputs of each invoke.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

import numpy as np

RUNTIMES = ("litert", "tflm")
# LiteRT's kernels: "default" applies its default delegate (XNNPACK) as an application gets it;
# "builtin" runs its builtin kernels only, the ones TFLM's are ported from. For int8 models
# the two differ by many quantization steps (XNNPACK requantizes differently), and XNNPACK
# refuses to prepare some models that the builtin kernels run.
KERNELS = ("default", "builtin")


class RuntimeUnavailable(RuntimeError):
    """The runtime is not installed or cannot run this model."""


@dataclass
class IODetail:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0


def available(runtime: str) -> bool:
    try:
        _import(runtime)
        return True
    except RuntimeUnavailable:
        return False


def _import(runtime: str):
    try:
        if runtime == "litert":
            from ai_edge_litert.interpreter import Interpreter

            return Interpreter
        if runtime == "tflm":
            from tflite_micro.python.tflite_micro import runtime as tflm

            return tflm.Interpreter
    except ImportError as e:
        raise RuntimeUnavailable(
            f"{runtime} is not installed ({e}); pip install 'tflgraph[verify]'"
        ) from None
    raise ValueError(f"unknown runtime {runtime!r}; choose from {RUNTIMES}")


_QUIET = True  # a worker process (run_isolated) keeps fd 2 to report what the runtime said


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the C++ runtimes' banners on fd 2 (e.g. the XNNPACK delegate notice)."""
    if not _QUIET:
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class Session:
    """One interpreter over one model, kept alive across invokes."""

    def __init__(
        self,
        model: bytes,
        runtime: str = "litert",
        num_threads: int = 1,
        arena_size: int | None = None,
        kernels: str = "default",
    ):
        """`arena_size`: TFLM's tensor arena in bytes (default: generous for the model).
        `kernels`: LiteRT's, one of KERNELS."""
        if kernels not in KERNELS:
            raise ValueError(f"unknown kernels {kernels!r}; choose from {KERNELS}")
        self.runtime = runtime
        cls = _import(runtime)
        model = bytes(model)
        try:
            with _quiet_stderr():
                if runtime == "litert":
                    self._it = cls(
                        model_content=model, num_threads=num_threads, **_resolver(kernels)
                    )
                    self._it.allocate_tensors()
                    ins, outs = self._it.get_input_details(), self._it.get_output_details()
                else:
                    self._it = cls.from_bytes(model, arena_size=arena_size or arena_for(model))
                    ins = [self._it.get_input_details(i) for i in range(_count(self._it, "in"))]
                    outs = [self._it.get_output_details(i) for i in range(_count(self._it, "out"))]
        except RuntimeUnavailable:
            raise
        except Exception as e:  # the runtimes raise RuntimeError/ValueError with C++ text
            raise RuntimeUnavailable(f"{runtime} cannot load the model: {_first_line(e)}") from None
        self.inputs = [_detail(d) for d in ins]
        self.outputs = [_detail(d) for d in outs]
        self._in_index = [d.get("index", i) for i, d in enumerate(ins)]
        self._out_index = [d.get("index", i) for i, d in enumerate(outs)]

    def reset(self) -> None:
        if self.runtime == "litert":
            self._it.reset_all_variables()
        else:
            self._it.reset()

    def invoke(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        try:
            if self.runtime == "litert":
                for idx, x in zip(self._in_index, inputs):
                    self._it.set_tensor(idx, _contiguous(x))
                self._it.invoke()
                return [np.array(self._it.get_tensor(idx)) for idx in self._out_index]
            for i, x in enumerate(inputs):
                self._it.set_input(_contiguous(x), i)
            self._it.invoke()
            return [np.array(self._it.get_output(i)) for i in range(len(self.outputs))]
        except Exception as e:
            raise RuntimeUnavailable(f"{self.runtime} failed to invoke: {_first_line(e)}") from None


def _contiguous(x) -> np.ndarray:
    """x as a C-contiguous array of its own rank (np.ascontiguousarray makes a 0-d scalar
    input 1-d, which the runtimes refuse: "Dimension mismatch")."""
    return np.require(np.asarray(x), requirements="C")


def _resolver(kernels: str) -> dict:
    """The LiteRT Interpreter's keyword arguments that select `kernels`."""
    if kernels == "default":
        return {}
    from ai_edge_litert.interpreter import OpResolverType

    return {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


def _first_line(e: Exception) -> str:
    """The runtime's message, first line. LiteRT glues its reporter's messages together
    ("...ops_selectNode number 1 (...) failed to prepare."): they are split again, and its
    paragraph on linking the Flex delegate becomes one sentence."""
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    line = re.sub(r"(?<=\w)(?=Node number \d+ )", ". ", line)
    line = re.sub(r"(?<=[a-z]\.)(?=[A-Z])", " ", line)  # "...zero_point.Tensor 43 has ..."
    if "Select TensorFlow op(s)" in line:
        node = re.search(r"Node number \d+ \(\w+\) failed to prepare", line)
        where = f" ({node.group(0)})" if node else ""
        return f"it has Select TensorFlow (Flex) ops, which run only with the Flex delegate{where}"
    return line


def arena_for(model: bytes) -> int:
    """A TFLM arena that holds what the models we meet need: 8x the file, at least 1 MiB,
    plus 4 MiB."""
    return max(1 << 20, 8 * len(model)) + (4 << 20)


def _count(it, which: str) -> int:
    n = 0
    getter = it.get_input_details if which == "in" else it.get_output_details
    while True:
        try:
            getter(n)
        except Exception:
            return n
        n += 1
        if n > 1024:
            return n


def _detail(d: dict) -> IODetail:
    q = d.get("quantization_parameters") or {}
    scales = q.get("scales", [])
    zps = q.get("zero_points", [])
    scale, zp = d.get("quantization", (0.0, 0)) if "quantization" in d else (0.0, 0)
    if len(scales):
        scale, zp = float(scales[0]), int(zps[0]) if len(zps) else 0
    return IODetail(
        str(d.get("name", "")),
        tuple(int(x) for x in d.get("shape", ())),
        np.dtype(d["dtype"]),
        float(scale),
        int(zp),
    )


def random_inputs(details: list[IODetail], rng: np.random.Generator) -> list[np.ndarray]:
    """Random values in each input's dtype and a sensible range: floats in [-1, 1), quantized
    integers over their whole range, plain integers (often indices or sizes) in [0, 8)."""
    out = []
    for d in details:
        shape, dt = d.shape, d.dtype
        if dt.kind == "f":
            x = rng.uniform(-1.0, 1.0, shape)
        elif dt == np.bool_:
            x = rng.integers(0, 2, shape)
        elif dt.kind in "iu":
            if d.scale:
                info = np.iinfo(dt)
                x = rng.integers(info.min, int(info.max) + 1, shape, dtype=np.int64)
            else:
                x = rng.integers(0, 8, shape)
        elif dt.kind in "SUO":  # strings: short random ASCII words
            words = [
                "".join(chr(c) for c in rng.integers(97, 123, rng.integers(1, 8)))
                for _ in range(int(np.prod(shape, dtype=int)))
            ]
            out.append(np.array(words, dtype=np.bytes_).reshape(shape))
            continue
        else:
            raise RuntimeUnavailable(f"cannot make random inputs of dtype {dt}")
        out.append(np.asarray(x).astype(dt))
    return out


def run(
    model: bytes,
    samples: list[list[np.ndarray]],
    runtime: str = "litert",
    reset_between: bool = False,
    kernels: str = "default",
) -> list[list[np.ndarray]]:
    """Invoke the model once per sample in one interpreter; outputs per invoke."""
    s = Session(model, runtime, kernels=kernels)
    results = []
    for i, sample in enumerate(samples):
        if reset_between and i:
            s.reset()
        results.append(s.invoke(sample))
    return results


MODES = ("no-reset", "reset")


def run_modes(
    model: bytes,
    samples: list[list[np.ndarray]],
    runtime: str,
    modes=MODES,
    kernels: str = "default",
) -> dict[str, list]:
    """Outputs per invoke in each mode: one interpreter fed the samples in a row ("no-reset"),
    and a fresh one reset between samples ("reset")."""
    return {
        mode: run(model, samples, runtime, reset_between=mode == "reset", kernels=kernels)
        for mode in modes
    }


def run_isolated(
    model: bytes,
    samples: list[list[np.ndarray]],
    runtime: str,
    timeout: float = 120.0,
    modes=MODES,
    kernels: str = "default",
) -> dict[str, list]:
    """`run_modes` in a forked child process, so that a runtime that hangs (TFLM on some
    dynamic-shape loops) or crashes becomes a RuntimeUnavailable with the reason instead of
    taking the caller down. Falls back to running in-process where fork does not exist."""
    return call_isolated(run_modes, (model, samples, runtime, modes, kernels), runtime, timeout)


def call_isolated(fn, args: tuple, what: str, timeout: float = 120.0):
    """`fn(*args)` in a forked child process; its result (picklable) comes back. A hang past
    `timeout` seconds, a crash or an exception becomes RuntimeUnavailable, whose message
    starts with `what` and adds the first thing the runtime printed. Falls back to calling
    in-process where fork does not exist."""
    import multiprocessing

    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:
        return fn(*args)
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, fn, args, what), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(timeout):
            child.kill()
            raise RuntimeUnavailable(f"{what} did not finish within {timeout:g} s")
        status, payload = receive.recv()
    except EOFError:
        child.join()
        raise RuntimeUnavailable(f"{what} crashed (exit code {child.exitcode})") from None
    finally:
        receive.close()
        child.join(5)
    if status != "ok":
        raise RuntimeUnavailable(payload)
    return payload


@contextlib.contextmanager
def captured_output():
    """Collect what is written to fds 1 and 2 (the C++ runtimes print there) while the block
    runs: yields a list that holds the non-empty lines, stripped, once the block has ended."""
    import ctypes
    import tempfile

    lines: list[str] = []
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as log:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        try:
            yield lines
        finally:
            with contextlib.suppress(Exception):
                ctypes.CDLL(None).fflush(None)
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
            log.seek(0)
            text = log.read().decode(errors="replace")
            lines.extend(line.strip() for line in text.splitlines() if line.strip())


def _child(send, fn, args, what) -> None:
    """Body of the forked worker: send ("ok", result) or ("error", reason)."""
    import faulthandler

    faulthandler.disable()  # a crash is reported as one ("crashed"), without a stack dump
    global _QUIET
    _QUIET = False  # keep fd 2: what the runtime says there becomes part of the reason
    said: list[str] = []
    try:
        with captured_output() as said:
            result = fn(*args)
    except Exception as e:
        said = [line for line in said if not line.startswith("INFO:")]
        reason = _first_line(e) if isinstance(e, RuntimeUnavailable) else f"{what}: {e!r}"
        if said and said[0] not in reason:
            reason += f" ({said[0]})"
        send.send(("error", reason))
    else:
        send.send(("ok", result))
