"""Replaying a bundle: recover its task, agents, harness and base, pick a free
``<origin>-replay-N`` name, and build a ``PlanConfig`` for the orchestrator.

A bundle comes from anywhere, so nothing in it is executed by default: its
launcher template is used only when the caller trusts it explicitly.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from typing import Any

from kodelyth_ecc import gitrepo, naming, tmux
from kodelyth_ecc.bundle import Bundle
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.launchers import DEFAULT_HARNESS, HARNESSES, get_harness
from kodelyth_ecc.plan import PlanConfig, WorkerSpec, parse_agents
from kodelyth_ecc.prompts import agent_prompt
from kodelyth_ecc.records import Record

_REPLAY_SUFFIX = re.compile(r"-replay-\d+$")
_HEADING = re.compile(r"^## +(.+?)\s*$", re.MULTILINE)
MAX_REPLAY_NUMBER = 10_000


def _section(text: str, title: str, until: str | None = None) -> str | None:
    """The body under ``## title``, up to ``## until`` (or the next ``##`` heading)."""
    headings = list(_HEADING.finditer(text))
    for index, heading in enumerate(headings):
        if heading.group(1) != title:
            continue
        end = len(text)
        for later in headings[index + 1 :]:
            if until is None or later.group(1) == until:
                end = later.start()
                break
        return text[heading.end() : end].strip("\n").strip()
    return None


def extract_task(task_md: str) -> tuple[str, str]:
    """(task, where it came from): the ``## Shared Task`` body, else the ``## Objective``
    ... ``## Completion`` body, else the whole text."""
    shared = _section(task_md, "Shared Task")
    if shared:
        return shared, "shared"
    objective = _section(task_md, "Objective", until="Completion")
    if objective:
        return objective, "objective"
    return task_md.strip(), "text"


class ReplayTasks(Record):
    """The task(s) a replay gives its workers."""

    shared: str | None
    per_worker: dict[str, str]
    source: str  # "meta", "shared", "objective" or "text"

    def task_for(self, agent: str, first: str) -> str:
        return self.per_worker.get(naming.slugify(agent), self.per_worker.get(first, ""))


def recover_tasks(bundle: Bundle) -> ReplayTasks:
    meta_task = bundle.meta.get("task")
    if isinstance(meta_task, str) and meta_task.strip():
        return ReplayTasks(meta_task.strip(), {}, "meta")
    found = {w.slug: extract_task(w.task) for w in bundle.workers}
    first = bundle.workers[0].slug
    tasks = {slug: task for slug, (task, _) in found.items()}
    source = found[first][1]
    if len(set(tasks.values())) == 1:
        return ReplayTasks(tasks[first], {}, source)
    # A hand-written plan: every worker had its own task. Keep them apart (the JS
    # tool gave every worker the first one's).
    return ReplayTasks(None, tasks, source)


def origin_name(session: str) -> str:
    return _REPLAY_SUFFIX.sub("", session)


def name_is_free(
    name: str, coordination_root: str, repo_root: str, worktree_root: str, slugs: Sequence[str]
) -> bool:
    """Free everywhere it would be used: coordination dir, tmux, branches, worktrees."""
    if os.path.lexists(os.path.join(coordination_root, name)) or tmux.has_session(name):
        return False
    if gitrepo.branches(repo_root, prefix=f"orchestrator-{name}-"):
        return False
    return not any(
        os.path.lexists(naming.worktree_path(worktree_root, repo_root, name, slug))
        for slug in slugs
    )


def next_replay_name(
    session: str,
    coordination_root: str,
    repo_root: str,
    *,
    worktree_root: str | None = None,
    slugs: Sequence[str] = (),
    start: int = 1,
) -> str:
    """``<origin>-replay-N`` with the smallest free N (the origin's own suffix stripped)."""
    base = origin_name(session)
    root = worktree_root or os.path.dirname(os.path.normpath(repo_root))
    for number in range(start, MAX_REPLAY_NUMBER):
        name = f"{base}-replay-{number}"
        if name_is_free(name, coordination_root, repo_root, root, slugs):
            return naming.validate_session_name(name)
    raise KodelythError(f"no free replay name for {base!r} below -replay-{MAX_REPLAY_NUMBER}")


class BaseChoice(Record):
    ref: str
    reason: str
    warnings: tuple[str, ...] = ()


def _commit_exists(repo_root: str, sha: str) -> bool:
    return bool(re.fullmatch(r"[0-9a-fA-F]{4,64}", sha)) and gitrepo.commit_exists(repo_root, sha)


def choose_base(bundle: Bundle, repo_root: str, base_ref: str | None) -> BaseChoice:
    """--base-ref; else the origin's commit when it exists here; else its ref; else HEAD."""
    origin_commit = bundle.meta.get("base_commit")
    origin_ref = bundle.meta.get("base_ref")
    have_origin = isinstance(origin_commit, str) and _commit_exists(repo_root, origin_commit)
    warnings: list[str] = []
    if isinstance(origin_commit, str) and not have_origin:
        warnings.append(
            f"the origin's base commit {origin_commit[:12]} is not in this repository: "
            "the replay runs against different code (fetch it, or choose --base-ref knowingly)"
        )
    if base_ref:
        choice = BaseChoice(base_ref, "--base-ref")
    elif have_origin:
        assert isinstance(origin_commit, str)
        choice = BaseChoice(origin_commit, "the origin's base commit (same code as the origin)")
    elif isinstance(origin_ref, str) and origin_ref:
        choice = BaseChoice(origin_ref, "the origin's base ref")
    else:
        choice = BaseChoice("HEAD", "default (the bundle names no base)")
    if have_origin and choice.ref != origin_commit:
        assert isinstance(origin_commit, str)
        chosen = gitrepo.resolve_commit(repo_root, choice.ref)
        contains = gitrepo.is_ancestor(repo_root, origin_commit, chosen)
        if not contains:
            warnings.append(
                f"the chosen base {choice.ref} does not contain the origin's commit "
                f"{origin_commit[:12]}: don't replay across incompatible bases without knowing it"
            )
    return choice._replace(warnings=tuple(warnings))


def load_replay_source(
    target: str, coordination_root: str | None, *, max_bytes: int
) -> tuple[Bundle, str]:
    """A bundle file (validated exactly as import does) or a session exported in memory;
    with the sha256 of the bundle's bytes."""
    from kodelyth_ecc.bundle import encode_bundle, read_bundle_file

    if target.endswith(".json") or os.path.isfile(target) or coordination_root is None:
        return read_bundle_file(target, max_bytes=max_bytes)
    from kodelyth_ecc.export import export_bundle

    bundle = export_bundle(target, coordination_root)
    return bundle, hashlib.sha256(encode_bundle(bundle)).hexdigest()


def replay_agents(bundle: Bundle, agents: str | Sequence[str] | None = None) -> list[str]:
    """The replay's agent names: ``agents`` (``--agents``), else ``meta.agents``, else
    the bundle's worker slugs."""
    if agents is not None:
        parsed = parse_agents(agents if isinstance(agents, str) else list(agents))
        if isinstance(parsed, int):
            raise UsageError("replay --agents takes names (a,b,c), not a count")
        return parsed
    meta_agents = bundle.meta.get("agents")
    if isinstance(meta_agents, list) and meta_agents:
        return [naming.validate_worker_name(a) for a in meta_agents]
    return [w.slug for w in bundle.workers]


def build_replay_plan_config(
    bundle: Bundle,
    *,
    repo_root: str,
    coordination_root: str | None = None,
    harness: str | None = None,
    agents: str | Sequence[str] | None = None,
    base_ref: str | None = None,
    session_name: str | None = None,
    replace_existing: bool = False,
    trust_launcher: bool = False,
    bundle_sha256: str | None = None,
    base: BaseChoice | None = None,
) -> PlanConfig:
    """A ``PlanConfig`` that re-runs ``bundle`` with the given overrides.

    ``variation`` in the config's meta records exactly which overrides were given.
    """
    coord_root = coordination_root or os.path.join(repo_root, ".orchestration")
    tasks = recover_tasks(bundle)
    slugs = [w.slug for w in bundle.workers]
    names = replay_agents(bundle, agents)

    bundle_harness = bundle.meta.get("harness")
    if harness is not None:
        chosen_harness = get_harness(harness).name
    elif isinstance(bundle_harness, str) and bundle_harness:
        if bundle_harness not in HARNESSES:
            raise UsageError(
                f"the bundle's harness {bundle_harness!r} is unknown here: pass --harness "
                f"({', '.join(HARNESSES)})"
            )
        chosen_harness = bundle_harness
    else:
        chosen_harness = DEFAULT_HARNESS

    launcher = bundle.meta.get("launcher")
    use_launcher = (
        launcher if trust_launcher and harness is None and isinstance(launcher, str) else None
    )
    choice = base or choose_base(bundle, repo_root, base_ref)

    if tasks.shared is not None:
        workers = tuple(WorkerSpec(n, agent_prompt(n, tasks.shared)) for n in names)
    elif tasks.source == "shared":
        workers = tuple(WorkerSpec(n, agent_prompt(n, tasks.task_for(n, slugs[0]))) for n in names)
    else:
        # Hand-written objectives replay as they were written.
        workers = tuple(WorkerSpec(n, tasks.task_for(n, slugs[0])) for n in names)

    name = session_name or next_replay_name(
        bundle.session, coord_root, repo_root, slugs=[naming.slugify(n) for n in names]
    )
    variation: dict[str, Any] = {}
    if harness is not None:
        variation["harness"] = chosen_harness
    if agents is not None:
        variation["agents"] = list(names)
    if base_ref is not None:
        variation["base_ref"] = base_ref
    if session_name is not None:
        variation["session"] = session_name
    if use_launcher is not None:
        variation["trusted_launcher"] = True
    replay_of: dict[str, Any] = {"session": bundle.session}
    if bundle_sha256:
        replay_of["bundle_sha256"] = bundle_sha256
    origin_seeds = bundle.meta.get("seed_paths")
    seeds = [
        s
        for s in (origin_seeds if isinstance(origin_seeds, list) else [])
        if isinstance(s, str) and _seed_ok(repo_root, s)
    ]
    return PlanConfig(
        session_name=name,
        repo_root=repo_root,
        workers=workers,
        coordination_root=coord_root,
        base_ref=choice.ref,
        launcher_command=use_launcher,
        seed_paths=tuple(seeds),
        replace_existing=replace_existing,
        task=tasks.shared,
        harness=chosen_harness,
        agents=tuple(names),
        extra_meta={"replay_of": replay_of, "variation": variation},
    )


def _seed_ok(repo_root: str, seed: str) -> bool:
    """Seeds named by a bundle are used only when they exist inside this repo."""
    if not seed or "\x00" in seed:
        return False
    real_root = os.path.realpath(repo_root)
    real = os.path.realpath(os.path.join(repo_root, seed))
    return real.startswith(real_root + os.sep) and os.path.exists(real)


def differences(bundle: Bundle, config: PlanConfig) -> list[tuple[str, str, str]]:
    """(what, origin, replay) for everything the replay changes, for dry-run."""
    meta = bundle.meta
    origin_agents = meta.get("agents") or [w.slug for w in bundle.workers]
    rows = []
    pairs = (
        ("harness", str(meta.get("harness") or DEFAULT_HARNESS), str(config.harness)),
        ("agents", ",".join(map(str, origin_agents)), ",".join(config.agents)),
        (
            "base",
            str(meta.get("base_commit") or meta.get("base_ref") or "HEAD"),
            config.base_ref,
        ),
    )
    for what, before, after in pairs:
        if before != after:
            rows.append((what, before, after))
    return rows
