"""``kodelyth-ecc replay``: re-run a bundle or session with variations."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable

from kodelyth_ecc import gitrepo
from kodelyth_ecc.commands._common import print_json, sandbox_policy
from kodelyth_ecc.errors import KodelythError, SessionTaken, UsageError
from kodelyth_ecc.harnesses import HARNESSES
from kodelyth_ecc.plan import (
    OrchestrationPlan,
    PlanConfig,
    build_orchestration_plan,
    sandbox_summary,
)
from kodelyth_ecc.preflight import collisions
from kodelyth_ecc.replay import (
    BaseChoice,
    BaseNotHere,
    RecordingInfo,
    build_replay_plan_config,
    choose_base,
    differences,
    load_replay_source,
    recordings,
    recover_tasks,
    replay_seeds,
    resolve_base,
    shown_text,
)
from kodelyth_ecc.termsafe import one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kodelyth_ecc.sandbox import SandboxPolicy

MAX_NAME_RACES = 20


def _print_dry_run(
    *,
    bundle_session: str, config: PlanConfig, plan: OrchestrationPlan, base: BaseChoice,
    commit: str | None, diffs: list[tuple[str, str, str]], task_note: str,
) -> None:  # fmt: skip
    """Every value that comes from the bundle goes through ``shown_text``: a dry-run is
    how a stranger's bundle is inspected, and its text must not drive the terminal."""
    out = sys.stdout
    t = shown_text
    out.write(f"Replay        {t(bundle_session)} -> {t(plan.session_name)}\n")
    slugs = ", ".join(t(w.worker_slug) for w in plan.workers)
    out.write(f"Workers       {len(plan.workers)}: {slugs}\n")
    out.write(f"Harness       {t(str(plan.harness))}\n")
    here = commit[:12] if commit else "not in this repository"
    out.write(f"Base          {t(base.ref)} ({here}): {base.reason}\n")
    out.write(f"Task          {task_note}\n")
    out.write(f"Coordination  {t(plan.coordination_dir)}\n")
    if diffs:
        out.write("Differs from the origin:\n")
        for what, before, after in diffs:
            out.write(f"  {what:<8} {t(before)} -> {t(after)}\n")
    else:
        out.write("Differs from the origin: nothing (same task, agents, harness and base)\n")
    for worker in plan.workers:
        out.write(f"  {t(worker.worker_slug)}: {t(worker.launch_command)}\n")


def _warn(text: str) -> None:
    sys.stderr.write(f"warning: {one_line(text)}\n")


def _check_export(args: argparse.Namespace) -> None:
    """--export is checked before anything is created: its directory exists and is
    writable, and it is not the bundle being replayed."""
    from kodelyth_ecc.commands.compare import check_output_file

    inputs = [args.target] if os.path.isfile(args.target) else []
    check_output_file(args.export, "--export", inputs)


def _claim_free_name(
    args: argparse.Namespace,
    config: PlanConfig,
    plan: OrchestrationPlan,
    configure: Callable[[int], tuple[PlanConfig, OrchestrationPlan]],
    action: Callable[[OrchestrationPlan], object],
) -> tuple[PlanConfig, OrchestrationPlan]:
    """Run ``action`` (write or execute) under an auto-picked name; when another replay
    of the same bundle claims that name first, pick the next free one and try again."""
    for attempt in range(MAX_NAME_RACES):
        try:
            action(plan)
            break
        except KodelythError as exc:
            if args.session is not None or attempt == MAX_NAME_RACES - 1:
                raise
            # Lost the race: the atomic claim (mkdir) failed, or the pre-flight check
            # (which fails before anything is created, so without a cause) saw the
            # other run's names. A failure after this run created something is real:
            # report it, never paper over it with another name.
            lost_race = isinstance(exc, SessionTaken) or (
                exc.__cause__ is None and bool(collisions(plan, execute=True))
            )
            if not lost_race:
                raise
            number = int(plan.session_name.rsplit("-", 1)[1])
            config, plan = configure(number + 1)
    return config, plan


def _print_recordings(infos: dict[str, RecordingInfo | None], offline: bool) -> None:
    """Which workers have a recording and how many turns; for one made elsewhere, every
    command and path its recorded tool calls would make the agent touch (shown
    escaped: a stranger wrote them)."""
    out = sys.stdout
    out.write("Recordings:\n")
    for slug, info in infos.items():
        if info is None:
            out.write(f"  {shown_text(slug)}: no recording\n")
            continue
        where = "made on this machine" if info.made_here else "made on another machine"
        out.write(f"  {shown_text(slug)}: {info.turns} turns, {where}\n")
        if info.made_here and not offline:
            continue
        for command in info.commands:
            out.write(f"    runs      {shown_text(command)}\n")
        for path in info.paths:
            out.write(f"    touches   {shown_text(path)}\n")
        for call in info.calls:
            out.write(f"    calls     {shown_text(call)}\n")
        if not info.commands and not info.paths and not info.calls:
            out.write("    its recorded answers make no tool calls\n")


def _check_offline(
    args: argparse.Namespace, plan: OrchestrationPlan, infos: dict[str, RecordingInfo | None]
) -> None:
    if not plan.proxied:
        raise UsageError(
            "--offline needs the workers' traffic to go through the session's proxy: "
            f"{plan.proxy_note or 'it cannot be pointed at it'}"
        )
    missing = [slug for slug, info in infos.items() if info is None]
    for slug in missing:
        _warn(
            f"worker {shown_text(slug)} has no recording: offline, its first request "
            "diverges (--on-divergence decides what happens)"
        )
    foreign = [slug for slug, info in infos.items() if info is not None and not info.made_here]
    if foreign and args.execute and plan.sandbox is None and not args.trust_recording:
        raise KodelythError(
            f"the recording of worker {shown_text(foreign[0])} was not made on this machine: "
            "its recorded tool calls would run here unsandboxed; drop --no-sandbox, or "
            "review them with a dry-run (without --execute) and pass --trust-recording"
        )


def _sandbox(
    args: argparse.Namespace, bundle_here: bool, infos: dict[str, RecordingInfo | None]
) -> SandboxPolicy | None:
    """The replay's sandbox: on for a stranger's bundle, and for an offline replay of a
    recording made elsewhere, unless --no-sandbox (which then warns what the agents
    can reach); on for anything with --sandbox."""
    from kodelyth_ecc.sandbox import UNSANDBOXED_REACH

    stranger = None
    if not bundle_here:
        stranger = "the bundle was made on another machine"
    elif args.offline and any(i is not None and not i.made_here for i in infos.values()):
        stranger = "its recording was made on another machine"
    on = args.sandbox if args.sandbox is not None else stranger is not None
    if not on and stranger is not None:
        _warn(f"--no-sandbox: {stranger}, and {UNSANDBOXED_REACH}")
    reason = "--sandbox" if args.sandbox else (stranger or "--sandbox")
    return sandbox_policy(args, on=on, reason=reason)


def run(args: argparse.Namespace) -> int:
    if (args.wait or args.export or args.timeout is not None) and not args.execute:
        raise UsageError("--wait, --timeout and --export only apply with --execute")
    if (args.on_divergence is not None or args.trust_recording) and not args.offline:
        raise UsageError("--on-divergence and --trust-recording only apply with --offline")
    if args.offline and args.no_record:
        raise UsageError("--offline answers through the session's proxy: drop --no-record")
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout only applies with --wait")
    if args.verify_timeout is not None and args.verify is None:
        raise UsageError("--verify-timeout only applies with --verify")
    if args.export is not None:
        _check_export(args)
    repo_root = gitrepo.repo_root()
    coord_root = (
        os.path.abspath(args.coordination_root)
        if args.coordination_root
        else os.path.join(repo_root, ".orchestration")
    )
    bundle, digest = load_replay_source(args.target, coord_root, max_bytes=args.max_bundle_size)
    base = choose_base(bundle, repo_root, args.base_ref)
    # --execute and --write-only need the base here and refuse (one line) without it;
    # dry-run and --json are how a bundle is inspected: they warn instead.
    commit: str | None = None
    base_problem: str | None = None
    try:
        commit = resolve_base(bundle, repo_root, base)
    except BaseNotHere as exc:
        if args.execute or args.write_only:
            raise
        base_problem = exc.message

    def configure(start: int = 1) -> tuple[PlanConfig, OrchestrationPlan]:
        from kodelyth_ecc.naming import slugify
        from kodelyth_ecc.replay import next_replay_name, replay_agents

        name = args.session
        if name is None:
            # The same agents the config will get, so every worktree path is checked.
            slugs = [slugify(n) for n in replay_agents(bundle, args.agents)]
            name = next_replay_name(bundle.session, coord_root, repo_root, slugs=slugs, start=start)
        config = build_replay_plan_config(
            bundle,
            repo_root=repo_root,
            coordination_root=coord_root,
            harness=args.harness,
            agents=args.agents,
            base_ref=args.base_ref,
            session_name=name,
            # An auto-picked name was free when picked: if it is taken now, another
            # replay took it a moment ago, and --replace must not tear that one down.
            replace_existing=args.replace and args.session is not None,
            trust_launcher=args.trust_launcher,
            bundle_sha256=digest,
            base=base,
            model=args.model,
            launcher_command=args.launcher_cmd,
            worker_timeout=args.worker_timeout,
            record=not args.no_record,
            offline=args.offline,
            on_divergence=args.on_divergence or "stop",
            sandbox=policy,
            verify=args.verify,
            verify_timeout=args.verify_timeout,
        )
        if args.experiment_run is not None:
            if not re.fullmatch(r"[0-9a-f]{16,64}", args.experiment_run):
                raise UsageError("--experiment-run takes the token an experiment gives")
            config = config._replace(
                extra_meta={**config.extra_meta, "experiment_run": args.experiment_run}
            )
        if args.session is None:
            variation = dict(config.extra_meta["variation"])
            variation.pop("session", None)
            config = config._replace(extra_meta={**config.extra_meta, "variation": variation})
        return config, build_orchestration_plan(config)

    from kodelyth_ecc.naming import slugify
    from kodelyth_ecc.provenance import made_here
    from kodelyth_ecc.replay import replay_agents

    # An HMAC over every exchange: only where the answer is shown or needed.
    needed = args.offline or not (args.execute or args.json or args.write_only)
    slugs = [slugify(n) for n in replay_agents(bundle, args.agents)]
    infos = recordings(bundle, slugs) if needed else {}
    policy = _sandbox(args, made_here(bundle.meta), infos)
    config, plan = configure()
    if args.offline:
        _check_offline(args, plan, infos)
    for warning in base.warnings:
        _warn(warning)
    if base_problem is not None:
        _warn(f"{base_problem} (--execute will refuse)")
    for warning in replay_seeds(bundle, repo_root)[1]:
        _warn(warning)
    launcher = bundle.meta.get("launcher")
    builtin = {h.template for h in HARNESSES.values()}
    if isinstance(launcher, str) and launcher not in builtin and not args.trust_launcher:
        sys.stderr.write(
            "note: the bundle's own launcher template is not used (replaying a stranger's "
            "bundle must not run their shell commands); pass --trust-launcher to use it\n"
        )

    if args.json:
        print_json({"planConfig": config.to_json(), "plan": plan.to_json()})
        return 0
    if args.write_only:
        from kodelyth_ecc.execute import write_plan_files

        config, plan = _claim_free_name(
            args, config, plan, configure, lambda p: write_plan_files(p, base_commit=commit)
        )
        sys.stdout.write(f"wrote {plan.coordination_dir} ({len(plan.workers)} workers)\n")
        return 0
    if not args.execute:
        from kodelyth_ecc.preflight import plan_warnings

        for warning in plan_warnings(plan):
            _warn(warning)
        tasks = recover_tasks(bundle)
        note = (
            shown_text((tasks.shared or "").splitlines()[0], 100)
            if tasks.shared
            else f"each worker's own task ({tasks.source} blocks differ between workers)"
        )
        _print_dry_run(
            bundle_session=bundle.session,
            config=config,
            plan=plan,
            base=base,
            commit=commit,
            diffs=differences(bundle, config),
            task_note=note,
        )
        sys.stdout.write(f"Recording     {plan.recording_summary()}\n")
        sys.stdout.write(f"Sandbox       {sandbox_summary(plan)}\n")
        sys.stdout.write(f"Verify        {plan.verify_summary()}\n")
        if args.offline or any(info is not None for info in infos.values()):
            _print_recordings(infos, args.offline)
        sys.stderr.write("dry run: nothing was created; add --execute to start the replay\n")
        return 0

    from kodelyth_ecc.execute import ExecutionResult, execute_plan
    from kodelyth_ecc.progress import ProgressLine

    results: list[ExecutionResult] = []
    # On a terminal, each step on one line of stderr, cleared before anything else.
    with ProgressLine() as line:

        def start(p: OrchestrationPlan) -> None:
            results.append(
                execute_plan(p, on_step=lambda step: line.update(f"{p.session_name}: {step}"))
            )

        config, plan = _claim_free_name(args, config, plan, configure, start)
    result = results[0]
    sys.stdout.write(
        f"started {plan.session_name} (replay of {shown_text(bundle.session)}): "
        f"{len(plan.workers)} workers from {shown_text(base.ref)} ({result.base_commit[:12]})\n"
    )
    code = 0
    if args.wait:
        from kodelyth_ecc.commands.status import print_table, wait_with_exit_code

        status, code = wait_with_exit_code(plan.session_name, coord_root, args.timeout)
        print_table(status, sys.stdout)
    if args.export:
        from kodelyth_ecc.bundle import write_bundle
        from kodelyth_ecc.export import export_bundle

        write_bundle(export_bundle(plan.session_name, coord_root), args.export)
        sys.stdout.write(f"wrote {args.export}\n")
    return code
