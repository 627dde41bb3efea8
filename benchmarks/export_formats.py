"""Every export format of one compressed student, on the full Fashion-MNIST test set.

    python -m benchmarks.export_formats RUN_DIR [--data fashion-mnist]

RUN_DIR is a finished `edgecv compress` run (the README's full Fashion-MNIST run). For each format
it runs the real commands, `edgecv export RUN_DIR --format FMT --json` and `edgecv eval FILE --data
DATA --json`, and tabulates size, top-1 on every test image, the export check (agreement with the
Keras model it came from) and the command. Writes benchmarks/results/export_formats.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from edgecv.export.formats import FORMATS
from edgecv.fileio import human_size, write_json_atomic, write_text_atomic
from edgecv.report.loader import read_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def edgecv(*args) -> dict:
    proc = subprocess.run([sys.executable, "-m", "edgecv", *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"edgecv {' '.join(map(str, args))} failed:\n{proc.stderr[-2000:]}")
    return proc


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", default="fashion-mnist")
    args = parser.parse_args()
    report = read_report(args.run)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, spec in FORMATS.items():
            out = args.run / "exports" / f"student-{fmt}{spec.suffix}"
            command = ["edgecv", "export", "RUN", "--format", fmt]
            print(f"== {fmt}", flush=True)
            record = json.loads(edgecv("export", args.run, "--format", fmt, "--out", out, "--json", "--force").stdout)
            edgecv("eval", out, "--data", args.data, "--json", Path(tmp) / "eval.json")
            ev = json.loads((Path(tmp) / "eval.json").read_text())
            rows.append({"format": fmt, "size_bytes": record["size_bytes"], "source": Path(record["source"]).name,
                         "top1": ev["top1"], "top5": ev["top5"], "samples": ev["samples"], "runtime": ev["runtime"],
                         "check": record["check"], "writer": record["writer"],
                         "command": " ".join(map(shlex.quote, command))})
            print(json.dumps(rows[-1]), flush=True)
    student = report["recipe"]["student"]
    result = {"run": str(args.run), "student": student, "data": args.data, "test_samples": rows[0]["samples"],
              "keras_top1": {a["name"]: a["metrics"]["top1"] for a in report["artefacts"] if a["format"] == "keras"},
              "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / "export_formats.json", result)
    write_text_atomic(RESULTS / "export_formats.md", markdown(result) + "\n")
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = ["| format | size | top-1 (all test images) | check vs Keras source: agreement, max \\|Δ\\| | source | command |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        c = r["check"]
        lines.append(f"| {r['format']} | {human_size(r['size_bytes'])} | {r['top1']:.2%} | "
                     f"{'✓' if c['passed'] else '✗'} {c['top1_agreement']:.1%}, {c['max_abs_diff']:.3g} | {r['source']} | "
                     f"`{r['command']} && edgecv eval FILE --data {result['data']}` |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
