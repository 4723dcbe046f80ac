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

from kodelyth_ecc import gitrepo, naming
from kodelyth_ecc.bundle import Bundle
from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.harnesses import CUSTOM, DEFAULT_HARNESS, HARNESSES, get_harness
from kodelyth_ecc.plan import (
    PlanConfig,
    WorkerSpec,
    check_verify,
    normalize_seed_paths,
    parse_agents,
)
from kodelyth_ecc.prompts import agent_prompt
from kodelyth_ecc.records import Record
from kodelyth_ecc.termsafe import one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kodelyth_ecc.sandbox import SandboxPolicy

_REPLAY_SUFFIX = re.compile(r"-replay-\d+$")
_HEADING = re.compile(r"^## +(.+?)\s*$", re.MULTILINE)
# A commit the origin started from: a full object id (SHA-1 or SHA-256), never an
# abbreviation or a name, which could name some other commit here.
_FULL_OBJECT_ID = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
# The user and password of a URL (``https://user:token@host``).
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")
# What a message shows of a bundle value: enough to recognise it, never a whole value.
SHOWN_VALUE = 24


def shown_text(text: str, limit: int | None = None) -> str:
    """Bundle text for one line of a terminal: credentials in URLs taken out, control
    and bidi characters written out (``termsafe.one_line``), cut to ``limit``."""
    return one_line(_URL_CREDENTIALS.sub(r"\1***@", text), limit)


def shown_value(value: object) -> str:
    """A bundle value quoted in a message or warning: ``shown_text`` cut short, in
    quotes (escapes are not doubled, as ``repr`` would)."""
    return f"'{shown_text(value if isinstance(value, str) else repr(value), SHOWN_VALUE)}'"


class BaseNotHere(KodelythError):
    """The replay's base names no commit in this repository."""


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


def next_replay_name(
    session: str,
    coordination_root: str,
    repo_root: str,
    *,
    worktree_root: str | None = None,
    slugs: Sequence[str] = (),
    start: int = 1,
) -> str:
    """``<origin>-replay-N`` with the smallest free N (the origin's own suffix stripped;
    a long origin is shortened so that the name stays within the name rule)."""
    from kodelyth_ecc.freename import MAX_NAME_NUMBER, first_free_name
    from kodelyth_ecc.sessiondir import MAX_SESSION_NAME

    room = MAX_SESSION_NAME - len(f"-replay-{MAX_NAME_NUMBER}")
    origin = origin_name(session)[:room].rstrip("-_") or "session"
    return first_free_name(
        f"{origin}-replay",
        coordination_root=coordination_root,
        repo_root=repo_root,
        worktree_root=worktree_root,
        slugs=slugs,
        start=start,
        bare_first=False,
    )


_FROM_FLAG = "--base-ref"  # the reason of a base the user chose


class BaseChoice(Record):
    ref: str
    reason: str
    warnings: tuple[str, ...] = ()


def is_full_commit_id(value: object) -> bool:
    """A full object id (40 hex digits, or 64 in a SHA-256 repository): the only form
    of ``meta.base_commit`` that is taken to be the origin's commit."""
    return isinstance(value, str) and bool(_FULL_OBJECT_ID.fullmatch(value))


def _commit_exists(repo_root: str, sha: str) -> bool:
    """``sha`` is a full object id naming a commit here. Resolved with ``^{commit}``
    (as ``gitrepo.commit_exists`` does) and compared: a branch or tag named like hex
    (or a 64-digit id in a SHA-1 repository, which git looks up as a name) is not the
    origin's commit."""
    if not is_full_commit_id(sha):
        return False
    _, found = gitrepo.locate(sha, repo_root)  # one git call: rev-parse sha^{commit}
    return found is not None and found.lower() == sha.lower()


def choose_base(bundle: Bundle, repo_root: str, base_ref: str | None) -> BaseChoice:
    """--base-ref; else the origin's commit when it exists here; else its ref; else HEAD."""
    origin_commit = bundle.meta.get("base_commit")
    origin_ref = bundle.meta.get("base_ref")
    have_origin = isinstance(origin_commit, str) and _commit_exists(repo_root, origin_commit)
    warnings: list[str] = []
    if isinstance(origin_commit, str) and not have_origin:
        if is_full_commit_id(origin_commit):
            what = f"the origin's base commit {origin_commit[:12]} is not in this repository"
        else:
            # Never the value: only a full object id is shown, and that is hex.
            what = (
                "the bundle's meta.base_commit is not a full commit id (40 or 64 hex "
                "digits), so the origin's base commit is not in this repository"
            )
        warnings.append(
            f"{what}: the replay runs against different code (fetch it, or choose "
            "--base-ref knowingly)"
        )
    if base_ref:
        choice = BaseChoice(base_ref, _FROM_FLAG)
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
                f"the chosen base {shown_text(choice.ref)} does not contain the origin's "
                f"commit {origin_commit[:12]}: don't replay across incompatible bases "
                "without knowing it"
            )
    return choice._replace(warnings=tuple(warnings))


def resolve_base(bundle: Bundle, repo_root: str, choice: BaseChoice) -> str:
    """The commit ``choice`` names here; ``BaseNotHere`` when it names none.

    A ``--base-ref`` the user gave fails as git's own lookup does. A base taken from
    the bundle (or ``HEAD``) fails with a hint at what to fetch, and never quotes
    more of the bundle than a short, escaped excerpt."""
    if choice.reason == _FROM_FLAG:
        return gitrepo.resolve_commit(repo_root, choice.ref)
    if "\x00" not in choice.ref:  # no argument to git can hold one
        _, found = gitrepo.locate(choice.ref, repo_root)
        if found is not None:
            return found
    if not gitrepo.git("rev-list", "-n", "1", "--all", cwd=repo_root, check=False).strip():
        raise BaseNotHere(
            f"the repository {repo_root} has no commits yet: worktrees start from a commit, "
            "so commit something first (e.g. `git commit --allow-empty -m init`)"
        )
    origin_commit = bundle.meta.get("base_commit")
    if choice.ref == "HEAD":
        what = "HEAD does not name a commit in this repository"
    else:
        what = f"the bundle's base ref {shown_value(choice.ref)} is not in this repository"
    if is_full_commit_id(origin_commit):
        assert isinstance(origin_commit, str)
        raise BaseNotHere(
            f"{what}, nor is the origin's commit {origin_commit[:12]}: fetch it "
            f"(`git fetch <remote> {origin_commit}`) or choose a base with --base-ref"
        )
    raise BaseNotHere(f"{what}: fetch it, or choose a base with --base-ref")


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
        for index, agent in enumerate(meta_agents):
            try:
                naming.validate_worker_name(agent if isinstance(agent, str) else "")
            except UsageError:
                # The index, never the value: a bundle is hostile.
                raise UsageError(
                    f"invalid agent name in the bundle's meta.agents[{index}]: agent names "
                    "are letters, digits, spaces, '.', '_' or '-' (at most 64 characters, "
                    "starting with a letter or digit); pass --agents a,b,c"
                ) from None
        return list(meta_agents)
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
    model: str | None = None,
    launcher_command: str | None = None,
    worker_timeout: float | None = None,
    record: bool = True,
    offline: bool = False,
    on_divergence: str = "stop",
    sandbox: SandboxPolicy | None = None,
    verify: str | None = None,
    verify_timeout: float | None = None,
) -> PlanConfig:
    """A ``PlanConfig`` that re-runs ``bundle`` with the given overrides.

    ``variation`` in the config's meta records exactly which overrides were given.
    """
    coord_root = coordination_root or os.path.join(repo_root, ".orchestration")
    tasks = recover_tasks(bundle)
    slugs = [w.slug for w in bundle.workers]
    names = replay_agents(bundle, agents)

    bundle_harness = bundle.meta.get("harness")
    launcher = bundle.meta.get("launcher")
    use_launcher = launcher_command or (
        launcher if trust_launcher and harness is None and isinstance(launcher, str) else None
    )
    if launcher_command is not None:
        if harness is not None:
            raise UsageError("--harness and --launcher-cmd are exclusive: pick one")
        chosen_harness = CUSTOM
    elif harness is not None:
        chosen_harness = get_harness(harness).name
    elif bundle_harness == CUSTOM and use_launcher is not None:
        chosen_harness = CUSTOM
    elif isinstance(bundle_harness, str) and bundle_harness:
        if bundle_harness not in HARNESSES:
            why = (
                "ran a custom launcher (replay it with --trust-launcher or --launcher-cmd)"
                if bundle_harness == CUSTOM
                else "is not a harness known here"
            )
            raise UsageError(
                f"the bundle's meta.harness {why}: pass --harness ({', '.join(HARNESSES)})"
            )
        chosen_harness = bundle_harness
    else:
        chosen_harness = DEFAULT_HARNESS
    origin_model = bundle.meta.get("model")
    # The origin's model goes with the origin's harness, and never into a launcher (a
    # trusted one already names its model).
    inherits = (
        harness is None
        and use_launcher is None
        and chosen_harness in HARNESSES
        and HARNESSES[chosen_harness].model_flag is not None
    )
    chosen_model = model or (
        origin_model if inherits and isinstance(origin_model, str) and origin_model else None
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
    if launcher_command is not None:
        variation["launcher"] = launcher_command
    elif use_launcher is not None:
        variation["trusted_launcher"] = True
    if model is not None:
        variation["model"] = model
    if worker_timeout is not None:
        variation["worker_timeout_s"] = worker_timeout
    if verify is not None:
        # Never the origin's check: a bundle's commands are not run (--verify says it).
        variation["verify"] = check_verify(verify)
    if offline:
        variation["offline"] = True
        variation["on_divergence"] = on_divergence
    replay_of: dict[str, Any] = {"session": bundle.session}
    if bundle_sha256:
        replay_of["bundle_sha256"] = bundle_sha256
    seeds, _ = replay_seeds(bundle, repo_root)
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
        model=chosen_model,
        worker_timeout=worker_timeout,
        verify=verify,
        verify_timeout=verify_timeout,
        record=record,
        offline=offline,
        on_divergence=on_divergence,
        replay_sources=replay_sources(bundle, [naming.slugify(n) for n in names])
        if offline
        else {},
        sandbox=sandbox,
    )


class RecordingInfo(Record):
    """What a bundle worker's recording holds, for a replay's dry-run and its checks."""

    slug: str
    turns: int
    made_here: bool
    commands: tuple[str, ...]
    paths: tuple[str, ...]
    # Every other tool call, as ``name {arguments}``.
    calls: tuple[str, ...] = ()


def recordings(bundle: Bundle, slugs: Sequence[str]) -> dict[str, RecordingInfo | None]:
    """Per replay worker (by slug), the origin worker's recording (None: it has none)."""
    from kodelyth_ecc.exchanges import sealed_here, tool_calls, what_calls_do

    found: dict[str, RecordingInfo | None] = {}
    tasks = recover_tasks(bundle)
    first = bundle.workers[0].slug
    for slug in slugs:
        worker = bundle.worker(slug)
        recorded = getattr(worker, "exchanges", None) if worker is not None else None
        if worker is None or not recorded:
            found[slug] = None
            continue
        # Made here, for this worker and this task, and replayed with the same task (a
        # bundle's meta.task could give a sealed recording another one).
        made_here = sealed_here(recorded, worker.recording, slug, worker.task) and (
            (tasks.shared or tasks.task_for(slug, first)) == extract_task(worker.task)[0]
        )
        calls = [call for exchange in recorded for call in tool_calls(exchange)]
        commands, paths, others = what_calls_do(calls)
        found[slug] = RecordingInfo(
            slug,
            len(recorded),
            made_here,
            tuple(commands),
            tuple(paths),
            tuple(others),
        )
    return found


def replay_sources(bundle: Bundle, slugs: Sequence[str]) -> dict[str, bytes]:
    """What each offline worker's proxy answers from (``replay-source.json``): the origin
    worker's recording and its context; an empty one for a worker without."""
    import msgspec

    sources: dict[str, bytes] = {}
    for slug in slugs:
        worker = bundle.worker(slug)
        source = {
            "recording": getattr(worker, "recording", None) if worker is not None else None,
            "exchanges": (getattr(worker, "exchanges", None) if worker is not None else None) or [],
        }
        sources[slug] = msgspec.json.encode(source)
    return sources


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _seed_problem(repo_root: str, seed: str) -> str | None:
    """Why the bundle's ``seed`` is not copied into the replay's worktrees (None: it
    is). The rules of ``plan.normalize_seed_paths``, which would refuse the plan."""
    if not seed.strip():
        return "is empty"
    if "\x00" in seed:
        return "holds a NUL character"
    root = os.path.normpath(repo_root)
    real_root = os.path.realpath(root)
    lexical = os.path.normpath(os.path.join(root, seed))
    real = os.path.realpath(lexical)
    if not _inside(real, real_root):
        return "is outside this repository"
    if not os.path.exists(real):
        return "does not exist in this repository"
    if real == real_root or lexical == root:
        return "is the whole repository"
    rel = os.path.relpath(lexical, root) if _inside(lexical, root) else ""
    if ".git" in {*rel.split(os.sep), *os.path.relpath(real, real_root).split(os.sep)}:
        return "is inside git's own data (.git)"
    try:
        normalize_seed_paths([seed], repo_root)
    except UsageError:
        return "cannot be a seed here"
    return None


def replay_seeds(bundle: Bundle, repo_root: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(seeds, warnings): the bundle's ``meta.seed_paths`` that exist inside this repo
    (outside ``.git``), and one warning for each one skipped. A bad seed never stops
    a replay: the bundle is a stranger's, and its seeds are only a convenience."""
    origin_seeds = bundle.meta.get("seed_paths")
    seeds: list[str] = []
    warnings: list[str] = []
    for index, seed in enumerate(origin_seeds if isinstance(origin_seeds, list) else []):
        reason = "is not a string" if not isinstance(seed, str) else _seed_problem(repo_root, seed)
        if reason is None:
            if seed not in seeds:
                seeds.append(seed)
            continue
        warnings.append(
            f"the bundle's seed path meta.seed_paths[{index}] {shown_value(seed)} is skipped: "
            f"it {reason}"
        )
    return tuple(seeds), tuple(warnings)


def differences(bundle: Bundle, config: PlanConfig) -> list[tuple[str, str, str]]:
    """(what, origin, replay) for everything the replay changes, for dry-run."""
    meta = bundle.meta
    origin_agents = meta.get("agents") or [w.slug for w in bundle.workers]
    rows = []
    pairs = (
        ("harness", str(meta.get("harness") or DEFAULT_HARNESS), str(config.harness)),
        ("agents", ",".join(map(str, origin_agents)), ",".join(config.agents)),
        ("model", str(meta.get("model") or "-"), str(config.model or "-")),
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
