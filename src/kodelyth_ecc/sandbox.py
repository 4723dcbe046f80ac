"""The worker sandbox: bubblewrap around an agent, so that a stranger's task or a
recorded tool call cannot reach what the worker has no business with.

What it builds is an allowlist, not a blocklist: the system (``/usr``, ``/etc`` and the
top-level links into ``/usr``) read-only, what the caller names read-only (the agent
CLI's install directory, the Python the relay runs on), the worktree read-write, of the
repository's git dir only what the worktree needs to work and commit, a private empty
HOME (tmpfs) holding only the files the harness adapter names, its own ``/tmp``, no
network (``--unshare-net``: only its own loopback, where a relay forwards the model
proxy's port to the proxy's unix socket), its own PID namespace that dies with the
worker (``--unshare-pid --die-with-parent``: nothing it starts outlives it), and the
root read-only. The facts behind each flag are in docs/research/sandbox.md (bubblewrap
0.8.0, as root and as an unprivileged user).

git: the worker's commits go to a private object directory (with the real objects as
its alternate, read-only) and its refs to a private copy of ``refs/`` and ``logs/``;
after the worker exits, ``bring_back`` checks its objects (``index-pack --strict``) and
moves only its own branch, compare-and-swap. So no agent can delete the repository's
objects, move another branch or rewrite the main checkout, and the worktree's ``.git``
file and its admin dir's pointers are read-only (a rewritten one would make the host's
next git command run the agent's ``core.fsmonitor``).

The runner calls ``prepare``, runs ``Prepared.argv`` and then ``bring_back``; the plan
builds the ``WorkerSandbox`` it gets (paths only: it is on the runner's command line).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence

from kodelyth_ecc.records import Record

# The system, read-only: everything a shell, git and node need, nothing of anyone's.
_SYSTEM = ("/usr", "/etc")
# Top-level names that are links into /usr on a merged-/usr system (Debian 12), or
# directories of their own elsewhere.
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
INSTALL_HINT = "install Debian's bubblewrap (apt-get install bubblewrap)"
_SYSTEM_SECRETS = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-",
    "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key",
)  # fmt: skip
HOME = "/home/agent"
# Inside the sandbox only: the relay's sockets and the repository's real objects.
_INSIDE = "/tmp/.kodelyth"
PROXY_SOCKET = f"{_INSIDE}/proxy.sock"
EGRESS_SOCKET = f"{_INSIDE}/egress.sock"
BASE_OBJECTS = f"{_INSIDE}/objects"
# The loopback port an agent's HTTP(S)_PROXY names when --sandbox-allow-host opened hosts.
EGRESS_PORT = 3128
# Variables that would point the agent outside its sandbox: set under HOME instead.
_RELOCATED = (
    ("XDG_CONFIG_HOME", ".config"),
    ("XDG_DATA_HOME", ".local/share"),
    ("XDG_STATE_HOME", ".local/state"),
    ("XDG_CACHE_HOME", ".cache"),
)
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
# What the worker's objects may hold before bring_back refuses them (a runaway agent).
MAX_OBJECT_BYTES = 2 << 30
_LOOSE = re.compile(r"[0-9a-f]{2}/(?:[0-9a-f]{38}|[0-9a-f]{62})\Z")
_PACK = re.compile(r"pack/pack-(?:[0-9a-f]{40}|[0-9a-f]{64})\.(?:pack|idx)\Z")
_OID = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})\Z")
GIT_TIMEOUT_S = 600.0


class SandboxPolicy(Record):
    """What ``--sandbox`` was given: the hosts an agent may reach besides its model
    proxy, and extra read-only paths (a toolchain outside /usr)."""

    allow_hosts: tuple[str, ...] = ()
    allow_paths: tuple[str, ...] = ()
    # Why the workers are sandboxed (shown by dry-run): "--sandbox", "a stranger's bundle".
    reason: str = "--sandbox"

    def to_json(self) -> dict[str, object]:
        return {
            "allow_hosts": list(self.allow_hosts),
            "allow_paths": list(self.allow_paths),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: object) -> SandboxPolicy:
        """What ``to_json`` wrote (session.json keeps it, so a retried worker is sandboxed
        as it was); ValueError when it is not that."""
        if not isinstance(data, dict):
            raise ValueError("the sandbox policy must be an object")
        hosts, paths = data.get("allow_hosts", []), data.get("allow_paths", [])
        reason = data.get("reason", "--sandbox")
        for value in (hosts, paths):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("the sandbox policy's allow_hosts and allow_paths must be lists")
        if not isinstance(reason, str):
            raise ValueError("the sandbox policy's reason must be a string")
        return cls(tuple(hosts), tuple(paths), reason)

    def reach(self) -> str:
        """One line on what a sandboxed worker may reach, for dry-run."""
        hosts = ", ".join(self.allow_hosts) if self.allow_hosts else "no other host"
        paths = f"; {', '.join(self.allow_paths)} read-only" if self.allow_paths else ""
        return (
            "its worktree and branch, the system read-only, a private HOME and /tmp; "
            f"network: its model proxy and {hosts}{paths}"
        )


UNSANDBOXED_REACH = (
    "the agent runs with your permissions: it can read ~/.ssh, ~/.aws and every "
    "repository you can, write anywhere you can, and reach any host"
)


class WorkerSandbox(Record):
    """One worker's sandbox, as the runner gets it (JSON on its command line: paths and
    names only, never a value of the environment)."""

    worktree: str
    branch: str
    # Outside the sandbox, the worker's private git state while it runs.
    state_dir: str
    task_file: str
    handoff_file: str
    readable: tuple[str, ...] = ()
    # (outside path, path under HOME): the CLI's settings, copied in read-only.
    home_files: tuple[tuple[str, str], ...] = ()
    # Set inside (CODEX_HOME under HOME, ...), and the directories under HOME they name.
    env: tuple[tuple[str, str], ...] = ()
    home_dirs: tuple[str, ...] = ()
    egress: bool = False
    python: str = ""

    def to_argument(self) -> str:
        return json.dumps(self._asdict(), separators=(",", ":"))

    @classmethod
    def from_argument(cls, text: str) -> WorkerSandbox:
        data = json.loads(text)
        for key in ("readable", "home_dirs"):
            data[key] = tuple(data.get(key) or ())
        for key in ("home_files", "env"):
            data[key] = tuple(tuple(pair) for pair in data.get(key) or ())
        return cls(**data)


class SandboxSpec(Record):
    """What one worker's sandbox holds besides the system, in mount order."""

    # Read-write: the worktree (also the working directory) and the caller's extras.
    worktree: str
    writable: tuple[str, ...] = ()
    # Read-only: the agent CLI's install directory, its runtime, ...
    readable: tuple[str, ...] = ()
    # The private HOME (a tmpfs at this path), and (source, name under it) files bound
    # in read-only: the CLI's settings, never the user's credentials unless named.
    home: str = HOME
    home_files: tuple[tuple[str, str], ...] = ()
    home_dirs: tuple[str, ...] = ()
    # Variables set inside (the environment is otherwise the one the worker was given).
    env: tuple[tuple[str, str], ...] = ()
    # (flag, source, destination) mounts after the worktree: "--bind" or "--ro-bind".
    mounts: tuple[tuple[str, str, str], ...] = ()


def bwrap_argv(spec: SandboxSpec, command: Sequence[str], bwrap: str = "bwrap") -> list[str]:
    """The command line that runs ``command`` in ``spec``'s sandbox. Mounts apply in
    order, so the tmpfs of HOME and /tmp come before anything bound under them. No
    ``--new-session``: the agent's terminal is the runner's private pty, and a CLI that
    opens /dev/tty needs it as its controlling terminal."""
    argv = [
        bwrap,
        "--die-with-parent",
        # Its own user namespace and no capabilities, as root too: run as root, bwrap
        # makes none by itself and the agent kept CAP_SYS_ADMIN (it could remount .git
        # read-write and write /proc/sys/kernel/core_pattern).
        "--unshare-user",
        "--cap-drop",
        "ALL",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
    ]
    for path in _SYSTEM:
        if os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    # Root's uid still owns them inside: password hashes and host keys are hidden.
    for secret in _SYSTEM_SECRETS:
        if os.path.lexists(secret):
            argv += ["--ro-bind", "/dev/null", secret]
    for name in _TOP_LEVEL:
        top = "/" + name
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += ["--dev", "/dev", "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys"]
    argv += ["--tmpfs", "/tmp", "--tmpfs", spec.home]
    for name in spec.home_dirs:
        if name:
            argv += ["--dir", os.path.join(spec.home, name)]
    for source, name in spec.home_files:
        argv += ["--ro-bind", source, os.path.join(spec.home, name)]
    for path in spec.readable:
        argv += ["--ro-bind", path, path]
    for path in (spec.worktree, *spec.writable):
        argv += ["--bind", path, path]
    for flag, source, destination in spec.mounts:
        argv += [flag, source, destination]
    # Nothing else of the root is writable (bwrap's own root is a tmpfs).
    argv += ["--remount-ro", "/"]
    # claude refuses to skip its permission prompts as root outside a sandbox; this is one.
    for name, value in (("HOME", spec.home), ("IS_SANDBOX", "1"), ("TMPDIR", "/tmp"), *spec.env):
        argv += ["--setenv", name, value]
    return [*argv, "--chdir", spec.worktree, "--", *command]


def sandbox_problem(bwrap: str = "bwrap") -> str | None:
    """Why workers cannot be sandboxed here (None: they can): bubblewrap missing, or
    user namespaces refused (bwrap says so when it tries one)."""
    from kodelyth_ecc.process import cmd_output

    program = shutil.which(bwrap)
    if program is None:
        return f"bubblewrap is not installed: {INSTALL_HINT}"
    trial = cmd_output(
        program, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--", "true",
        check=False, timeout=20,
    )  # fmt: skip
    if trial.returncode == 0:
        return None
    said = (trial.stderr.strip().splitlines() or ["no reason given"])[-1][:200]
    return (
        f"bubblewrap cannot create the sandbox's namespaces here ({said}): enable "
        "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or "
        "user.max_user_namespaces above 0)"
    )


# --- what the plan gives each worker ---------------------------------------------------


def install_root(program: str, home: str | None = None) -> str:
    """The directory to bind for a program found on PATH: the top ``node_modules`` of
    an npm install (its ``.bin`` links and the platform packages beside it), else the
    directory above the ``bin`` that holds the resolved program. Never the user's HOME,
    one of its ancestors or a directory straight under it (``~/.local`` holds the
    recording key, ``~/.cargo`` its credentials): then only the program's own directory,
    or the program alone."""
    real = os.path.realpath(program)
    found = None
    for path in (os.path.abspath(program), real):
        marker = f"{os.sep}node_modules{os.sep}"
        if marker in path:
            found = path[: path.index(marker) + len(marker) - 1]
            break
    if found is None:
        parent = os.path.dirname(real)
        found = os.path.dirname(parent) if os.path.basename(parent) == "bin" else parent
    home = os.path.realpath(home or os.path.expanduser("~"))
    for candidate in (found, os.path.dirname(real), real):
        if not _too_wide(os.path.realpath(candidate), home):
            return candidate
    return real


def _too_wide(path: str, home: str) -> bool:
    inside_home_top = os.path.dirname(path) == home
    return path == home or home.startswith(path.rstrip(os.sep) + os.sep) or inside_home_top


def _outside_system(path: str) -> bool:
    real = os.path.realpath(path)
    return not any(real == top or real.startswith(top + os.sep) for top in _SYSTEM)


def relay_python() -> tuple[str, tuple[str, ...]]:
    """The Python the relay runs on inside, and what to bind for it: the system's when
    there is one (nothing to bind), else this one's installation."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        usable = os.path.isfile(candidate) and os.access(candidate, os.X_OK)
        if usable and not _outside_system(candidate):
            return candidate, ()
    base = getattr(sys, "_base_executable", sys.executable)
    real = os.path.realpath(base)
    return real, (os.path.realpath(sys.base_prefix),)


def readable_paths(programs: Sequence[str], extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The install roots of ``programs`` (those found on PATH outside the system dirs),
    and ``extra``, without duplicates or paths inside another."""
    found: list[str] = []
    for name in programs:
        program = shutil.which(name)
        if program is not None and _outside_system(program):
            found.append(install_root(program))
    found += [os.path.realpath(p) for p in extra]
    kept: list[str] = []
    for path in sorted(set(found), key=len):
        if not any(path == k or path.startswith(k.rstrip(os.sep) + os.sep) for k in kept):
            kept.append(path)
    return tuple(kept)


def home_files(
    wanted: Sequence[tuple[str, str]], environ: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """The adapter's ``(outside, under HOME)`` files that exist here: ``outside`` is
    ``~/...`` or ``$VAR/...`` (skipped when VAR is unset); the first found for each
    destination wins. Only regular files, never through a symlink's target elsewhere
    than the user meant (the real path is bound)."""
    chosen: dict[str, str] = {}
    for outside, inside in wanted:
        if inside in chosen:
            continue
        if outside.startswith("$"):
            name, _, rest = outside[1:].partition("/")
            base = environ.get(name)
            if not base:
                continue
            path = os.path.join(base, rest) if rest else base
        else:
            path = os.path.join(environ.get("HOME") or os.path.expanduser("~"), outside[2:])
        if os.path.isfile(path):
            chosen[inside] = os.path.realpath(path)
    return tuple((source, inside) for inside, source in chosen.items())


# --- what the runner does --------------------------------------------------------------

# What of the caller's environment a sandboxed agent gets: an allowlist, like its files.
# Its CLI's settings and API key (by the providers' and CLIs' prefixes), its locale and
# terminal, who commits; never another service's token (GITHUB_TOKEN, AWS_*, ...).
_ENV_NAMES = frozenset({
    "PATH", "TERM", "COLORTERM", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME", "SHELL",
    "COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "NO_PROXY", "no_proxy", "IS_SANDBOX",
    "DISABLE_AUTOUPDATER", "DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING",
})  # fmt: skip
_ENV_PREFIXES = (
    "LC_", "ANTHROPIC_", "CLAUDE_", "OPENAI_", "CODEX_", "OPENCODE_", "GEMINI_",
    "GOOGLE_GEMINI_", "KODELYTH_", "GIT_AUTHOR_", "GIT_COMMITTER_",
)  # fmt: skip


def sandbox_environment(env: Mapping[str, str], options: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment in the sandbox: the allowlisted names of ``env``, plus
    the variables the harness adapter points at the proxy (``--proxy-env``) and its key
    variables (``--offline-key``). Passed to bwrap as its own environment, never on its
    command line."""
    extra = set()
    with contextlib.suppress(ValueError, TypeError, IndexError):
        extra |= {item[0] for item in json.loads(options.get("proxy-env") or "[]")}
    extra |= {k for k in options.get("offline-key", "").split(",") if k}
    return {
        name: value
        for name, value in env.items()
        if name in _ENV_NAMES or name in extra or name.startswith(_ENV_PREFIXES)
    }


class Prepared(Record):
    """A worker's sandbox made ready: the command line, and what ``bring_back`` needs."""

    argv: tuple[str, ...]
    common_dir: str
    branch_before: str | None
    admin_dir: str = ""
    # The same sandbox around another command (the --verify check): bwrap up to ``--``.
    wrapper: tuple[str, ...] = ()


def _git(*args: str, git_dir: str | None = None, stdin: bytes | None = None) -> bytes:
    from kodelyth_ecc.process import cmd_output_bytes

    prefix = ("git", f"--git-dir={git_dir}") if git_dir else ("git",)
    return cmd_output_bytes(*prefix, *args, stdin=stdin, timeout=GIT_TIMEOUT_S).stdout


def _git_dirs(worktree: str) -> tuple[str, str]:
    """The worktree's admin dir and the repository's common dir, read before the agent
    runs (when nothing in them is the agent's yet): from the worktree's ``.git`` file and
    the admin dir's ``commondir``, as git reads them (a process less per worker), else
    asked of git."""
    try:
        with open(os.path.join(worktree, ".git"), encoding="utf-8") as fh:
            pointer = fh.read(4096).strip()
        admin = os.path.join(worktree, pointer.removeprefix("gitdir: "))
        with open(os.path.join(admin, "commondir"), encoding="utf-8") as fh:
            common = os.path.join(admin, fh.read(4096).strip())
        if pointer.startswith("gitdir: ") and os.path.isdir(os.path.join(common, "objects")):
            return os.path.realpath(admin), os.path.realpath(common)
    except OSError:
        pass
    out = _git("-C", worktree, "rev-parse", "--path-format=absolute", "--git-dir",
               "--git-common-dir").decode()  # fmt: skip
    lines = out.splitlines()
    return os.path.realpath(lines[0]), os.path.realpath(lines[1])


def _open_regular(path: str) -> int | None:
    """A descriptor for ``path`` if it is a regular file: never through a symlink, and
    without blocking on a FIFO the agent planted (checked after the open)."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _ref_value(path: str) -> str | None:
    """The object id a loose ref file holds (None: no such regular file, or no id)."""
    fd = _open_regular(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as fh:
        text = fh.read(128).decode("ascii", errors="replace").strip()
    return text if _OID.match(text) else None


def _alternates(objects: str) -> list[str]:
    """The repository's own alternates (a clone made with --reference): readable too."""
    try:
        with open(os.path.join(objects, "info", "alternates"), encoding="utf-8") as fh:
            lines = [line.strip() for line in fh.read(65536).splitlines()]
    except OSError:
        return []
    found = []
    for line in lines:
        if line and not line.startswith("#"):
            path = os.path.realpath(os.path.join(objects, line))
            if os.path.isdir(path):
                found.append(path)
    return found


def _identity(worktree: str) -> list[tuple[str, str]]:
    """The user's git identity as git sees it here (for commits inside)."""
    from kodelyth_ecc.process import cmd_output

    out = cmd_output(
        "git", "-C", worktree, "config", "--get-regexp", r"^user\.(name|email)$", check=False
    ).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        value = value.strip()
        if value and '"' not in value and "\\" not in value:
            found[key.removeprefix("user.")] = value  # the last one wins, as in git
    return sorted(found.items())


def prepare(
    ws: WorkerSandbox,
    command: Sequence[str],
    *,
    proxy: tuple[int, str] | None = None,
    egress: str | None = None,
    bwrap: str = "bwrap",
) -> Prepared:
    """Make the worker's private git state and return its sandboxed command line.
    ``proxy`` is (port, unix socket): inside, the relay listens on that loopback port
    and forwards to the socket; ``egress`` is the socket of the allowed-hosts proxy."""
    admin, common = _git_dirs(ws.worktree)
    objects = os.path.join(common, "objects")
    state = ws.state_dir
    os.makedirs(os.path.join(state, "objects", "info"), mode=0o700)
    with open(os.path.join(state, "objects", "info", "alternates"), "w", encoding="utf-8") as fh:
        fh.write(BASE_OBJECTS + "\n")
    for name in ("refs", "logs"):
        source = os.path.join(common, name)
        os.makedirs(source, exist_ok=True)  # a repository without reflogs yet
        shutil.copytree(source, os.path.join(state, name), symlinks=True)
    # Read-only inside, so the agent cannot give the worktree another git dir: a file
    # that must exist to be a mount point (it does nothing without worktreeConfig).
    config_worktree = os.path.join(admin, "config.worktree")
    if not os.path.lexists(config_worktree):
        open(config_worktree, "a").close()
    worktree_git = os.path.join(ws.worktree, ".git")
    home_extra = []
    identity = _identity(ws.worktree)
    if identity:
        # Who commits: the user's name and email, not the rest of their ~/.gitconfig
        # (credential helpers, tokens in URLs).
        gitconfig = os.path.join(state, "gitconfig")
        with open(gitconfig, "w", encoding="utf-8") as fh:
            fh.write("[user]\n" + "".join(f"\t{k} = {v}\n" for k, v in identity))
        home_extra.append((gitconfig, ".gitconfig"))
    mounts: list[tuple[str, str, str]] = [
        ("--ro-bind", worktree_git, worktree_git),
        ("--ro-bind", common, common),
        ("--bind", admin, admin),
        *(
            ("--ro-bind", p, p)
            for p in (os.path.join(admin, n) for n in ("commondir", "gitdir", "config.worktree"))
            if os.path.lexists(p)
        ),
        ("--ro-bind", objects, BASE_OBJECTS),
        *(("--ro-bind", p, p) for p in _alternates(objects)),
        ("--bind", os.path.join(state, "objects"), objects),
        ("--bind", os.path.join(state, "refs"), os.path.join(common, "refs")),
        ("--bind", os.path.join(state, "logs"), os.path.join(common, "logs")),
        ("--ro-bind", ws.task_file, ws.task_file),
        ("--bind", ws.handoff_file, ws.handoff_file),
    ]
    relays = []
    if proxy is not None:
        mounts.append(("--bind", proxy[1], PROXY_SOCKET))
        relays.append(f"{proxy[0]}={PROXY_SOCKET}")
    env: list[tuple[str, str]] = [(name, os.path.join(HOME, rest)) for name, rest in _RELOCATED]
    if egress is not None:
        port = EGRESS_PORT if proxy is None or proxy[0] != EGRESS_PORT else EGRESS_PORT + 1
        mounts.append(("--bind", egress, EGRESS_SOCKET))
        relays.append(f"{port}={EGRESS_SOCKET}")
        env += [(name, f"http://127.0.0.1:{port}") for name in _PROXY_VARS]
    env += list(ws.env)
    spec = SandboxSpec(
        worktree=ws.worktree,
        readable=ws.readable,
        home_files=(*ws.home_files, *home_extra),
        home_dirs=tuple(rest for _, rest in _RELOCATED) + ws.home_dirs,
        env=tuple(env),
        mounts=tuple(mounts),
    )
    inner = list(command)
    if relays:
        inner = [ws.python or "python3", "-I", "-S", "-c", RELAY, *relays, "--", *inner]
    # The environment it gets is ``sandbox_environment``'s allowlist (the runner's).
    argv = bwrap_argv(spec, inner, bwrap)
    branch_ref = os.path.join(common, "refs", "heads", *ws.branch.split("/"))
    wrapper = tuple(argv[: len(argv) - len(inner)])
    return Prepared(tuple(argv), common, _ref_value(branch_ref), admin, wrapper)


def _remove_tree(path: str) -> None:
    """``rm -rf``: the worker may have nested directories deeper than Python's
    recursion limit, which ``shutil.rmtree`` (3.10, 3.11) recurses into."""
    try:
        shutil.rmtree(path, ignore_errors=True)
    except RecursionError:
        from kodelyth_ecc.process import cmd_output

        cmd_output("rm", "-rf", "--one-file-system", "--", path, check=False, timeout=600)


def _object_files_in(objects: str) -> list[tuple[str, str]]:
    """(relative name, path) of the files where git keeps objects: ``xx/<rest>`` and
    ``pack/pack-*.{pack,idx}``, named as git names them. Only that layout is looked at
    (never a walk: a worker can nest directories deeper than any recursion limit)."""
    found = []
    try:
        top = sorted(os.listdir(objects))
    except OSError:
        return []
    for name in top:
        loose = len(name) == 2 and all(c in "0123456789abcdef" for c in name)
        if not loose and name != "pack":
            continue
        try:
            entries = sorted(os.listdir(os.path.join(objects, name)))
        except OSError:
            continue  # not a directory
        for entry in entries:
            rel = f"{name}/{entry}"
            if _LOOSE.match(rel) or _PACK.match(rel):
                found.append((rel, os.path.join(objects, name, entry)))
    return found


def _safe_objects(state_objects: str, into: str) -> int:
    """Copy the worker's loose objects and packs (regular files with git's names only,
    never through a symlink, never blocking on a FIFO) into ``into``; returns the bytes
    copied."""
    total = 0
    for rel, source in _object_files_in(state_objects):
        fd = _open_regular(source)
        if fd is None:
            continue
        with os.fdopen(fd, "rb") as src:
            total += os.fstat(src.fileno()).st_size
            if total > MAX_OBJECT_BYTES:
                raise OSError(f"its objects exceed {MAX_OBJECT_BYTES >> 30} GiB")
            target = os.path.join(into, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return total


def _object_files(state: str) -> bool:
    """Whether the worker's object directory holds any object file."""
    return bool(_object_files_in(os.path.join(state, "objects")))


def _object_ids(objects: str) -> list[str]:
    ids = []
    for rel, path in _object_files_in(objects):
        if _LOOSE.match(rel):
            ids.append(rel.replace("/", ""))
        elif rel.endswith(".idx"):
            with open(path, "rb") as fh:
                listed = _git("show-index", stdin=fh.read()).decode()
            ids += [line.split()[1] for line in listed.splitlines() if len(line.split()) > 1]
    return ids


# What a worker can leave in its worktree's admin dir that would steer the host's next
# git command there (a merge to finish, per-worktree refs, a sparse checkout).
_ADMIN_STATE = (
    "MERGE_HEAD", "MERGE_MSG", "MERGE_MODE", "CHERRY_PICK_HEAD", "REVERT_HEAD", "BISECT_LOG",
    "BISECT_START", "BISECT_TERMS", "BISECT_EXPECTED_REV", "REBASE_HEAD", "AUTO_MERGE",
    "rebase-merge", "rebase-apply", "sequencer", "refs", "info",
)  # fmt: skip
# How many entries of the worktree ``_defuse`` looks at for nested repositories.
MAX_SCANNED = 500_000


def _tidy_admin(ws: WorkerSandbox, admin: str) -> list[str]:
    """Put the worktree's admin dir back on the worker's branch, without the operation
    state it may have left there; returns what was changed."""
    if not admin:
        return []
    changed = []
    head = os.path.join(admin, "HEAD")
    want = f"ref: refs/heads/{ws.branch}\n".encode()
    fd = _open_regular(head)
    current = b""
    if fd is not None:
        with os.fdopen(fd, "rb") as fh:
            current = fh.read(4096)
    if current != want:
        if os.path.isdir(head) and not os.path.islink(head):
            _remove_tree(head)
        with open(head + ".kodelyth", "wb") as fh:
            fh.write(want)
        os.replace(head + ".kodelyth", head)
        changed.append("HEAD")
    for name in _ADMIN_STATE:
        path = os.path.join(admin, name)
        if os.path.isdir(path) and not os.path.islink(path):
            _remove_tree(path)
            changed.append(name)
        elif os.path.lexists(path):
            os.unlink(path)
            changed.append(name)
    return changed


def _defuse(worktree: str) -> list[str]:
    """Rename every nested ``.git`` the worker left in its worktree: a repository with
    its own config, which the host's ``git status`` enters for a submodule the worker
    staged, and whose ``core.fsmonitor`` or filters it would run. Returns the paths
    renamed, relative to the worktree. Iterative, and bounded."""
    renamed = []
    stack = [worktree]
    seen = 0
    while stack and seen < MAX_SCANNED:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if entry.name == ".git":
                if directory == worktree:
                    continue  # the worktree's own (read-only inside)
                target = entry.path + ".kodelyth-disabled"
                while os.path.lexists(target):
                    target += "-"
                os.rename(entry.path, target)
                renamed.append(os.path.relpath(entry.path, worktree))
            elif entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return renamed


def bring_back(ws: WorkerSandbox, prepared: Prepared) -> str | None:
    """After the worker exits: its new objects into the repository (validated by
    ``index-pack --strict``), then its own branch moved to where it committed,
    compare-and-swap. Nothing else it changed in its private refs leaves the sandbox.
    Returns None, or a one-line note of what could not be brought back (its state is
    then kept in ``state_dir``)."""
    notes = []
    try:
        renamed = _defuse(ws.worktree)
        if renamed:
            notes.append(f"nested repositories disabled ({', '.join(renamed[:3])}: .git renamed)")
        tidied = _tidy_admin(ws, prepared.admin_dir)
        if tidied:
            notes.append(f"worktree state reset ({', '.join(tidied[:4])})")
    except Exception as exc:  # a hostile worktree: say so, and still bring the commits
        notes.append(f"could not check the worktree ({str(exc)[:100]})")
    note = _bring_objects_back(ws, prepared)
    if note is not None:
        notes.insert(0, note)
    return "sandbox: " + "; ".join(notes) if notes else None


def _bring_objects_back(ws: WorkerSandbox, prepared: Prepared) -> str | None:
    import tempfile

    from kodelyth_ecc.errors import KodelythError

    state = ws.state_dir
    common = prepared.common_dir
    tip = _ref_value(os.path.join(state, "refs", "heads", *ws.branch.split("/")))
    if tip is not None and tip == prepared.branch_before and not _object_files(state):
        _remove_tree(state)  # it made no objects: nothing to bring
        return None
    try:
        scratch = tempfile.mkdtemp(prefix="import-", dir=state)
        bare = os.path.join(scratch, "repo.git")
        _git("init", "-q", "--bare", bare)
        objects = os.path.join(bare, "objects")
        _safe_objects(os.path.join(state, "objects"), objects)
        with open(os.path.join(objects, "info", "alternates"), "w", encoding="utf-8") as fh:
            fh.write(os.path.join(common, "objects") + "\n")
        ids = _object_ids(objects)
        if ids:
            pack = _git("pack-objects", "--stdout", "-q", git_dir=bare,
                        stdin=("\n".join(ids) + "\n").encode())  # fmt: skip
            _git("index-pack", "--stdin", "--strict", git_dir=common, stdin=pack)
        if tip is not None and tip != prepared.branch_before:
            _git("update-ref", "-m", "kodelyth-ecc: the sandboxed worker's commits",
                 f"refs/heads/{ws.branch}", tip, prepared.branch_before or "",
                 git_dir=common)  # fmt: skip
    except Exception as exc:  # whatever a hostile object store does: the state is kept
        from kodelyth_ecc.errors import CalledProcessError

        said = exc.stderr.strip().splitlines() if isinstance(exc, CalledProcessError) else []
        why = said[-1] if said else exc.message if isinstance(exc, KodelythError) else str(exc)
        return (
            f"the worker's commits were not brought back ({why[:160]}); "
            f"its objects and refs are kept in {state}"
        )
    _remove_tree(state)
    if tip is None:
        return "the worker's branch was deleted or damaged inside its sandbox; left as it was"
    return None


# The relay inside the sandbox (``python3 -I -S -c RELAY PORT=SOCKET... -- COMMAND``):
# each port is bound before the agent starts, so its first request never races the
# relay; a forked child copies bytes between each connection and the unix socket; the
# parent execs the agent. The relay dies with the sandbox's PID namespace. Only the
# built-in ``_socket`` and ``_thread``: ``import socket, threading`` (enum, selectors)
# doubled its start-up, and it is paid by every worker.
RELAY = r"""
import _socket as S, _thread as T, os, sys
args = sys.argv[1:]
cut = args.index("--")
listeners = []
for spec in args[:cut]:
    port, path = spec.split("=", 1)
    s = S.socket(S.AF_INET, S.SOCK_STREAM)
    s.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(port)))
    s.listen(128)
    listeners.append((s, path))

def pump(a, b, done=None):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    try:
        b.shutdown(S.SHUT_WR)
    except OSError:
        pass
    if done is not None:
        done.release()

def bridge(fd, path):
    c = S.socket(S.AF_INET, S.SOCK_STREAM, 0, fd)
    u = S.socket(S.AF_UNIX, S.SOCK_STREAM)
    try:
        u.connect(path)
    except OSError:
        c.close()
        u.close()
        return
    c.setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, 1)
    done = T.allocate_lock()
    done.acquire()
    T.start_new_thread(pump, (c, u, done))
    pump(u, c)
    done.acquire()
    c.close()
    u.close()

def serve(s, path):
    while True:
        fd, _ = s._accept()
        T.start_new_thread(bridge, (fd, path))

if listeners and os.fork() == 0:
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
    except OSError:
        pass
    for s, path in listeners[1:]:
        T.start_new_thread(serve, (s, path))
    serve(*listeners[0])
for s, _ in listeners:
    s.close()
os.execvp(args[cut + 1], args[cut + 1:])
"""
