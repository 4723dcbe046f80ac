"""Agent picking for ``--agents N``: keywords in priority order, then anchors, then rotation."""

from __future__ import annotations

import json

import pytest

from kodelyth_ecc.agents import ANCHORS, KEYWORD_RULES, ROTATION, pick_agents
from tests.conftest import Sandbox

# The issue's priority order, spelled out here so a reordering of KEYWORD_RULES is caught.
PRIORITY = (
    "security-reviewer",
    "performance-optimizer",
    "load-tester",
    "architect",
    "api-guardian",
    "tdd-guide",
    "refactor-cleaner",
    "ux-reviewer",
    "doc-updater",
    "release-captain",
    "incident-commander",
    "debug-detective",
    "database-reviewer",
    "prompt-injection-hunter",
)

# Every keyword of the issue with the one agent it selects.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "security-reviewer": ("security", "auth", "vuln", "cve", "secret", "injection", "owasp"),
    "performance-optimizer": ("perf", "slow", "p99", "latency", "throughput", "bottleneck"),
    "load-tester": ("load test", "stress test", "capacity", "k6", "locust", "artillery"),
    "architect": ("architect", "design", "adr", "rfc", "trade-off", "system design"),
    "api-guardian": ("api", "endpoint", "contract", "breaking change", "rest", "graphql"),
    "tdd-guide": ("test", "tdd", "coverage", "spec", "unit test"),
    "refactor-cleaner": ("refactor", "cleanup", "tech debt", "code smell", "simplify"),
    "ux-reviewer": ("ux", "accessibility", "wcag", "a11y", "usability", "ui"),
    "doc-updater": ("doc", "docs", "documentation", "readme", "guide", "tutorial", "comment"),
    "release-captain": ("release", "ship", "tag", "semver", "rollback"),
    "incident-commander": ("incident", "outage", "down", "p0", "p1", "sev1", "sev2", "on-call"),
    "debug-detective": ("debug", "why is", "stack trace", "silent fail"),
    "database-reviewer": ("database", "sql", "postgres", "mysql", "index", "n+1"),
    "prompt-injection-hunter": ("devil-mode", "adversarial", "red team"),
}

# Keywords that contain another agent's keyword as a whole word, so they select two agents.
COMPOUND = {
    "load test": {"load-tester", "tdd-guide"},
    "stress test": {"load-tester", "tdd-guide"},
}

NO_KEYWORDS = "make the widget frobnicate properly"


def test_rules_follow_the_issue_priority_order() -> None:
    assert tuple(agent for agent, _ in KEYWORD_RULES) == PRIORITY
    assert dict(KEYWORD_RULES) == KEYWORDS
    assert ANCHORS == ("code-reviewer", "pair-programmer")
    assert ROTATION == (
        "code-reviewer",
        "security-reviewer",
        "pair-programmer",
        "tdd-guide",
        "performance-optimizer",
        "api-guardian",
        "ux-reviewer",
        "doc-updater",
    )


@pytest.mark.parametrize("agent", list(KEYWORDS))
def test_every_keyword_selects_its_agent_first(agent: str) -> None:
    for keyword in KEYWORDS[agent]:
        picked = pick_agents(f"please look at the {keyword} here", 12)
        expected = COMPOUND.get(keyword, {agent})
        assert agent in expected
        assert set(picked[: len(expected)]) == expected, (keyword, picked)


@pytest.mark.parametrize(
    ("task", "unexpected"),
    [
        ("audit the oauth flow", "security-reviewer"),  # "auth" inside "oauth"
        ("make the author page nicer", "security-reviewer"),  # "auth" at the start of a word
        ("update the rapid prototype", "api-guardian"),  # "api" inside "rapid"
        ("the building is on fire", "ux-reviewer"),  # "ui" inside "building"
        ("restore the backup", "api-guardian"),  # "rest" inside "restore"
        ("fix the attestation step", "tdd-guide"),  # "test" inside "attestation"
        ("shutdown hook misbehaves", "incident-commander"),  # "down" inside "shutdown"
        ("the designer wants blue", "architect"),  # "design" prefix
        ("check the p10 numbers", "incident-commander"),  # "p1" followed by a digit
        ("n+10 queries", "database-reviewer"),  # "n+1" followed by a digit
        ("whyis this broken", "debug-detective"),  # multi-word keyword needs the space
        ("load testing later", "load-tester"),  # "load test" is a whole phrase
    ],
)
def test_keywords_match_whole_words_only(task: str, unexpected: str) -> None:
    assert unexpected not in pick_agents(task, 2)


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("Review the API", "api-guardian"),
        ("AUDIT AUTH", "security-reviewer"),
        ("Why Is it so SLOW", "performance-optimizer"),
        ("Fix the N+1 in orders", "database-reviewer"),
        ("run a Load Test on checkout", "load-tester"),
        ("Devil-Mode review", "prompt-injection-hunter"),
        ("OWASP top ten", "security-reviewer"),
    ],
)
def test_keywords_are_case_insensitive(task: str, expected: str) -> None:
    assert pick_agents(task, 1) == [expected]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("why is checkout returning 500", ["debug-detective"]),
        ("run a load test on checkout", ["load-tester", "tdd-guide"]),
        ("kill the n+1 queries", ["database-reviewer"]),
        ("find the silent fail in the worker", ["debug-detective"]),
        ("read the stack trace", ["debug-detective"]),
        ("is this a breaking change?", ["api-guardian"]),
        ("pay down tech debt", ["refactor-cleaner", "incident-commander"]),
        ("red team the agent prompts", ["prompt-injection-hunter"]),
        ("auth, then (api) and 'docs'.", ["security-reviewer", "api-guardian", "doc-updater"]),
    ],
)
def test_multi_word_and_punctuated_keywords(task: str, expected: list[str]) -> None:
    assert pick_agents(task, len(expected)) == expected


def test_keyword_agents_come_in_priority_order_not_task_order() -> None:
    task = "red team the database index, then the docs, ship a release, fix slow auth"
    assert pick_agents(task, 6) == [
        "security-reviewer",
        "performance-optimizer",
        "doc-updater",
        "release-captain",
        "database-reviewer",
        "prompt-injection-hunter",
    ]


def test_keyword_agents_are_cut_at_the_count() -> None:
    task = "slow auth in the api docs"
    assert pick_agents(task, 2) == ["security-reviewer", "performance-optimizer"]


def test_anchors_follow_keyword_agents() -> None:
    assert pick_agents("audit oauth flow for security regressions", 3) == [
        "security-reviewer",
        "code-reviewer",
        "pair-programmer",
    ]
    assert pick_agents("speed up the slow api", 4) == [
        "performance-optimizer",
        "api-guardian",
        "code-reviewer",
        "pair-programmer",
    ]


def test_rotation_fills_after_the_anchors_without_repeats() -> None:
    # security-reviewer is both a keyword agent and in the rotation: it appears once.
    assert pick_agents("security audit", 6) == [
        "security-reviewer",
        "code-reviewer",
        "pair-programmer",
        "tdd-guide",
        "performance-optimizer",
        "api-guardian",
    ]


def test_no_keywords_uses_anchors_then_rotation_then_the_catalogue() -> None:
    assert pick_agents(NO_KEYWORDS, 12) == [
        "code-reviewer",
        "pair-programmer",
        "security-reviewer",
        "tdd-guide",
        "performance-optimizer",
        "api-guardian",
        "ux-reviewer",
        "doc-updater",
        "load-tester",
        "architect",
        "refactor-cleaner",
        "release-captain",
    ]
    assert pick_agents(NO_KEYWORDS, 1) == ["code-reviewer"]
    assert pick_agents(NO_KEYWORDS) == [
        "code-reviewer",
        "pair-programmer",
        "security-reviewer",
        "tdd-guide",
    ]


@pytest.mark.parametrize(
    "task",
    [
        NO_KEYWORDS,
        "audit auth",
        "slow api, docs and tests for the release; why is the database down? red team it",
        " ".join(words[0] for words in KEYWORDS.values()),
    ],
)
def test_every_count_gives_that_many_distinct_agents(task: str) -> None:
    longest = pick_agents(task, 12)
    for count in range(1, 13):
        picked = pick_agents(task, count)
        assert len(picked) == count
        assert len(set(picked)) == count
        # A smaller count is a prefix of a larger one: the order never changes.
        assert picked == longest[:count]


@pytest.mark.parametrize("count", [0, 13, -1])
def test_out_of_range_counts_are_refused(count: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.12"):
        pick_agents("audit auth", count)


def test_cli_uses_the_picked_agents(sandbox: Sandbox) -> None:
    result = sandbox.cli(
        "swarm", "--task", "Why is the API so slow?", "--agents", "5", "--harness", "echo", "--json"
    )
    assert result.code == 0, result
    names = [w["workerName"] for w in json.loads(result.stdout)["workerPlans"]]
    assert names == [
        "performance-optimizer",
        "api-guardian",
        "debug-detective",
        "code-reviewer",
        "pair-programmer",
    ]


def test_cli_default_is_four_agents(sandbox: Sandbox) -> None:
    result = sandbox.cli("swarm", "--task", "audit oauth flow", "--harness", "echo", "--json")
    assert result.code == 0, result
    plan = json.loads(result.stdout)
    names = [w["workerName"] for w in plan["workerPlans"]]
    assert names == ["code-reviewer", "pair-programmer", "security-reviewer", "tdd-guide"]
    assert plan["sessionName"].endswith("-4a")


def test_cli_agent_list_is_used_verbatim_in_order(sandbox: Sandbox) -> None:
    result = sandbox.cli(
        "swarm",
        "--task",
        "audit auth",
        "--agents",
        "Zeta Bot, alpha_one,beta.two",
        "--harness",
        "echo",
        "--json",
    )
    assert result.code == 0, result
    plan = json.loads(result.stdout)
    workers = [(w["workerName"], w["workerSlug"]) for w in plan["workerPlans"]]
    assert workers == [
        ("Zeta Bot", "zeta-bot"),
        ("alpha_one", "alpha-one"),
        ("beta.two", "beta-two"),
    ]
    assert plan["sessionName"].endswith("-3a")
