"""Name-recogniser summary over the hand-written dev and seen sets, one line per set.

    PYTHONPATH=src .venv/bin/python bench/pii_names_sets.py [--show SET ...]

Prints, per set, the distractor texts hit (by any PII/secret detector) and person recall and
precision per language, with the same guards and judge as ``bench/pii_quality.py --set``.
The blind sets (``heldout_v3`` and any v4) are never scored here: they are scored once, with
``bench/pii_quality.py``, by whoever owns the measurement. ``--show`` prints the false alarms
and misses of the named sets (only dev sets should be read item by item).
"""

from __future__ import annotations

import argparse
import sys

from pii_handwritten import evaluate, load

#: The sets a round may look at (heldout_v2 and names_check4 only as totals).
SETS = (
    "names_dev", "distractors_val", "distractors_dev2", "distractors_dev3", "dev", "heldout",
    "heldout_v2", "names_check4",
)  # fmt: skip
LANGS = ("en", "de", "fr", "es")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=SETS)
    parser.add_argument("--show", nargs="*", default=[], choices=SETS)
    args = parser.parse_args(argv)
    for name in args.sets:
        result = evaluate(load(name))
        cells = []
        for lang in LANGS:
            c = result.counts.get(("person", lang))
            if c is None or not c.true_spans:
                continue
            p = c.correct / c.findings if c.findings else float("nan")
            cells.append(f"{lang} {c.found}/{c.true_spans} P {p:.1%}")
        hit = len(result.distractors_hit)
        print(f"{name:<17} distractors {hit:>3}/{result.distractors:<3} "
              f"({hit / max(result.distractors, 1):5.1%})  " + "  ".join(cells))  # fmt: skip
        if name in args.show:
            c = result.counts.get(("person", "all"))
            for line in result.distractors_hit:
                print("   hit:", line)
            if c is not None:
                for fa in c.false_alarms:
                    print("   false alarm:", fa)
                for miss in c.misses:
                    print("   miss:", miss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
