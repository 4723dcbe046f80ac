"""The regression gate (``compare --baseline``): objective facts only, about what the
second run lacks that the baseline has."""

from __future__ import annotations

from collections.abc import Sequence

from kodelyth_ecc.compare.results import Finding, WorkerComparison
from kodelyth_ecc.errors import UsageError
from kodelyth_ecc.handoff_sections import EMPTY, WRITTEN, Handoff, required_titles, title_key

# `compare --baseline` exits with this when a gate rule fires (1 stays "error").
EXIT_REGRESSION = 3
RULES = ("missing-worker", "state-regressed", "empty-handoff", "missing-section")


def check_rules(rules: Sequence[str] | None) -> list[str]:
    """The gate rules to apply (None: every rule), checked."""
    chosen_rules = list(RULES if rules is None else rules)
    unknown = [r for r in chosen_rules if r not in RULES]
    if unknown:
        raise UsageError(f"unknown gate rule {unknown[0]!r}: valid rules are {', '.join(RULES)}")
    return chosen_rules


def gate_findings(
    worker: WorkerComparison, a: Handoff | None, b: Handoff | None, rules: Sequence[str]
) -> list[Finding]:
    """What the second run lacks that the baseline (first) has: objective facts only."""
    found: list[Finding] = []
    slug = worker.slug
    if worker.a is None:
        return found  # new in the second run: nothing to fall short of
    if worker.b is None:
        if "missing-worker" in rules:
            found.append(Finding(slug, "missing-worker", "in the baseline, missing here"))
        return found
    if (
        "state-regressed" in rules
        and worker.a.state == "completed"
        and worker.b.state != "completed"
    ):
        exit_note = f", exit code {worker.b.exit_code}" if worker.b.exit_code is not None else ""
        found.append(
            Finding(
                slug,
                "state-regressed",
                f"completed in the baseline, {worker.b.state or 'no state recorded'} "
                f"here{exit_note}",
            )
        )
    empty_fired = False
    if "empty-handoff" in rules and worker.b.handoff != WRITTEN and worker.a.handoff == WRITTEN:
        what = "empty" if worker.b.handoff == EMPTY else "placeholder-only"
        found.append(
            Finding(
                slug,
                "empty-handoff",
                f"handoff is {what} here ({worker.b.handoff_bytes:,} bytes), written in the "
                f"baseline ({worker.a.handoff_bytes:,} bytes)",
            )
        )
        empty_fired = True
    if "missing-section" in rules and not empty_fired and a is not None and b is not None:
        for title in required_titles():
            if a.has_content(title) and not b.has_content(title):
                key = title_key(title)
                gone = b.section(key) is None and not any(
                    title_key(s.title) == key for s in b.sections
                )
                found.append(
                    Finding(
                        slug,
                        "missing-section",
                        f"## {title}: written in the baseline, "
                        f"{'missing' if gone else 'placeholder only'} here",
                    )
                )
    return found


def parse_rules(text: str | None) -> list[str]:
    """``--fail-on a,b``: the rules, checked; None or "all" means every rule."""
    if text is None or text.strip() == "all":
        return list(RULES)
    rules = [part.strip() for part in text.split(",") if part.strip()]
    if not rules:
        raise UsageError(f"empty --fail-on: name rules from {', '.join(RULES)} (or all)")
    for rule in rules:
        if rule not in RULES:
            raise UsageError(f"unknown --fail-on rule {rule!r}: valid rules are {', '.join(RULES)}")
    return rules
