"""A throwaway repository for ``kodelyth-ecc demo``: real git, no AI needed."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile

from kodelyth_ecc.process import cmd_output

_FILES = {
    "README.md": "# demo service\n\nA tiny repo that kodelyth-ecc creates for its demo.\n",
    "app/auth.py": 'def login(user, password):\n    return user == "admin"\n',
    "tests/test_auth.py": (
        "from app.auth import login\n\n\ndef test_login():\n    assert login('admin', 'x')\n"
    ),
}


def make_demo_repo(parent: str | None = None) -> str:
    """A fresh repository with one commit, in a new temporary directory."""
    base = tempfile.mkdtemp(prefix="kodelyth-demo-", dir=parent)
    try:
        return _fill_repo(os.path.join(base, "demo-repo"))
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def _fill_repo(repo: str) -> str:
    os.mkdir(repo)
    for rel, text in _FILES.items():
        path = os.path.join(repo, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    cmd_output("git", "-c", "init.defaultBranch=main", "init", "--quiet", cwd=repo)
    cmd_output("git", "add", "--all", cwd=repo)
    cmd_output(
        "git",
        "-c",
        "user.name=kodelyth demo",
        "-c",
        "user.email=demo@kodelyth.invalid",
        "commit",
        "--quiet",
        "--no-gpg-sign",
        "-m",
        "demo: initial commit",
        cwd=repo,
    )
    return repo


def demo_session_name() -> str:
    return f"demo-{secrets.token_hex(3)}"
