"""Side by side: Wardgate's allow-list scanner vs picklescan vs modelscan on the bypass corpus.

Writes every sample of ``supplychain_corpus`` to a temporary folder, scans each file with the
three scanners (in process, no payload is ever loaded), and prints a table plus totals:
detected / missed / errored for malicious files, false alarms for benign ones. A scanner that
errors on a malicious file counts as a miss when it does not also flag it: an error is what a
user running it in CI would see as "nothing found" unless they read the logs.

    .venv/bin/python bench/supplychain_scan_compare.py [--json results.json] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from supplychain_corpus import (
    Sample,
    benign_samples,
    library_benign_samples,
    malicious_samples,
    write_corpus,
)

from wardgate.supplychain.scan import scan_path


def run_wardgate(path: str) -> tuple[bool, bool]:
    """(flagged, errored)"""
    report = scan_path(path)
    return (not report.clean), bool(report.errors)


def run_picklescan(path: str) -> tuple[bool, bool]:
    from picklescan.scanner import scan_file_path

    try:
        result = scan_file_path(path)
    except Exception:
        return False, True
    return result.infected_files > 0 or result.issues_count > 0, bool(result.scan_err)


def run_modelscan(path: str) -> tuple[bool, bool]:
    from modelscan.modelscan import ModelScan

    try:
        result = ModelScan().scan(path)
    except Exception:
        return False, True
    issues = result.get("issues", [])
    errors = result.get("errors", [])
    return bool(issues), bool(errors)


SCANNERS = {"wardgate": run_wardgate, "picklescan": run_picklescan, "modelscan": run_modelscan}


def evaluate(folder: Path, samples: list[Sample]) -> list[dict[str, Any]]:
    rows = []
    for path, sample in write_corpus(folder, samples).items():
        row: dict[str, Any] = {
            "file": sample.filename,
            "family": sample.family,
            "reference": sample.reference,
            "malicious": sample.malicious,
        }
        for name, scanner in SCANNERS.items():
            start = time.perf_counter()
            flagged, errored = scanner(path)
            row[name] = {
                "flagged": flagged,
                "errored": errored,
                "ms": round((time.perf_counter() - start) * 1000, 2),
            }
        rows.append(row)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for name in SCANNERS:
        t = {"detected": 0, "missed": 0, "errored_unflagged": 0, "false_alarms": 0, "benign": 0}
        for row in rows:
            result = row[name]
            if row["malicious"]:
                if result["flagged"]:
                    t["detected"] += 1
                else:
                    t["missed"] += 1
                    if result["errored"]:
                        t["errored_unflagged"] += 1
            else:
                t["benign"] += 1
                if result["flagged"]:
                    t["false_alarms"] += 1
        totals[name] = t
    return totals


def _mark(result: dict[str, Any], malicious: bool) -> str:
    if malicious:
        return (
            "detected"
            if result["flagged"]
            else ("MISSED (error)" if result["errored"] else "MISSED")
        )
    return "FALSE ALARM" if result["flagged"] else "clean"


def markdown(rows: list[dict[str, Any]], totals: dict[str, dict[str, int]]) -> str:
    lines = [
        "| file | what | wardgate | picklescan | modelscan |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = [_mark(row[name], row["malicious"]) for name in SCANNERS]
        kind = "malicious" if row["malicious"] else "benign"
        lines.append(
            f"| `{row['file']}` | {kind}: {row['reference']} | " + " | ".join(cells) + " |"
        )
    lines += ["", "| scanner | detected | missed | false alarms |", "| --- | --- | --- | --- |"]
    malicious = sum(1 for r in rows if r["malicious"])
    for name, t in totals.items():
        lines.append(
            f"| {name} | {t['detected']}/{malicious} | {t['missed']} | "
            f"{t['false_alarms']}/{t['benign']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write per-file results as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # modelscan and picklescan log every error loudly
    samples = malicious_samples() + benign_samples() + library_benign_samples()
    with tempfile.TemporaryDirectory(prefix="wardgate-corpus-") as tmp:
        rows = evaluate(Path(tmp), samples)
    totals = summarise(rows)
    table = markdown(rows, totals)
    print(table)
    print()
    for name, t in totals.items():
        print(f"{name}: {json.dumps(t)}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "totals": totals}, indent=2))
    if args.markdown:
        args.markdown.write_text(table + "\n")
    wardgate = totals["wardgate"]
    return 0 if wardgate["missed"] == 0 and wardgate["false_alarms"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
