"""The regression gate (``compare --baseline``): objective facts only, about what the
second run lacks that the baseline has.

``RULES`` are checked on a pair of runs; with many runs (``compare.many``) they are
checked on each pair of runs, and ``verify-rate-dropped`` on the arms' pass rates."""

from __future__ import annotations

from collections.abc import Sequence

from kodelyth_ecc.compare.results import PASSED, Finding, RunFacts, WorkerComparison
from kodelyth_ecc.errors import UsageError
from kodelyth_ecc.handoff_sections import EMPTY, WRITTEN, Handoff, required_titles, title_key

# `compare --baseline` exits with this when a gate rule fires (1 stays "error").
EXIT_REGRESSION = 3
RULES = (
    "missing-worker",
    "state-regressed",
    "empty-handoff",
    "missing-section",
    "verify-regressed",
)
# Many runs: an arm's verify pass rate whose 95% interval lies wholly below the
# baseline arm's; with the rules above, checked run pair by run pair.
VERIFY_RATE_DROPPED = "verify-rate-dropped"
MANY_RULES = (VERIFY_RATE_DROPPED, *RULES)
# What many-run mode checks without --fail-on: per-run state rules fire on noise.
MANY_DEFAULT_RULES = (VERIFY_RATE_DROPPED, "missing-worker")


def check_rules(rules: Sequence[str] | None, valid: Sequence[str] = RULES) -> list[str]:
    """The gate rules to apply (None: every rule of ``valid``), checked."""
    chosen_rules = list(valid if rules is None else rules)
    unknown = [r for r in chosen_rules if r not in valid]
    if unknown:
        raise UsageError(f"unknown gate rule {unknown[0]!r}: valid rules are {', '.join(valid)}")
    return chosen_rules


def _verify_status(facts: RunFacts) -> str:
    return facts.verify.status if facts.verify is not None else "missing"


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
    if (
        "verify-regressed" in rules
        and _verify_status(worker.a) == PASSED
        and _verify_status(worker.b) != PASSED
    ):
        verify = worker.b.verify
        detail = f"verify passed in the baseline, {_verify_status(worker.b)} here"
        if verify is not None and verify.timed_out:
            detail += " (timed out)"
        elif verify is not None and verify.exit_code is not None:
            detail += f" (exit code {verify.exit_code})"
        found.append(Finding(slug, "verify-regressed", detail))
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


def parse_rules(
    text: str | None, valid: Sequence[str] = RULES, default: Sequence[str] | None = None
) -> list[str]:
    """``--fail-on a,b``: the rules, checked against ``valid``; None means ``default``
    (None: every valid rule), "all" every valid rule."""
    if text is None:
        return list(valid if default is None else default)
    if text.strip() == "all":
        return list(valid)
    rules = [part.strip() for part in text.split(",") if part.strip()]
    if not rules:
        raise UsageError(f"empty --fail-on: name rules from {', '.join(valid)} (or all)")
    for rule in rules:
        if rule in MANY_RULES and rule not in valid:
            raise UsageError(
                f"--fail-on {rule} only applies to many runs (compare DIR, or A... --vs B...): "
                f"valid rules here are {', '.join(valid)}"
            )
        if rule not in valid:
            raise UsageError(f"unknown --fail-on rule {rule!r}: valid rules are {', '.join(valid)}")
    return rules
