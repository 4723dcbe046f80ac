"""Names derived from a session and its workers: slugs, branches, worktree paths.

Session and worker slugs become directory names, tmux session names and branch
names, so they are restricted to characters that are safe in all three.
"""

from __future__ import annotations

import os
import re
import time

from kodelyth_ecc.errors import UsageError

# The one rule for session names lives with the session on disk; re-exported here,
# where the other names are made.
from kodelyth_ecc.sessiondir import MAX_SLUG, shown_name, validate_session_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime as _dt

__all__ = [
    "branch_name",
    "default_session_name",
    "gate_channel",
    "shown_name",
    "slugify",
    "validate_session_name",
    "validate_worker_name",
    "worktree_path",
]

_SLUG_RUN = re.compile(r"[^a-z0-9]+")
# Letters, digits and the separators people put in agent names ("Fix Bug",
# "tdd_guide", "api.guardian"). Anything a shell would interpret is refused.
_WORKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]*")


def slugify(name: str) -> str:
    return _SLUG_RUN.sub("-", name.lower()).strip("-")


def validate_worker_name(name: str) -> str:
    if not name or not name.strip():
        raise UsageError("empty agent name: give names separated by single commas, e.g. a,b,c")
    if not _WORKER_NAME.fullmatch(name) or len(name) > MAX_SLUG:
        raise UsageError(
            f"invalid agent name {shown_name(name)}: use letters, digits, spaces, '.', '_' or '-' "
            "(at most 64 characters, starting with a letter or digit)"
        )
    return name


def default_session_name(agent_count: int, today: _dt.date | None = None) -> str:
    day = today.isoformat() if today else time.strftime("%Y-%m-%d")
    return f"swarm-{day}-{agent_count}a"


def branch_name(session: str, slug: str) -> str:
    return f"orchestrator-{session}-{slug}"


def worktree_path(worktree_root: str, repo_root: str, session: str, slug: str) -> str:
    repo_name = os.path.basename(os.path.normpath(repo_root))
    return os.path.join(worktree_root, f"{repo_name}-{session}-{slug}")


def gate_channel(session: str, slug: str, run_id: str) -> str:
    """tmux wait-for channel a worker's runner blocks on until every pane exists.

    ``run_id`` is fresh for every ``--execute``: a signal left pending on the server
    by an interrupted launch must not start a later run's worker early.
    """
    return f"kodelyth-go-{session}-{slug}-{run_id}"
