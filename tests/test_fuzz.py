"""Seeded mutations of real fixture bytes: loading, cleaning up and saving either works or
raises ModelError/TflgraphError (the CLI's clean one-line error); never another exception,
never a hang."""

import signal
import subprocess
import sys

import numpy as np
import pytest
from helpers import fixture

import tflgraph
from tflgraph.errors import TflgraphError

SEEDS = range(300)
SOURCES = ["mlp", "k3_lstm", "cnn_int8", "signature_meta", "sparse", "tfk_lstm_fused"]


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = rng.integers(0, 5)
    if kind == 0:  # flip a few random bytes
        for _ in range(rng.integers(1, 8)):
            buf[rng.integers(0, len(buf))] = rng.integers(0, 256)
    elif kind == 1:  # truncate
        del buf[rng.integers(8, len(buf)) :]
    elif kind == 2:  # overwrite a u32 in the table area (offsets, lengths) with a wild value
        pos = int(rng.integers(0, max(1, min(len(buf), 4096) - 4)))
        buf[pos : pos + 4] = int(
            rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.integers(0, 2**32)])
        ).to_bytes(4, "little")
    elif kind == 3:  # insert junk
        pos = int(rng.integers(8, len(buf)))
        buf[pos:pos] = rng.bytes(int(rng.integers(1, 64)))
    else:  # zero a block
        pos = int(rng.integers(0, len(buf)))
        buf[pos : pos + 64] = bytes(len(buf[pos : pos + 64]))
    return bytes(buf)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


@pytest.mark.parametrize("chunk", range(6))
def test_mutated_models_fail_cleanly(chunk):
    source = fixture(SOURCES[chunk]).read_bytes()
    old = signal.signal(signal.SIGALRM, _alarm)
    outcomes = {"loaded": 0, "rejected": 0}
    try:
        for seed in SEEDS[chunk::6]:
            data = mutate(source, np.random.default_rng(seed))
            signal.alarm(10)
            try:
                model = tflgraph.load(data)
                tflgraph.run_passes(model, ["cleanup"])
                tflgraph.load(tflgraph.to_bytes(model))
                outcomes["loaded"] += 1
            except TflgraphError:
                outcomes["rejected"] += 1
            except Hang:
                pytest.fail(f"seed {seed}: load/save took over 10 s")
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert outcomes["rejected"] > 0  # the mutations do reach the error paths


def test_mutated_models_through_the_cli(tmp_path):
    source = fixture("k3_lstm").read_bytes()
    for seed in range(12):
        path = tmp_path / f"m{seed}.tflite"
        path.write_bytes(mutate(source, np.random.default_rng(1000 + seed)))
        out = tmp_path / f"o{seed}.tflite"
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "tflgraph",
                "optimize",
                str(path),
                "-o",
                str(out),
                "--no-verify",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Traceback" not in r.stderr
        assert r.returncode in (0, 2), r.stderr
        if r.returncode == 2:
            assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
