"""The worker sandbox: bubblewrap around an agent, so that a stranger's task or a
recorded tool call cannot reach what the worker has no business with.

This is the first part of issue 12 (the command line does not use it yet): the
bwrap command line for one worker and the pre-flight check. What it builds is an
allowlist, not a blocklist: the system (``/usr``, ``/etc`` and the top-level links
into ``/usr``) read-only, what the caller names read-only (the agent CLI's install
directory), the worktree and the caller's writable paths read-write, a private empty
HOME (tmpfs) holding only the files the caller names, its own ``/tmp``, no network
(``--unshare-net``: only its own loopback), its own PID namespace that dies with the
worker (``--unshare-pid --die-with-parent``: nothing it starts outlives it). The facts
behind each flag are in docs/research/sandbox.md (bubblewrap 0.8.0, as root and as an
unprivileged user).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from kodelyth_ecc.records import Record

# The system, read-only: everything a shell, git and node need, nothing of anyone's.
_SYSTEM = ("/usr", "/etc")
# Top-level names that are links into /usr on a merged-/usr system (Debian 12), or
# directories of their own elsewhere.
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
INSTALL_HINT = "install Debian's bubblewrap (apt-get install bubblewrap)"


class SandboxSpec(Record):
    """What one worker's sandbox holds besides the system."""

    # Read-write: the worktree (also the working directory) and the caller's extras.
    worktree: str
    writable: tuple[str, ...] = ()
    # Read-only: the agent CLI's install directory, its runtime, ...
    readable: tuple[str, ...] = ()
    # The private HOME (a tmpfs at this path), and (source, name under it) files copied
    # in read-only: the CLI's settings, never the user's credentials unless named.
    home: str = "/home/agent"
    home_files: tuple[tuple[str, str], ...] = ()
    # Variables set inside (the environment is otherwise the one the worker was given).
    env: tuple[tuple[str, str], ...] = ()


def bwrap_argv(spec: SandboxSpec, command: Sequence[str], bwrap: str = "bwrap") -> list[str]:
    """The command line that runs ``command`` in ``spec``'s sandbox. Mounts apply in
    order, so the tmpfs of HOME and /tmp come before anything bound under them."""
    argv = [
        bwrap,
        "--die-with-parent",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--new-session",  # no TIOCSTI into the caller's terminal
    ]
    for path in _SYSTEM:
        if os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for name in _TOP_LEVEL:
        top = "/" + name
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", spec.home]
    for source, name in spec.home_files:
        argv += ["--ro-bind", source, os.path.join(spec.home, name)]
    for path in spec.readable:
        argv += ["--ro-bind", path, path]
    for path in (spec.worktree, *spec.writable):
        argv += ["--bind", path, path]
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
