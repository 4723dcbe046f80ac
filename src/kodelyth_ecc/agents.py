"""Which specialist agents a swarm gets for a task when the user gives a count.

Keyword rules run in priority order (whole words, case-insensitive); then the two
anchors; then a fixed rotation; then the rest of the catalogue, so that every
count from 1 to 12 yields distinct agents.
"""

from __future__ import annotations

import re

MIN_AGENTS = 1
MAX_AGENTS = 12
DEFAULT_AGENTS = 4

KEYWORD_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("security-reviewer", ("security", "auth", "vuln", "cve", "secret", "injection", "owasp")),
    (
        "performance-optimizer",
        ("perf", "slow", "p99", "latency", "throughput", "bottleneck"),
    ),
    (
        "load-tester",
        ("load test", "stress test", "capacity", "k6", "locust", "artillery"),
    ),
    ("architect", ("architect", "design", "adr", "rfc", "trade-off", "system design")),
    ("api-guardian", ("api", "endpoint", "contract", "breaking change", "rest", "graphql")),
    ("tdd-guide", ("test", "tdd", "coverage", "spec", "unit test")),
    (
        "refactor-cleaner",
        ("refactor", "cleanup", "tech debt", "code smell", "simplify"),
    ),
    ("ux-reviewer", ("ux", "accessibility", "wcag", "a11y", "usability", "ui")),
    (
        "doc-updater",
        ("doc", "docs", "documentation", "readme", "guide", "tutorial", "comment"),
    ),
    ("release-captain", ("release", "ship", "tag", "semver", "rollback")),
    (
        "incident-commander",
        ("incident", "outage", "down", "p0", "p1", "sev1", "sev2", "on-call"),
    ),
    ("debug-detective", ("debug", "why is", "stack trace", "silent fail")),
    ("database-reviewer", ("database", "sql", "postgres", "mysql", "index", "n+1")),
    ("prompt-injection-hunter", ("devil-mode", "adversarial", "red team")),
)

ANCHORS = ("code-reviewer", "pair-programmer")

ROTATION = (
    "code-reviewer",
    "security-reviewer",
    "pair-programmer",
    "tdd-guide",
    "performance-optimizer",
    "api-guardian",
    "ux-reviewer",
    "doc-updater",
)

# One pattern per agent, matched against the lower-cased task. (re.IGNORECASE would do
# the same, but compiling these with it costs tens of milliseconds at every start-up.)
_PATTERNS = tuple(
    (
        agent,
        re.compile(
            r"(?<![a-z0-9])(?:" + "|".join(re.escape(word) for word in words) + r")(?![a-z0-9])"
        ),
    )
    for agent, words in KEYWORD_RULES
)


def matched_agents(task: str) -> list[str]:
    """Agents whose keywords appear in ``task`` as whole words, in priority order."""
    text = task.lower()
    return [agent for agent, pattern in _PATTERNS if pattern.search(text)]


def pick_agents(task: str, count: int = DEFAULT_AGENTS) -> list[str]:
    if not MIN_AGENTS <= count <= MAX_AGENTS:
        raise ValueError(f"agent count must be {MIN_AGENTS}..{MAX_AGENTS}, got {count}")
    catalogue = [agent for agent, _ in KEYWORD_RULES]
    picked: list[str] = []
    for agent in (*matched_agents(task), *ANCHORS, *ROTATION, *catalogue):
        if agent not in picked:
            picked.append(agent)
        if len(picked) == count:
            break
    return picked
