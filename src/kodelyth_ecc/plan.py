"""Plans: what a swarm will create, computed without touching the disk.

``build_swarm_plan`` turns a task and an agent count or list into a
``PlanConfig``; ``build_orchestration_plan`` turns any config (from a swarm, a
hand-written plan file or a replay) into the ``OrchestrationPlan`` that
``materialize_plan`` and ``execute_plan`` carry out. ``to_json`` uses the key
names of the earlier JavaScript tool so scripts written against it keep working.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from kodelyth_ecc import naming
from kodelyth_ecc.agents import DEFAULT_AGENTS, MAX_AGENTS, MIN_AGENTS, pick_agents
from kodelyth_ecc.errors import UsageError
from kodelyth_ecc.harnesses import CUSTOM, DEFAULT_HARNESS, ProxyPoint, get_harness, proxy_point
from kodelyth_ecc.launchers import (
    render_template,
    shell_quote,
    validate_template,
)
from kodelyth_ecc.process import which
from kodelyth_ecc.prompts import agent_prompt
from kodelyth_ecc.records import Record
from kodelyth_ecc.sessiondir import WorkerDir

TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime
    from typing import Any

    from kodelyth_ecc.sandbox import SandboxPolicy, WorkerSandbox

WINDOW_NAME = "orchestrator"
_NO_META: Mapping[str, Any] = MappingProxyType({})
# Shown where the per-run id of the launch channels goes (chosen by execute_plan).
RUN_ID_PLACEHOLDER = "<run-id>"
# Shown where the worker's environment file goes (a fresh private file per run).
ENV_FILE_PLACEHOLDER = "<env-file>"


class WorkerSpec(Record):
    """One worker as a config names it: ``task`` becomes its ``## Objective``."""

    name: str
    task: str
    launcher_command: str | None = None
    seed_paths: tuple[str, ...] = ()


class PlanConfig(Record):
    session_name: str
    repo_root: str
    workers: tuple[WorkerSpec, ...]
    worktree_root: str | None = None
    coordination_root: str | None = None
    base_ref: str = "HEAD"
    launcher_command: str | None = None
    seed_paths: tuple[str, ...] = ()
    replace_existing: bool = False
    # What the session was asked to do, recorded in session.json for export.
    task: str | None = None
    harness: str | None = None
    agents: tuple[str, ...] = ()
    extra_meta: Mapping[str, Any] = _NO_META
    # The model the harness is asked for (--model), and how long a worker may run.
    model: str | None = None
    worker_timeout: float | None = None
    # The objective check run in each worktree after its agent exits (--verify), and
    # how long it may take (None: the runner's default).
    verify: str | None = None
    verify_timeout: float | None = None
    # The session's model proxy: record each worker's model traffic (--no-record: off),
    # or answer from a recording (an offline replay: ``replay_sources`` maps each
    # worker's slug to its recording, as ``replay-source.json`` bytes).
    record: bool = True
    offline: bool = False
    on_divergence: str = "stop"
    replay_sources: Mapping[str, bytes] = _NO_META
    # Each worker in its own bubblewrap sandbox (None: not sandboxed).
    sandbox: SandboxPolicy | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "sessionName": self.session_name,
            "repoRoot": self.repo_root,
            "worktreeRoot": self.worktree_root,
            "coordinationRoot": self.coordination_root,
            "baseRef": self.base_ref,
            "replaceExisting": self.replace_existing,
            "sandbox": self.sandbox.to_json() if self.sandbox is not None else None,
            "launcherCommand": self.launcher_command,
            "seedPaths": list(self.seed_paths),
            "workers": [
                {
                    "name": w.name,
                    "task": w.task,
                    "launcherCommand": w.launcher_command or self.launcher_command,
                    "seedPaths": list(w.seed_paths),
                }
                for w in self.workers
            ],
            "_meta": {
                "task": self.task,
                "harness": self.harness,
                "pickedAgents": list(self.agents),
                "count": len(self.workers),
            },
        }

    def to_record(self) -> dict[str, Any]:
        """Everything the plan is built from, for session.json (``plan_config``): a
        retried worker's command is rebuilt from it. Not ``replay_sources`` (each
        worker's recording is its ``replay-source.json``), nor ``extra_meta`` (already
        in session.json) or ``replace_existing`` (a retry never replaces)."""
        return {
            "schema": PLAN_CONFIG_SCHEMA,
            "session_name": self.session_name,
            "repo_root": self.repo_root,
            "worktree_root": self.worktree_root,
            "coordination_root": self.coordination_root,
            "base_ref": self.base_ref,
            "launcher_command": self.launcher_command,
            "seed_paths": list(self.seed_paths),
            "task": self.task,
            "harness": self.harness,
            "agents": list(self.agents),
            "model": self.model,
            "worker_timeout": self.worker_timeout,
            "verify": self.verify,
            "verify_timeout": self.verify_timeout,
            "record": self.record,
            "offline": self.offline,
            "on_divergence": self.on_divergence,
            "sandbox": self.sandbox.to_json() if self.sandbox is not None else None,
            "workers": [
                {
                    "name": w.name,
                    "task": w.task,
                    "launcher_command": w.launcher_command,
                    "seed_paths": list(w.seed_paths),
                }
                for w in self.workers
            ],
        }


PLAN_CONFIG_SCHEMA = "kodelyth.plan-config/v1"
# The plan_config's HMAC under this user's machine key (``exchanges.machine_key``): its
# launchers and --verify are shell commands, so a retry runs only a plan that this
# user's kodelyth-ecc wrote here, never one an imported bundle, a copied session dir or
# an edit put in session.json (replay's rule for a stranger's launcher).
PLAN_SEAL_KEY = "seal"


def plan_seal(record: Mapping[str, Any]) -> str:
    """The seal of a ``to_record`` object (its ``seal`` itself left out): over its
    canonical JSON, ASCII-only so any text seals the same after a round trip."""
    import hashlib
    import hmac
    import json

    from kodelyth_ecc.exchanges import SEAL_PREFIX, machine_key

    body = {k: v for k, v in record.items() if k != PLAN_SEAL_KEY}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    message = b"plan-config\0" + canonical.encode("ascii")
    return SEAL_PREFIX + hmac.new(machine_key(), message, hashlib.sha256).hexdigest()


def sealed_record(config: PlanConfig) -> dict[str, Any]:
    """``config.to_record()`` with its seal, as session.json keeps it."""
    record = config.to_record()
    record[PLAN_SEAL_KEY] = plan_seal(record)
    return record


def plan_config_from_record(data: object) -> PlanConfig:
    """The ``PlanConfig`` that ``sealed_record`` wrote; a ``KodelythError`` naming the
    first field that is not what it wrote (session.json is a file one can edit), or
    saying it was not sealed here (its commands are then never run)."""
    import hmac

    from kodelyth_ecc.errors import KodelythError

    def bad(what: str) -> KodelythError:
        return KodelythError(
            f"session.json's plan_config is damaged ({what}): the session's workers cannot "
            "be rebuilt from it; start a new session"
        )

    def text(obj: Mapping[str, Any], key: str, *, optional: bool = True) -> str | None:
        value = obj.get(key)
        if (value is None and optional) or isinstance(value, str):
            return value
        raise bad(f"{key} is not a string")

    def number(obj: Mapping[str, Any], key: str) -> float | None:
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise bad(f"{key} is not a positive number")
        return float(value)

    def strings(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
        value = obj.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(f"{key} is not a list of strings")
        return tuple(value)

    def flag(obj: Mapping[str, Any], key: str, default: bool) -> bool:
        value = obj.get(key, default)
        if not isinstance(value, bool):
            raise bad(f"{key} is not true or false")
        return value

    if not isinstance(data, dict) or data.get("schema") != PLAN_CONFIG_SCHEMA:
        raise bad(f"not a {PLAN_CONFIG_SCHEMA} object")
    raw_workers = data.get("workers")
    if not isinstance(raw_workers, list) or not raw_workers:
        raise bad("workers is not a non-empty list")
    workers = []
    for raw in raw_workers:
        if not isinstance(raw, dict):
            raise bad("a worker is not an object")
        workers.append(
            WorkerSpec(
                name=text(raw, "name", optional=False) or "",
                task=text(raw, "task", optional=False) or "",
                launcher_command=text(raw, "launcher_command"),
                seed_paths=strings(raw, "seed_paths"),
            )
        )
    sandbox = None
    if data.get("sandbox") is not None:
        from kodelyth_ecc.sandbox import SandboxPolicy

        try:
            sandbox = SandboxPolicy.from_json(data["sandbox"])
        except ValueError as exc:
            raise bad(str(exc)) from None
    config = PlanConfig(
        session_name=text(data, "session_name", optional=False) or "",
        repo_root=text(data, "repo_root", optional=False) or "",
        workers=tuple(workers),
        worktree_root=text(data, "worktree_root"),
        coordination_root=text(data, "coordination_root"),
        base_ref=text(data, "base_ref") or "HEAD",
        launcher_command=text(data, "launcher_command"),
        seed_paths=strings(data, "seed_paths"),
        task=text(data, "task"),
        harness=text(data, "harness"),
        agents=strings(data, "agents"),
        model=text(data, "model"),
        worker_timeout=number(data, "worker_timeout"),
        verify=text(data, "verify"),
        verify_timeout=number(data, "verify_timeout"),
        record=flag(data, "record", True),
        offline=flag(data, "offline", False),
        on_divergence=text(data, "on_divergence") or "stop",
        sandbox=sandbox,
    )
    claimed = data.get(PLAN_SEAL_KEY)
    try:
        expected = plan_seal(data).encode()
    except (RecursionError, ValueError):  # a hand-made object nested past what JSON takes
        expected = b""
    # As bytes: compare_digest refuses str with anything but ASCII in it.
    if not isinstance(claimed, str) or not hmac.compare_digest(
        claimed.encode("utf-8", "surrogatepass"), expected
    ):
        raise KodelythError(
            "session.json's plan_config was not sealed by kodelyth-ecc for this user on this "
            "machine (a session dir copied or imported from elsewhere, one made under another "
            "HOME, or a plan edited since): its commands are not run; start a new session "
            "(`kodelyth-ecc replay SESSION --execute` runs a copy of a stranger's)"
        )
    return config


class WorkerPlan(Record):
    worker_name: str
    worker_slug: str
    task: str
    branch_name: str
    worktree_path: str
    coordination_dir: str
    task_file_path: str
    handoff_file_path: str
    status_file_path: str
    transcript_file_path: str
    launcher_template: str
    launch_command: str
    seed_paths: tuple[str, ...]
    git_args: tuple[str, ...]
    # The adapter that reads this worker's structured output (None: a plain template).
    result_harness: str | None = None

    @property
    def git_command(self) -> str:
        return " ".join(["git", *(shell_quote(a) for a in self.git_args)])


class OrchestrationPlan(Record):
    session_name: str
    repo_root: str
    worktree_root: str
    coordination_root: str
    coordination_dir: str
    base_ref: str
    replace_existing: bool
    seed_paths: tuple[str, ...]
    workers: tuple[WorkerPlan, ...]
    launcher_template: str
    task: str | None
    harness: str | None
    agents: tuple[str, ...]
    shell: tuple[str, ...]
    extra_meta: Mapping[str, Any] = _NO_META
    model: str | None = None
    worker_timeout: float | None = None
    verify: str | None = None
    verify_timeout: float | None = None
    record: bool = True
    offline: bool = False
    on_divergence: str = "stop"
    replay_sources: Mapping[str, bytes] = _NO_META
    # How the workers are pointed at the session's proxy (None: not proxied, and
    # ``proxy_note`` says why when it was asked for).
    proxy_point: ProxyPoint | None = None
    proxy_note: str | None = None
    sandbox: SandboxPolicy | None = None
    # What it was built from (``build_orchestration_plan``).
    config: PlanConfig | None = None

    @property
    def proxied(self) -> bool:
        """Whether the workers talk to their model through the session's proxy."""
        return self.proxy_point is not None

    @property
    def proxy_file(self) -> str:
        from kodelyth_ecc.sessiondir import PROXY_FILE

        return os.path.join(self.coordination_dir, PROXY_FILE)

    def recording_summary(self) -> str:
        """One line on what happens to the workers' model traffic."""
        if self.harness == "echo":
            return "none (echo workers make no model requests)"
        if self.proxy_point is None and self.proxy_note is not None:
            return f"not available: {self.proxy_note}"
        if self.offline:
            return "offline: each worker is answered from its recorded exchanges"
        if not self.record:
            return "off" + (
                " (the sandboxed workers still reach their model through the session's proxy)"
                if self.sandbox is not None
                else ""
            )
        return "on: each worker's model traffic is recorded by the session's proxy"

    def verify_summary(self) -> str:
        """One line on the --verify check, for the dry-run."""
        if not self.verify:
            return "none (add --verify CMD to check each worker's result)"
        from kodelyth_ecc.termsafe import one_line

        limit = f"{self.verify_timeout:g}s" if self.verify_timeout else "10m"
        return f"{one_line(self.verify)} (in each worktree after its agent exits; at most {limit})"

    def _proxy_args(self) -> list[str]:
        point = self.proxy_point
        if point is None:
            return []
        import json

        # Variable names, JSON paths and suffixes: no value of the environment.
        variables = json.dumps([[name, list(path), suffix] for name, path, suffix in point.env])
        args = ["--proxy", self.proxy_file, "--proxy-env", variables]
        if self.offline and point.key_env:
            args += ["--offline-key", ",".join(point.key_env)]
        return args

    def runner_argv(
        self,
        worker: WorkerPlan,
        run_id: str = RUN_ID_PLACEHOLDER,
        env_file: str = ENV_FILE_PLACEHOLDER,
        cli: str | None = None,
        path_prepend: str | None = None,
    ) -> list[str]:
        """The pane's command: our runner, started without any interactive shell.

        ``env_file`` holds the caller's environment; the runner reads and deletes it, so
        no value of it is ever on a command line."""
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        bootstrap = (
            f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from kodelyth_ecc.runner import main; sys.exit(main())"
        )
        return [
            sys.executable,
            "-I",
            "-c",
            bootstrap,
            "--name",
            worker.worker_name,
            "--status-file",
            worker.status_file_path,
            "--transcript",
            worker.transcript_file_path,
            "--gate",
            naming.gate_channel(self.session_name, worker.worker_slug, run_id),
            "--branch",
            worker.branch_name,
            "--worktree",
            worker.worktree_path,
            "--cwd",
            worker.worktree_path,
            "--env-file",
            env_file,
            *(["--path-prepend", path_prepend] if path_prepend else []),
            *(
                ["--harness", worker.result_harness, "--handoff", worker.handoff_file_path]
                if worker.result_harness
                else []
            ),
            *(["--cli", cli] if cli and worker.result_harness else []),
            *(["--model", self.model] if self.model and worker.result_harness else []),
            *(["--timeout", f"{self.worker_timeout:g}"] if self.worker_timeout else []),
            *(["--verify", self.verify] if self.verify else []),
            *(
                ["--verify-timeout", f"{self.verify_timeout:g}"]
                if self.verify and self.verify_timeout
                else []
            ),
            *self._proxy_args(),
            *(["--sandbox", self.worker_sandbox(worker).to_argument()] if self.sandbox else []),
            "--",
            *self.shell,
            worker.launch_command,
        ]

    def config_record(self) -> dict[str, Any] | None:
        """What session.json keeps to build this plan again (``plan_config``): its config
        with the roots it resolved, so a rebuilt plan names the same worktrees and
        directories wherever it is built from."""
        if self.config is None:
            return None
        resolved = self.config._replace(
            repo_root=self.repo_root,
            worktree_root=self.worktree_root,
            coordination_root=self.coordination_root,
        )
        return sealed_record(resolved)

    def resumed_worker(
        self, worker: WorkerPlan, agent_session: str, message_file: str
    ) -> WorkerPlan | None:
        """``worker`` with a launch command that continues its agent's own conversation
        ``agent_session`` (the id its usage recorded), the message in ``message_file`` on
        stdin; None when its harness adapter cannot (a plain template, a CLI without a
        resume flag, a sandboxed worker: its CLI kept the conversation in the sandbox's
        HOME, which is gone)."""
        if worker.result_harness is None or self.sandbox is not None:
            return None
        adapter = get_harness(worker.result_harness)
        flags = self.proxy_point.flags if self.proxy_point is not None else ""
        template = adapter.resume_template(agent_session, message_file, self.model, flags)
        if template is None:
            return None
        launch = render_template(
            template, _template_values(self.session_name, self.repo_root, worker)
        )
        return worker._replace(launch_command=launch)

    def worker_sandbox(self, worker: WorkerPlan) -> WorkerSandbox:
        """What the runner needs to put ``worker`` in its sandbox: the install roots of
        its CLI (and node) and the Python of the relay read-only, its harness's settings
        files, and its config variables moved under the sandbox's HOME."""
        from kodelyth_ecc.harnesses import HARNESSES
        from kodelyth_ecc.sandbox import (
            HOME,
            WorkerSandbox,
            home_files,
            readable_paths,
            relay_python,
        )
        from kodelyth_ecc.sessiondir import SANDBOX_DIR

        assert self.sandbox is not None
        adapter = HARNESSES.get(self.harness or "")
        programs = [adapter.program, "node"] if adapter is not None and adapter.program else []
        python, python_paths = relay_python()
        moved = [
            (name, rest)
            for name, rest in (adapter.sandbox_vars if adapter else ())
            if os.environ.get(name)
        ]
        return WorkerSandbox(
            worktree=worker.worktree_path,
            branch=worker.branch_name,
            state_dir=os.path.join(worker.coordination_dir, SANDBOX_DIR),
            task_file=worker.task_file_path,
            handoff_file=worker.handoff_file_path,
            readable=readable_paths(programs, (*python_paths, *self.sandbox.allow_paths)),
            home_files=home_files(adapter.sandbox_home, os.environ) if adapter else (),
            env=tuple((name, os.path.normpath(os.path.join(HOME, rest))) for name, rest in moved),
            home_dirs=tuple(rest.strip("/") for _, rest in moved if rest.endswith("/")),
            egress=bool(self.sandbox.allow_hosts),
            python=python,
        )

    def tmux_commands(self) -> list[dict[str, Any]]:
        """The tmux calls ``execute_plan`` makes, for display; pane ids are only known then."""
        target = f"={self.session_name}:{WINDOW_NAME}"
        commands: list[dict[str, Any]] = [
            _tmux(
                "Create detached tmux session",
                "new-session",
                "-d",
                "-s",
                self.session_name,
                "-n",
                WINDOW_NAME,
                "-c",
                self.repo_root,
            ),
            _tmux(
                "Keep finished panes readable",
                "set-option",
                "-w",
                "-t",
                target,
                "remain-on-exit",
                "on",
            ),
        ]
        for worker in self.workers:
            commands += [
                _tmux(
                    f"Create pane for {worker.worker_slug} (runner waits for launch)",
                    "split-window",
                    "-t",
                    target,
                    "-c",
                    self.repo_root,
                    *self.runner_argv(worker),
                ),
                _tmux(
                    f"Label pane {worker.worker_slug}",
                    "select-pane",
                    "-t",
                    "<pane-id>",
                    "-T",
                    worker.worker_slug,
                ),
                _tmux("Arrange panes in tiled layout", "select-layout", "-t", target, "tiled"),
            ]
        commands += [
            _tmux(
                f"Launch worker {worker.worker_slug}",
                "wait-for",
                "-S",
                naming.gate_channel(self.session_name, worker.worker_slug, RUN_ID_PLACEHOLDER),
            )
            for worker in self.workers
        ]
        return commands

    def to_json(self) -> dict[str, Any]:
        return {
            "sessionName": self.session_name,
            "repoRoot": self.repo_root,
            "worktreeRoot": self.worktree_root,
            "coordinationRoot": self.coordination_root,
            "coordinationDir": self.coordination_dir,
            "baseRef": self.base_ref,
            "replaceExisting": self.replace_existing,
            "seedPaths": list(self.seed_paths),
            "sandbox": self.sandbox.to_json() if self.sandbox is not None else None,
            "tmuxCommands": self.tmux_commands(),
            "workerPlans": [
                {
                    "workerName": w.worker_name,
                    "workerSlug": w.worker_slug,
                    "task": w.task,
                    "branchName": w.branch_name,
                    "worktreePath": w.worktree_path,
                    "coordinationDir": w.coordination_dir,
                    "taskFilePath": w.task_file_path,
                    "handoffFilePath": w.handoff_file_path,
                    "statusFilePath": w.status_file_path,
                    "transcriptFilePath": w.transcript_file_path,
                    "repoRoot": self.repo_root,
                    "sessionName": self.session_name,
                    "seedPaths": list(w.seed_paths),
                    "gitArgs": list(w.git_args),
                    "gitCommand": w.git_command,
                    "launcherTemplate": w.launcher_template,
                    "launchCommand": w.launch_command,
                }
                for w in self.workers
            ],
        }


def sandbox_summary(plan: OrchestrationPlan) -> str:
    """One line for dry-run: whether the workers are sandboxed, why, and what they may
    reach."""
    if plan.sandbox is None:
        return "off: the agents run with your permissions (--sandbox isolates them)"
    return f"on ({plan.sandbox.reason}): each worker may reach {plan.sandbox.reach()}"


def _tmux(description: str, *args: str) -> dict[str, Any]:
    return {"cmd": "tmux", "args": list(args), "description": description}


def parse_agents(value: str | int | Sequence[str]) -> int | list[str]:
    """``--agents`` takes a count (``4``) or a comma-separated list (``a,b,c``)."""
    if isinstance(value, int):
        count = value
    elif isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        count = int(value.strip())
    else:
        names = value.split(",") if isinstance(value, str) else list(value)
        if len(names) > MAX_AGENTS:
            raise UsageError(
                f"--agents names {len(names)} agents: a swarm has at most {MAX_AGENTS}"
            )
        return [naming.validate_worker_name(name.strip()) for name in names]
    if not MIN_AGENTS <= count <= MAX_AGENTS:
        raise UsageError(
            f"--agents {count} is out of range: give a count from {MIN_AGENTS} to "
            f"{MAX_AGENTS}, or a list of names like a,b,c"
        )
    return count


def _verify_meta(config: PlanConfig) -> dict[str, Any]:
    """meta.verify: the check every worker of the run was held to."""
    found: dict[str, Any] = {"command": config.verify}
    if config.verify_timeout:
        found["timeout_s"] = config.verify_timeout
    return found


def build_swarm_plan(
    task: str,
    *,
    repo_root: str,
    agents: str | int | Sequence[str] = DEFAULT_AGENTS,
    harness: str = DEFAULT_HARNESS,
    launcher_command: str | None = None,
    seed_paths: Sequence[str] = (),
    session_name: str | None = None,
    worktree_root: str | None = None,
    coordination_root: str | None = None,
    base_ref: str = "HEAD",
    replace_existing: bool = False,
    today: datetime.date | None = None,
    model: str | None = None,
    worker_timeout: float | None = None,
    verify: str | None = None,
    verify_timeout: float | None = None,
) -> PlanConfig:
    """A config for N specialists sharing one task, each given an agent-shaped prompt."""
    if not task or not task.strip():
        raise UsageError('missing task: pass --task "what the agents should do" (or --plan FILE)')
    task = task.strip()
    picked = parse_agents(agents)
    names = pick_agents(task, picked) if isinstance(picked, int) else picked
    get_harness(harness)
    if launcher_command is not None:
        validate_template(launcher_command)
    session = session_name or naming.default_session_name(len(names), today)
    workers = tuple(WorkerSpec(name=n, task=agent_prompt(n, task)) for n in names)
    return PlanConfig(
        session_name=session,
        repo_root=repo_root,
        workers=workers,
        worktree_root=worktree_root,
        coordination_root=coordination_root,
        base_ref=base_ref,
        launcher_command=launcher_command,
        seed_paths=tuple(seed_paths),
        replace_existing=replace_existing,
        task=task,
        harness=harness,
        agents=tuple(names),
        model=model,
        worker_timeout=worker_timeout,
        verify=check_verify(verify),
        verify_timeout=verify_timeout,
    )


def check_verify(command: str | None) -> str | None:
    """A ``verify`` command: a shell command line of printable text (it is shown in the
    status and the dry-run), or None."""
    if command is None:
        return None
    if not command.strip():
        raise UsageError("verify: the command is empty: pass the check to run, e.g. 'pytest -q'")
    if len(command) > 4096 or any(ord(c) < 32 and c != "\t" for c in command):
        raise UsageError(
            "verify: the command must be one line of at most 4,096 characters "
            "(put a longer check in a script and run that)"
        )
    try:
        command.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("verify: the command is not UTF-8 text") from None
    from kodelyth_ecc.sanitize import scan_text

    # It is on the runners' command lines, in status.md and in the bundle.
    if scan_text(command):
        raise UsageError(
            "verify: the command holds what looks like a credential: let the check read "
            "it from the environment instead (it has the worker's)"
        )
    return command


def _str_field(
    data: Mapping[str, Any], key: str, where: str, *, required: bool = False
) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise UsageError(f"plan file: {where} needs a {key!r} string")
        return None
    if not isinstance(value, str):
        raise UsageError(f"plan file: {where}.{key} must be a string, got {type(value).__name__}")
    return value


def _bool_field(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise UsageError(f"plan file: {where}.{key} must be true or false, got {value!r}")
    return value


def _str_list(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"plan file: {where}.{key} must be a list of strings")
    return tuple(value)


def plan_config_from_json(
    data: object, *, default_repo_root: str | None = None, harness: str | None = None
) -> PlanConfig:
    """Read a hand-written plan (the JavaScript tool's keys) into a ``PlanConfig``."""
    if not isinstance(data, dict):
        raise UsageError("plan file must hold a JSON object with 'sessionName' and 'workers'")
    session = _str_field(data, "sessionName", "the plan", required=True)
    repo_root = _str_field(data, "repoRoot", "the plan") or default_repo_root
    if repo_root is None:
        raise UsageError("plan file has no 'repoRoot' and we are not inside a git repository")
    raw_workers = data.get("workers")
    if not isinstance(raw_workers, list) or not raw_workers:
        raise UsageError("plan file: 'workers' must be a non-empty list of {name, task} objects")
    workers = []
    for index, raw in enumerate(raw_workers):
        where = f"workers[{index}]"
        if not isinstance(raw, dict):
            raise UsageError(f"plan file: {where} must be an object with 'name' and 'task'")
        name = _str_field(raw, "name", where, required=True)
        task = _str_field(raw, "task", where, required=True)
        assert name is not None and task is not None
        workers.append(
            WorkerSpec(
                name=name,
                task=task,
                launcher_command=_str_field(raw, "launcherCommand", where),
                seed_paths=_str_list(raw, "seedPaths", where),
            )
        )
    return PlanConfig(
        session_name=session or "",
        repo_root=repo_root,
        workers=tuple(workers),
        worktree_root=_str_field(data, "worktreeRoot", "the plan"),
        coordination_root=_str_field(data, "coordinationRoot", "the plan"),
        base_ref=_str_field(data, "baseRef", "the plan") or "HEAD",
        launcher_command=_str_field(data, "launcherCommand", "the plan"),
        seed_paths=_str_list(data, "seedPaths", "the plan"),
        replace_existing=_bool_field(data, "replaceExisting", "the plan"),
        harness=harness,
        agents=tuple(w.name for w in workers),
    )


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def normalize_seed_paths(seed_paths: Sequence[str], repo_root: str) -> tuple[str, ...]:
    """Seeds as repo-relative paths; each must exist and stay inside the repo.

    A seed keeps the name it was given (a symlink ``.env`` stays ``.env``), but what
    it points to, through any symlink, must be inside the repo too.
    """
    root = os.path.normpath(repo_root)
    real_root = os.path.realpath(root)
    normalized: list[str] = []
    for entry in seed_paths:
        if not entry.strip():
            raise UsageError("empty --seed path: name a file or directory inside the repo")
        lexical = os.path.normpath(os.path.join(root, entry))
        real = os.path.realpath(lexical)
        if not _inside(real, real_root):
            raise UsageError(
                f"seed path {entry!r} is outside the repo {repo_root}: seeds must be inside it"
            )
        if not os.path.lexists(lexical):
            raise UsageError(f"seed path {entry!r} does not exist in {repo_root}: check the path")
        if _inside(lexical, root):
            rel = os.path.relpath(lexical, root)
        elif _inside(lexical, real_root):
            rel = os.path.relpath(lexical, real_root)
        else:  # named through a symlink to the repo: only the real path is repo-relative
            rel = os.path.relpath(real, real_root)
        if rel == ".":
            raise UsageError(
                f"seed path {entry!r} is the whole repo: name a file or directory in it"
            )
        if ".git" in {*rel.split(os.sep), *os.path.relpath(real, real_root).split(os.sep)}:
            raise UsageError(
                f"seed path {entry!r} is inside git's own data (.git): seed work files only"
            )
        if rel not in normalized:
            normalized.append(rel)
    return tuple(normalized)


def _launch_shell() -> tuple[str, ...]:
    """bash without start-up files, with pipefail so `agent | tee` keeps the agent's exit code."""
    bash = which("bash")
    if bash:
        return (bash, "--noprofile", "--norc", "-o", "pipefail", "-c")
    return ("/bin/sh", "-c")


def build_orchestration_plan(config: PlanConfig) -> OrchestrationPlan:
    session = naming.validate_session_name(config.session_name)
    if not os.path.isabs(config.repo_root):
        raise UsageError(f"repo root {config.repo_root!r} must be an absolute path")
    repo_root = os.path.normpath(config.repo_root)
    worktree_root = os.path.abspath(config.worktree_root or os.path.dirname(repo_root))
    coordination_root = os.path.abspath(
        config.coordination_root or os.path.join(repo_root, ".orchestration")
    )
    coordination_dir = os.path.join(coordination_root, session)
    harness = None if config.harness == CUSTOM else get_harness(config.harness or DEFAULT_HARNESS)
    if harness is None and not config.launcher_command:
        raise UsageError("the custom harness needs a --launcher-cmd TEMPLATE")
    point: ProxyPoint | str | None = None
    sandboxed = config.sandbox is not None
    # A sandboxed worker's only network is the session's proxy: it runs unrecorded too.
    talks = harness is None or harness.program is not None  # echo makes no requests
    if config.record or config.offline or (sandboxed and talks):
        point = proxy_point(
            harness.name if harness is not None else CUSTOM, config.model, os.environ
        )
    if sandboxed and talks and isinstance(point, str):
        raise UsageError(
            f"--sandbox leaves the workers no network but the session's model proxy, and {point}"
        )
    flags = point.flags if isinstance(point, ProxyPoint) else ""
    builtin = (
        harness.launch_template(config.model, flags, sandboxed=sandboxed)
        if harness is not None
        else None
    )
    default_template = config.launcher_command or builtin or ""
    if config.model and (harness is None or not harness.model_flag or config.launcher_command):
        raise UsageError(
            "--model needs a harness that can choose one (claude, codex, opencode, gemini); "
            "with --launcher-cmd, put the model in the template"
        )
    shared_seeds = normalize_seed_paths(config.seed_paths, repo_root)
    if not config.workers:
        raise UsageError("a plan needs at least one worker")

    workers: list[WorkerPlan] = []
    seen: dict[str, str] = {}
    for spec in config.workers:
        naming.validate_worker_name(spec.name)
        slug = naming.slugify(spec.name)
        if slug in seen:
            raise UsageError(
                f"workers {naming.shown_name(seen[slug])} and {naming.shown_name(spec.name)} "
                f"share the slug {naming.shown_name(slug)}: give every worker a distinct name"
            )
        seen[slug] = spec.name

        branch = naming.branch_name(session, slug)
        worktree = naming.worktree_path(worktree_root, repo_root, session, slug)
        template = validate_template(spec.launcher_command or default_template)
        seeds = tuple(
            dict.fromkeys(shared_seeds + normalize_seed_paths(spec.seed_paths, repo_root))
        )
        # The worker's files are named by the owner of the session on disk.
        paths = WorkerDir(coordination_dir, slug)
        worker = WorkerPlan(
            worker_name=spec.name,
            worker_slug=slug,
            task=spec.task,
            branch_name=branch,
            worktree_path=worktree,
            coordination_dir=paths.path,
            task_file_path=paths.task_file,
            handoff_file_path=paths.handoff_file,
            status_file_path=paths.status_file,
            transcript_file_path=paths.transcript_file,
            launcher_template=template,
            launch_command="",
            seed_paths=seeds,
            git_args=("worktree", "add", "-b", branch, worktree, config.base_ref),
            result_harness=(
                harness.name
                if harness is not None and harness.output and template == builtin
                else None
            ),
        )
        launch = render_template(template, _template_values(session, repo_root, worker))
        workers.append(worker._replace(launch_command=launch))
    return OrchestrationPlan(
        session_name=session,
        repo_root=repo_root,
        worktree_root=worktree_root,
        coordination_root=coordination_root,
        coordination_dir=coordination_dir,
        base_ref=config.base_ref,
        replace_existing=config.replace_existing,
        seed_paths=shared_seeds,
        workers=tuple(workers),
        launcher_template=default_template,
        task=config.task,
        # A user's launcher is recorded as such: a replay must not say "differs: nothing"
        # and run claude.
        harness=harness.name if harness is not None and not config.launcher_command else CUSTOM,
        model=config.model,
        worker_timeout=config.worker_timeout,
        verify=config.verify,
        verify_timeout=config.verify_timeout,
        record=config.record,
        offline=config.offline,
        on_divergence=config.on_divergence,
        replay_sources=config.replay_sources,
        proxy_point=point if isinstance(point, ProxyPoint) else None,
        proxy_note=point if isinstance(point, str) else None,
        sandbox=config.sandbox,
        extra_meta={
            **config.extra_meta,
            **({"model": config.model} if config.model else {}),
            **({"worker_timeout_s": config.worker_timeout} if config.worker_timeout else {}),
            **({"verify": _verify_meta(config)} if config.verify else {}),
            # The run's conditions: a sandboxed run is compared knowing it was one.
            **({"sandbox": config.sandbox.to_json()} if config.sandbox is not None else {}),
        },
        agents=config.agents or tuple(w.worker_name for w in workers),
        shell=_launch_shell(),
        config=config,
    )


def _template_values(session: str, repo_root: str, worker: WorkerPlan) -> dict[str, str]:
    """What a launch template's placeholders are filled with for ``worker``."""
    return {
        "worker_name": worker.worker_name,
        "worker_slug": worker.worker_slug,
        "session_name": session,
        "repo_root": repo_root,
        "worktree_path": worker.worktree_path,
        "branch_name": worker.branch_name,
        "task_file": worker.task_file_path,
        "handoff_file": worker.handoff_file_path,
        "status_file": worker.status_file_path,
    }
