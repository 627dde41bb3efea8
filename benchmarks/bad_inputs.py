"""Every bad input the tests feed the real `edgecv` command line, with what it answered.

    python -m benchmarks.bad_inputs [--all]     (--all: the slow tests' refusals too)

Runs the refusal tests (test_bad_outputs, test_bad_values, test_cli_errors, test_processes,
test_model_kinds, and with --all every test file) with EDGECV_ERROR_LOG set, so each refusal a test
checks (exit 2, one `edgecv: error:` line, no traceback; leftovers are each test's own assertion)
is logged; then writes benchmarks/results/bad_inputs.md: one row per refusal with the command, the
exit code, how many lines stderr had, and the line itself.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from edgecv.fileio import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "bad_inputs.md"
REFUSAL_TESTS = ["tests/test_bad_outputs.py", "tests/test_bad_values.py", "tests/test_cli_errors.py",
                 "tests/test_processes.py", "tests/test_model_kinds.py"]


def _cell(text: str, limit: int = 0) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if not limit or len(text) <= limit else text[:limit] + " …"


def _untemp(text: str) -> str:
    """pytest's per-test folders read as TMP/."""
    return re.sub(r"/tmp/pytest-of-[^/]+/pytest-\d+/[^/ ']+/", "TMP/", text)


def table(records: list[dict]) -> str:
    rows = ["| test | command | exit | stderr lines | the line |", "|---|---|---|---|---|"]
    for r in records:
        test = r["test"].replace("tests/", "")
        rows.append(f"| {_cell(test)} | `{_cell(_untemp(' '.join(r['command'])), 160)}` | {r['exit']} | "
                    f"{r['stderr_lines']} | {_cell(_untemp(r['line']))} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every test file, the slow ones included")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgecv-bad-inputs-") as tmp:
        log = Path(tmp) / "refusals.jsonl"
        selection = ["tests"] if args.all else [*REFUSAL_TESTS, "-m", "not slow"]
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
                              cwd=ROOT, env={**os.environ, "EDGECV_ERROR_LOG": str(log)})
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    one_line = sum(r["exit"] == 2 and r["stderr_lines"] == 1 for r in records)
    summary = (f"{len(records)} refusals checked by {len({r['test'] for r in records})} tests; exit 2 in "
               f"{sum(r['exit'] == 2 for r in records)}, stderr exactly one line in {one_line}, a traceback in none "
               f"(each test asserts it); pytest exit code {proc.returncode}.")
    write_text_atomic(RESULTS, f"# Bad inputs and their answers\n\n`python -m benchmarks.bad_inputs{' --all' if args.all else ''}`"
                               f"\n\n{summary}\n\n{table(records)}\n")
    print(summary)
    print(f"wrote {RESULTS}")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
