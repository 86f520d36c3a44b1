"""Fingerprint tflgraph's optimized output of every fixture, to prove a refactor changes nothing.

For each fixture in fixtures/ and each target (any, tflm, litert) the default pipeline runs in
process (no verification: this measures what the passes write, not what a runtime says), and
the SHA-256 of the bytes `to_bytes` produces is recorded; a fixture that cannot be optimized
records its error instead. Run once on each side of a change and compare the two files:

    python benchmarks/fixture_outputs.py -o before.json      # on the old commit
    python benchmarks/fixture_outputs.py --compare before.json   # on the new one; exit 1 on change
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import tflgraph

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TARGETS = ("any", "tflm", "litert")


def fingerprint(path: Path, target: str) -> str:
    try:
        model = tflgraph.load(str(path))
        tflgraph.optimize(model, "default", target=target)
        return hashlib.sha256(tflgraph.to_bytes(model)).hexdigest()
    except Exception as e:  # recorded: an error must stay the same error
        return f"error: {type(e).__name__}: {e}"


def fingerprints() -> dict[str, str]:
    out = {}
    for path in sorted(FIXTURES.glob("*.tflite")):
        for target in TARGETS:
            out[f"{path.stem}@{target}"] = fingerprint(path, target)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", help="write the fingerprints to this JSON file")
    ap.add_argument("--compare", help="compare with a JSON file written before; exit 1 on change")
    args = ap.parse_args(argv)
    now = fingerprints()
    if args.output:
        Path(args.output).write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    if not args.compare:
        print(f"{len(now)} fixture x target outputs fingerprinted")
        return 0
    before = json.loads(Path(args.compare).read_text())
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    for k in changed:
        print(f"changed: {k}: {before.get(k)} -> {now.get(k)}")
    print(f"{len(now) - len(changed)} of {len(now)} outputs byte-identical, {len(changed)} changed")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
