"""Carrying out a plan: pre-flight checks, coordination files, worktrees, tmux.

Every resource ``execute_plan`` creates is pushed on an undo stack first; any
failure (or Ctrl-C) pops it in reverse so nothing half-made is left behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from kodelyth_ecc import gitrepo, naming, repolock, tmux
from kodelyth_ecc.coordination import (
    SessionRecord,
    materialize_plan,
    write_session_record,
)
from kodelyth_ecc.errors import KodelythError, SessionTaken
from kodelyth_ecc.fsutil import missing_dirs, remove_empty_dirs
from kodelyth_ecc.plan import WINDOW_NAME, OrchestrationPlan, WorkerPlan
from kodelyth_ecc.preflight import collisions, harness_problems
from kodelyth_ecc.sessiondir import REPLAY_SOURCE_FILE
from kodelyth_ecc.teardown import TeardownTarget, UnsavedWork, teardown


@dataclass
class ExecutionResult:
    session_name: str
    coordination_dir: str
    base_commit: str
    panes: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def attach_command(self) -> str:
        return f"tmux attach -t {self.session_name}"


def _claim_names(plan: OrchestrationPlan, *, execute: bool) -> None:
    """Make sure the session's names are free, tearing down the old session on --replace."""
    taken = collisions(plan, execute=execute)
    if not taken:
        return
    if not plan.replace_existing:
        # SessionTaken: a caller that picked the name itself may pick the next one.
        raise SessionTaken(
            f"session {plan.session_name!r} is already taken: {taken[0]}"
            f"{f' (and {len(taken) - 1} more)' if len(taken) > 1 else ''}; "
            "pick another --session, or pass --replace to tear the old one down"
        )
    try:
        teardown(
            plan.session_name,
            plan.coordination_root,
            repo_root=plan.repo_root,
            purge=True,
            extra_targets=[
                TeardownTarget(w.worker_slug, w.branch_name, w.worktree_path) for w in plan.workers
            ],
        )
    except UnsavedWork as exc:
        raise KodelythError(
            f"--replace refused: session {plan.session_name!r} holds unsaved work in "
            f"{exc.detail}; commit it, or run `kodelyth-ecc teardown {plan.session_name} "
            "--force` (it saves the work first) and start again"
        ) from exc
    still = collisions(plan, execute=execute)
    if still:
        raise KodelythError(f"--replace could not free session {plan.session_name!r}: {still[0]}")


def write_plan_files(plan: OrchestrationPlan, base_commit: str | None = None) -> SessionRecord:
    """``--write-only``: the coordination files and nothing else."""
    gitrepo.repo_root(plan.repo_root)
    _claim_names(plan, execute=False)
    # materialize_plan cleans up after itself, and never touches a dir it did not create.
    return materialize_plan(plan, base_commit=base_commit, mode="write-only")


def _copy_seeds(repo_root: str, worktree: str, seeds: tuple[str, ...]) -> None:
    for rel in seeds:
        src = os.path.join(repo_root, rel)
        dst = os.path.join(worktree, rel)
        if os.path.isdir(src) and not os.path.islink(src):
            shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst, follow_symlinks=False)


# Variables tmux sets for its own panes, or that describe the calling shell only.
_TMUX_OWN_ENV = frozenset({"TMUX", "TMUX_PANE", "PWD", "OLDPWD", "SHLVL", "_"})
ENV_DIR_PREFIX = "kodelyth-env-"
# How long the runners may take to start and take their environment.
RUNNER_START_TIMEOUT_S = 60.0


def _env_parent() -> str:
    """Where the environment files go: the per-user runtime dir (a tmpfs, mode 0700)
    when there is one, else the temp dir. Never the repo."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK | os.X_OK):
        return runtime
    import tempfile

    return tempfile.gettempdir()


def _environment_bytes(defaults: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The caller's environment as ``NAME=value\\0`` entries (the bytes as given), plus
    the harness's defaults for what the caller did not set (no update checks, few
    retries)."""
    env = dict(os.environb)
    for key, value in defaults:
        env.setdefault(os.fsencode(key), os.fsencode(value))
    return b"".join(
        key + b"=" + value + b"\0"
        for key, value in sorted(env.items())
        if key and b"=" not in key and os.fsdecode(key) not in _TMUX_OWN_ENV
    )


def write_environment_files(
    slugs: list[str], defaults: tuple[tuple[str, str], ...] = ()
) -> tuple[str, dict[str, str]]:
    """A fresh 0700 directory holding, per worker, a 0600 file with the caller's
    environment, for its runner to read and delete before the agent starts. The values
    never go on a command line (``ps`` shows those) nor into tmux (whose global
    environment is the server's start environment, not the caller's)."""
    import tempfile

    directory = tempfile.mkdtemp(prefix=ENV_DIR_PREFIX, dir=_env_parent())
    data = _environment_bytes(defaults)
    files: dict[str, str] = {}
    try:
        for slug in slugs:
            path = os.path.join(directory, f"{slug}.env")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(path, flags, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            files[slug] = path
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory, files


def wait_for_runners(
    plan: OrchestrationPlan, env_files: dict[str, str], panes: dict[str, str]
) -> None:
    """Until every runner has taken (and deleted) its environment file: nothing of the
    environment stays on disk once the workers are launched."""
    deadline = time.monotonic() + RUNNER_START_TIMEOUT_S
    next_pane_check = 0.0
    while True:
        waiting = [slug for slug, path in env_files.items() if os.path.lexists(path)]
        if not waiting:
            return
        now = time.monotonic()
        if now >= next_pane_check:
            states = tmux.panes(plan.session_name) or {}
            dead = [s for s in waiting if (state := states.get(panes[s])) is None or state.dead]
            if dead:
                state = states.get(panes[dead[0]])
                code = state.dead_status if state is not None else None
                raise KodelythError(
                    f"the runner of worker {dead[0]} exited (status {code}) before it took its "
                    f"environment: check that {sys.executable} runs, and try again"
                )
            next_pane_check = now + 0.25
        if now >= deadline:
            raise KodelythError(
                f"the runner of worker {waiting[0]} did not start within "
                f"{RUNNER_START_TIMEOUT_S:g} s: the machine may be overloaded; try again"
            )
        time.sleep(0.01)


PROXY_WINDOW = "proxy"
PROXY_START_TIMEOUT_S = 30.0


SOCKET_DIR_PREFIX = "kodelyth-sock-"


def start_proxy(
    plan: OrchestrationPlan, env_dir: str, undo: list[tuple[str, Callable[[], None]]]
) -> str:
    """The session's model proxy, started as ``_start_proxy`` says; sandboxed workers
    get a fresh directory for its sockets. What it made goes on ``undo``. Returns the
    proxy's pane."""
    socket_dir = None
    if plan.sandbox is not None:
        import tempfile

        socket_dir = tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX, dir=_env_parent())
        # The proxy removes it when it ends; this, if the run fails before.
        undo.append(("proxy sockets", lambda: shutil.rmtree(socket_dir, True)))
    return _start_proxy(plan, env_dir, socket_dir, undo)


def _start_proxy(
    plan: OrchestrationPlan,
    env_dir: str,
    socket_dir: str | None,
    undo: list[tuple[str, Callable[[], None]]],
) -> str:
    """The session's model proxy in its own window of the session (it outlives this
    command; teardown ends it with the session). Its config, upstreams included, goes
    in a 0600 file it reads and deletes, never on its command line. Returns once it
    listens (``proxy.json`` written), so the workers find it. Sandboxed workers reach
    it through unix sockets in ``socket_dir`` (a short path: a socket's is capped)."""
    from kodelyth_ecc.proxy import build_config, encode_config

    config = os.path.join(env_dir, "proxy.json")
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(encode_config(build_config(plan, os.environ, socket_dir)))
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bootstrap = (
        f"import sys; sys.path.insert(0, {package_parent!r}); "
        "from kodelyth_ecc.proxy import main; sys.exit(main())"
    )
    out = tmux.run_sequence(
        [
            [
                "new-window", "-d", "-t", f"={plan.session_name}:", "-n", PROXY_WINDOW,
                "-P", "-F", "#{pane_id}", sys.executable, "-I", "-c", bootstrap, config,
            ],
            ["set-option", "-w", "-t", f"={plan.session_name}:{PROXY_WINDOW}",
             "remain-on-exit", "on"],
        ]
    )  # fmt: skip
    pane = out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
    if pane:
        # Its own window: gone with the session, but a retry adds it to a live one.
        undo.append(("the session's model proxy", lambda: kill_pane(plan.session_name, pane)))
    deadline = time.monotonic() + PROXY_START_TIMEOUT_S
    while not os.path.exists(plan.proxy_file):
        state = (tmux.panes(plan.session_name) or {}).get(pane)
        if state is None or state.dead:
            code = state.dead_status if state is not None else None
            said = _last_line(pane)
            raise KodelythError(
                f"the session's model proxy exited (status {code}) before it listened"
                f"{f' ({said})' if said else ''}: {_without_proxy(plan)}"
            )
        if time.monotonic() >= deadline:
            raise KodelythError(
                f"the session's model proxy did not start within {PROXY_START_TIMEOUT_S:g} s: "
                f"the machine may be overloaded; try again, or {_without_proxy(plan)}"
            )
        time.sleep(0.01)
    return pane


def kill_pane(session: str, pane: str) -> None:
    """End one pane this run made in ``session`` (its window goes with its last pane);
    one gone already (with its session) is fine."""
    if pane in (tmux.panes(session) or {}):
        tmux.run_sequence([["kill-pane", "-t", pane]])


def _last_line(pane: str) -> str | None:
    """What a dead pane printed last (the window goes with the rollback)."""
    out = tmux.run_sequence([["capture-pane", "-p", "-t", pane]]) if pane else None
    lines = [
        line.strip()
        for line in (out.stdout if out else "").splitlines()
        if line.strip() and not line.startswith("Pane is dead")  # tmux's own banner
    ]
    return lines[-1][:200] if lines else None


def _without_proxy(plan: OrchestrationPlan) -> str:
    if plan.offline:
        return "an offline replay cannot run without it; check the bundle's recordings"
    return "pass --no-record to run without it"


LINKS_DIR = ".kodelyth-bin"


def _arg0_links(plan: OrchestrationPlan) -> str | None:
    """A directory in the session's coordination dir holding the links the harness's
    CLI looks up on PATH (``Harness.arg0_links``), or None. Its name cannot be a
    worker's (a slug starts with a letter or digit)."""
    if plan.harness in (None, "custom"):
        return None
    from kodelyth_ecc.harnesses import get_harness, native_binary

    adapter = get_harness(plan.harness)
    program = shutil.which(adapter.program) if adapter.program else None
    target = native_binary(program) if adapter.arg0_links and program else None
    if target is None:
        return None
    directory = os.path.join(plan.coordination_dir, LINKS_DIR)
    _check_links_dir(directory, adapter.arg0_links)
    for name in adapter.arg0_links:
        link = os.path.join(directory, name)
        if os.path.islink(link) and os.readlink(link) == target:
            continue
        # Made again (a retry after the CLI moved): under a temporary name, then over it.
        fresh = f"{link}.{secrets.token_hex(4)}.tmp"
        os.symlink(target, fresh)
        os.replace(fresh, link)
    return directory


def _check_links_dir(directory: str, names: tuple[str, ...]) -> None:
    """The links directory goes first on the agent's PATH: it must be a directory of
    ours (a retry finds the one ``--execute`` made) holding nothing but the links, so
    nothing put there (a symlink to elsewhere, a `git` of someone's) runs in its stead."""
    import stat

    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        os.mkdir(directory)
        return
    if not stat.S_ISDIR(info.st_mode):
        raise KodelythError(
            f"{directory} is not a directory (a symlink?): it would go first on the agents' "
            "PATH; remove it and try again"
        )
    strangers = sorted(set(os.listdir(directory)) - set(names))
    if strangers:
        from kodelyth_ecc.termsafe import one_line

        raise KodelythError(
            f"{directory} holds {one_line(strangers[0], 60)!r}, which kodelyth-ecc did not put "
            "there: it would go first on the agents' PATH; remove it and try again"
        )


def harness_env(plan: OrchestrationPlan) -> tuple[tuple[str, str], ...]:
    """The harness's environment defaults, for ``write_environment_files``."""
    if plan.harness in (None, "custom"):
        return ()
    from kodelyth_ecc.harnesses import get_harness

    return get_harness(plan.harness or "claude").env_defaults


def session_commands(plan: OrchestrationPlan, *, window_only: bool = False) -> list[list[str]]:
    """The tmux session and its first window: a banner pane saying where the session
    is and how to see its status (the workers' panes are added to it). With
    ``window_only``, that window in the live session (a retry when it was closed)."""
    target = f"={plan.session_name}:{WINDOW_NAME}"
    banner = (
        'printf "Session: %s\\nCoordination: %s\\nStatus: kodelyth-ecc status %s\\n" '
        '"$1" "$2" "$1"; exec "${SHELL:-/bin/sh}"'
    )
    create = (
        ["new-window", "-d", "-t", f"={plan.session_name}:", "-n", WINDOW_NAME]
        if window_only
        else ["new-session", "-d", "-s", plan.session_name, "-n", WINDOW_NAME]
    )
    size = [] if window_only else ["-x", "200", "-y", "50"]
    return [
        [
            *create, "-c", tmux.literal(plan.repo_root), *size, "-P", "-F", "#{pane_id}",
            "/bin/sh", "-c", banner, "sh", plan.session_name, plan.coordination_dir,
        ],
        ["set-option", "-w", "-t", target, "remain-on-exit", "on"],
    ]  # fmt: skip


def worker_pane_commands(
    plan: OrchestrationPlan,
    worker: WorkerPlan,
    run_id: str,
    env_file: str,
    cli: str | None = None,
    *,
    window: str | None = None,
) -> list[list[str]]:
    """The worker's pane running its runner, in ``window`` (default: the session's
    first), titled with its slug. No environment on these command lines: the runner
    reads the caller's from ``env_file`` (a tmux server started earlier would hand
    panes its own, older one)."""
    target = window or f"={plan.session_name}:{WINDOW_NAME}"
    argv = plan.runner_argv(worker, run_id, env_file, cli, _arg0_links(plan))
    return [
        ["split-window", "-t", target, "-c", tmux.literal(plan.repo_root),
         "-P", "-F", "#{pane_id}", *argv],
        # split-window without -d made the new pane active: title it.
        ["select-pane", "-t", target, "-T", worker.worker_slug],
        ["select-layout", "-t", target, "tiled"],
    ]  # fmt: skip


def _pane_commands(
    plan: OrchestrationPlan, run_id: str, env_files: dict[str, str], cli: str | None = None
) -> list[list[str]]:
    commands = session_commands(plan)
    for worker in plan.workers:
        commands += worker_pane_commands(plan, worker, run_id, env_files[worker.worker_slug], cli)
    return commands


def launch_commands(plan: OrchestrationPlan, slugs: list[str], run_id: str) -> list[list[str]]:
    """Open the launch gates the runners of ``slugs`` wait at."""
    return [["wait-for", "-S", naming.gate_channel(plan.session_name, s, run_id)] for s in slugs]


def _refuse_taken(plan: OrchestrationPlan, branch: str, path: str) -> None:
    """Under the worktree lock: another run may have taken a name since pre-flight."""
    taken = (
        f"branch {branch} exists"
        if gitrepo.branch_exists(plan.repo_root, branch)
        else f"worktree path {path} exists"
        if os.path.lexists(path)
        else None
    )
    if taken:
        raise SessionTaken(
            f"session {plan.session_name!r} is already taken: {taken}; "
            "pick another --session, or pass --replace"
        )


def _remove_worktrees(repo: str, added: list[tuple[str, str]]) -> None:
    """Undo this run's `worktree add`s (only those), under the repository's lock."""
    if not added:
        return
    failures = []
    with repolock.worktree_lock(repo):
        registered = gitrepo.worktrees(repo)
        stale = False
        for path, branch in reversed(added):
            try:
                if os.path.realpath(path) in registered:
                    if os.path.isdir(path):
                        gitrepo.worktree_remove(repo, path)
                    else:
                        stale = True  # its directory is gone: only prune drops the entry
                if gitrepo.branch_exists(repo, branch):
                    gitrepo.branch_delete(repo, branch)
            except KodelythError as exc:
                failures.append(f"{path}: {exc.message}")
        if stale:
            gitrepo.worktree_prune(repo)
    if failures:
        raise KodelythError("; ".join(failures))


def rollback(undo: list[tuple[str, Callable[[], None]]]) -> list[str]:
    """Undo what a run made, newest first, going on past a step that fails; returns
    what could not be undone (for the one-line error). A second Ctrl-C (or SIGTERM,
    SIGHUP) meanwhile waits until the undoing is done: cut short, it would leave half."""
    failures = []
    with _deferred_interrupts():
        for description, action in reversed(undo):
            try:
                action()
            except Exception as exc:  # keep undoing the rest
                failures.append(f"{description}: {exc}")
    return failures


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP noted, not acted on, for the block; one that came is
    a KeyboardInterrupt after it. (Handlers, not a signal mask: the tmux and git it
    runs meanwhile must not inherit blocked signals.)"""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []

    def note(signum: int, frame: object) -> None:
        came.append(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, note)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if came:
        raise KeyboardInterrupt


@contextlib.contextmanager
def termination_interrupts() -> Iterator[None]:
    """SIGTERM (``timeout``, ``kill``) and SIGHUP (a closed terminal) stop a run the way
    Ctrl-C does, so it is rolled back instead of leaving half a session behind.
    Only where nobody else handles them, and only for the run."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_harness(plan: OrchestrationPlan) -> str | None:
    """What must work before any worker starts: the harness's CLI (whose name and
    version, returned, go into each worker's usage) and, sandboxed, bubblewrap."""
    problems, cli = harness_problems(plan)
    if problems:
        raise KodelythError(problems[0])
    if plan.sandbox is not None:
        from kodelyth_ecc.sandbox import sandbox_problem

        problem = sandbox_problem()
        if problem is not None:
            raise KodelythError(f"--sandbox: {problem}")
    return cli


def execute_plan(
    plan: OrchestrationPlan, on_step: Callable[[str], None] | None = None
) -> ExecutionResult:
    """Create everything and start the workers; on any failure undo it all.
    ``on_step`` is told each step as it begins ("creating the worktree for a"), for a
    progress line."""
    with termination_interrupts():
        return _execute_plan(plan, on_step or (lambda _step: None))


def _execute_plan(plan: OrchestrationPlan, on_step: Callable[[str], None]) -> ExecutionResult:
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    gitrepo.repo_root(plan.repo_root)
    tmux.require()
    cli = check_harness(plan)
    commit = gitrepo.resolve_commit(plan.repo_root, plan.base_ref)
    _claim_names(plan, execute=True)
    lap("preflight")

    undo: list[tuple[str, Callable[[], None]]] = []
    step = "writing coordination files"
    on_step(step)
    root_existed = os.path.isdir(plan.coordination_root)
    # Directories above the roots that this run will create (and so must remove).
    new_coordination_parents = missing_dirs(os.path.dirname(plan.coordination_root))
    new_worktree_dirs = missing_dirs(plan.worktree_root)

    def remove_coordination() -> None:
        # Only what this run made: a racing run may own the dir (SessionTaken) or the root.
        if created and os.path.isdir(plan.coordination_dir):
            shutil.rmtree(plan.coordination_dir)
        if not root_existed and os.path.isdir(plan.coordination_root):
            leftovers = set(os.listdir(plan.coordination_root)) - {".gitignore"}
            if not leftovers:
                shutil.rmtree(plan.coordination_root)
        remove_empty_dirs(new_coordination_parents)

    created = False
    try:
        undo.append(("coordination dir", remove_coordination))
        record = materialize_plan(plan, base_commit=commit, mode="execute")
        created = True
        for slug, source in plan.replay_sources.items():
            # What an offline replay's proxy answers from (checked again when read).
            with open(os.path.join(plan.coordination_dir, slug, REPLAY_SOURCE_FILE), "xb") as fh:
                fh.write(source)
        lap("coordination")

        # Panes first: their runners start (and wait at the launch gate) while git
        # creates the worktrees, instead of after it.
        step = "writing the workers' environment"
        on_step(step)
        env_dirs: list[str] = []

        def remove_environment() -> None:
            for directory in env_dirs:
                shutil.rmtree(directory, ignore_errors=True)

        undo.append(("environment files", remove_environment))
        env_dir, env_files = write_environment_files(
            [w.worker_slug for w in plan.workers], harness_env(plan)
        )
        env_dirs.append(env_dir)

        step = "creating the tmux session"
        on_step(step)

        def kill_tmux() -> None:
            tmux.kill_session(plan.session_name)

        undo.append((f"tmux session {plan.session_name}", kill_tmux))
        run_id = secrets.token_hex(4)
        out = tmux.run_sequence(_pane_commands(plan, run_id, env_files, cli))
        pane_ids = [line.strip() for line in out.stdout.splitlines() if line.startswith("%")]
        if len(pane_ids) != len(plan.workers) + 1:
            raise KodelythError(
                f"tmux reported {len(pane_ids)} panes for {len(plan.workers) + 1} expected"
            )
        panes = {w.worker_slug: pane for w, pane in zip(plan.workers, pane_ids[1:], strict=True)}
        record.tmux_session = plan.session_name
        # What a retry rebuilds the workers' commands from.
        record.plan_config = plan.config_record()
        for worker_record in record.workers:
            worker_record.pane_id = panes[worker_record.slug]
        write_session_record(plan.coordination_dir, record)
        lap("tmux")

        if plan.proxied:
            step = "starting the session's model proxy"
            on_step(step)
            start_proxy(plan, env_dir, undo)
            lap("proxy")

        undo.append(("worktree root", lambda: remove_empty_dirs(new_worktree_dirs)))
        # What this run added, and so what its rollback removes: a worktree or branch
        # is only ever added after checking, under the lock, that none of that name exists.
        added: list[tuple[str, str]] = []
        undo.append(("worktrees", lambda: _remove_worktrees(plan.repo_root, added)))
        # `worktree add` runs one at a time (git refuses concurrent ones); the checkouts,
        # most of the cost on a big repo, then run in parallel. Only without a
        # post-checkout hook: `--no-checkout` would skip it.
        parallel_checkout = len(plan.workers) > 1 and not gitrepo.has_post_checkout_hook(
            plan.repo_root
        )
        step = "waiting for the repository's worktree lock"
        on_step(step)
        with repolock.worktree_lock(plan.repo_root):
            for worker in plan.workers:
                step = f"creating the worktree for {worker.worker_slug}"
                on_step(step)
                _refuse_taken(plan, worker.branch_name, worker.worktree_path)
                added.append((worker.worktree_path, worker.branch_name))
                gitrepo.worktree_add(
                    plan.repo_root,
                    worker.branch_name,
                    worker.worktree_path,
                    commit,
                    checkout=not parallel_checkout,
                )
        if parallel_checkout:
            step = "checking out the worktrees"
            on_step(step)
            gitrepo.check_out_worktrees([w.worktree_path for w in plan.workers])
        for worker in plan.workers:
            step = f"copying seeds into {worker.worktree_path}"
            on_step(step)
            _copy_seeds(plan.repo_root, worker.worktree_path, worker.seed_paths)
        lap("worktrees")

        step = "starting the runners"
        on_step(step)
        wait_for_runners(plan, env_files, panes)
        remove_environment()

        step = "launching the workers"
        on_step(step)
        slugs = [w.worker_slug for w in plan.workers]
        tmux.run_sequence(
            [*launch_commands(plan, slugs, run_id), ["select-pane", "-t", pane_ids[0]]]
        )
        lap("launch")
    except BaseException as exc:
        failures = rollback(undo)
        if isinstance(exc, (KeyboardInterrupt, SessionTaken)):
            raise
        reason = exc.message if isinstance(exc, KodelythError) else f"{type(exc).__name__}: {exc}"
        tail = (
            f"; could not undo {'; '.join(failures)}"
            if failures
            else "; everything this run created was removed"
        )
        raise KodelythError(f"--execute failed while {step}: {reason}{tail}") from exc
    return ExecutionResult(plan.session_name, plan.coordination_dir, commit, panes, timings)
