"""The git operations a swarm needs, each one call through ``cmd_output``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from kodelyth_ecc.errors import CalledProcessError, KodelythError
from kodelyth_ecc.process import cmd_output, scrubbed_env


def git(*args: str, cwd: str, check: bool = True) -> str:
    return cmd_output("git", *args, cwd=cwd, check=check).stdout


def repo_root(cwd: str | None = None) -> str:
    """The top of the git work tree containing ``cwd``."""
    where = cwd or os.getcwd()
    result = cmd_output("git", "rev-parse", "--show-toplevel", cwd=where, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise KodelythError(
            f"{where} is not inside a git work tree: cd into your repository (or run `git init`)"
        )
    return os.path.normpath(result.stdout.strip())


def locate(ref: str, cwd: str | None = None) -> tuple[str, str | None]:
    """The work tree's top and the commit ``ref`` names (None if it names none),
    in one git call: a dry-run pays for every process it starts."""
    where = cwd or os.getcwd()
    result = cmd_output(
        "git", "rev-parse", "--show-toplevel", "--verify", "--quiet", "--end-of-options",
        f"{ref}^{{commit}}", cwd=where, check=False,
    )  # fmt: skip
    lines = result.stdout.split("\n")
    if result.returncode not in (0, 1) or not lines[0].strip():
        return repo_root(where), None  # raises the not-a-repository error
    commit = lines[1].strip() if result.returncode == 0 and len(lines) > 1 else ""
    return os.path.normpath(lines[0].strip()), commit or None


def resolve_commit(repo: str, ref: str) -> str:
    result = cmd_output(
        "git",
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{ref}^{{commit}}",
        cwd=repo,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.strip():
        if not git("rev-list", "-n", "1", "--all", cwd=repo, check=False).strip():
            raise KodelythError(
                f"the repository {repo} has no commits yet: worktrees start from a commit, "
                "so commit something first (e.g. `git commit --allow-empty -m init`)"
            )
        raise KodelythError(
            f"base ref {ref!r} does not resolve to a commit in {repo}: "
            "pass an existing branch, tag or SHA with --base-ref"
        )
    return result.stdout.strip()


def branch_exists(repo: str, branch: str) -> bool:
    result = cmd_output(
        "git", "show-ref", "--verify", "--quiet", f"refs/heads/{branch}", cwd=repo, check=False
    )
    return result.returncode == 0


def branches(repo: str, prefix: str = "") -> set[str]:
    """Local branch names starting with ``prefix``, in one git call."""
    out = git("for-each-ref", "--format=%(refname)", f"refs/heads/{prefix}*", cwd=repo)
    return {line.removeprefix("refs/heads/") for line in out.splitlines() if line}


def worktrees(repo: str) -> dict[str, str | None]:
    """Registered worktree paths (real paths) mapped to their branch, if any."""
    out = git("worktree", "list", "--porcelain", cwd=repo)
    found: dict[str, str | None] = {}
    path: str | None = None
    for line in out.splitlines():
        if line.startswith("worktree "):
            path = os.path.realpath(line[len("worktree ") :])
            found[path] = None
        elif line.startswith("branch ") and path is not None:
            found[path] = line[len("branch ") :].removeprefix("refs/heads/")
    return found


def worktree_add(repo: str, branch: str, path: str, commit: str, *, checkout: bool = True) -> None:
    flags = [] if checkout else ["--no-checkout"]
    git("worktree", "add", "--quiet", *flags, "-b", branch, path, commit, cwd=repo)


def has_post_checkout_hook(repo: str) -> bool:
    """Whether `git worktree add` would run a post-checkout hook (core.hooksPath honoured)."""
    hook = git("rev-parse", "--git-path", "hooks/post-checkout", cwd=repo).strip()
    return os.access(os.path.join(repo, hook), os.X_OK)


def check_out_worktrees(paths: Sequence[str]) -> None:
    """Fill worktrees added with ``checkout=False`` (index and files), several at once.

    Git refuses concurrent `worktree add`s, but checking out separate worktrees in
    parallel is safe, and on a big repo it is most of a swarm's start-up."""
    from concurrent.futures import ThreadPoolExecutor

    def check_out(path: str) -> None:
        git("reset", "--hard", "--quiet", cwd=path)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(paths)))) as pool:
        for future in [pool.submit(check_out, path) for path in paths]:
            future.result()  # the first failure propagates


def worktree_remove(repo: str, path: str) -> None:
    git("worktree", "remove", "--force", "--force", path, cwd=repo)


def worktree_prune(repo: str) -> None:
    git("worktree", "prune", cwd=repo, check=False)


def branch_delete(repo: str, branch: str) -> None:
    git("branch", "-D", "--quiet", branch, cwd=repo)


def _excludes(paths: Sequence[str]) -> list[str]:
    return ["--", ".", *(f":(exclude,top){p}" for p in paths)]


def uncommitted_changes(worktree: str, ignore_paths: Sequence[str] = ()) -> list[str]:
    """``git status --porcelain`` lines, untracked files included, seeds excluded."""
    out = git(
        "status", "--porcelain", "--untracked-files=all", *_excludes(ignore_paths), cwd=worktree
    )
    return [line for line in out.splitlines() if line.strip()]


def commits_ahead(repo: str, branch: str, base: str) -> int:
    result = cmd_output(
        "git", "rev-list", "--count", f"{base}..refs/heads/{branch}", cwd=repo, check=False
    )
    return int(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip() else 0


def diff_against(worktree: str, base: str, include_ignored: Sequence[str] = ()) -> str:
    """Everything in the worktree that differs from ``base`` (commits, edits, new files),
    as a binary-safe patch for ``git apply``.

    ``include_ignored`` are paths taken even if ``.gitignore`` covers them (edited
    seeds such as a local ``.env``).
    """
    patch, _ = worktree_changes(worktree, base, binary=True, include_ignored=include_ignored)
    return patch


def worktree_changes(
    worktree: str,
    base: str,
    *,
    binary: bool = False,
    stat: bool = False,
    include_ignored: Sequence[str] = (),
) -> tuple[str, str]:
    """(patch, diffstat) of the worktree against ``base``: commits, edits and new files.

    Uses a throwaway index so the worktree's own index is left untouched. Without
    ``binary``, binary files show as "Binary files differ" (text-only patches).
    """
    steps: list[tuple[str, ...]] = [("read-tree", "HEAD"), ("add", "--all")]
    if include_ignored:
        steps.append(("add", "--force", "--", *include_ignored))
    import tempfile  # only teardown and export need it; keep it off the start-up path

    with tempfile.TemporaryDirectory(prefix="kodelyth-index-") as tmp:
        env = scrubbed_env({"GIT_INDEX_FILE": os.path.join(tmp, "index")})
        for args in steps:
            result = cmd_output("git", *args, cwd=worktree, env=env, check=False)
            if result.returncode != 0:
                raise CalledProcessError(
                    ("git", *args), result.returncode, result.stdout, result.stderr
                )
        diff = ["git", "diff", "--cached", "--no-color", "--no-ext-diff", "--no-renames"]
        patch = cmd_output(*diff, *(["--binary"] if binary else []), base, cwd=worktree, env=env)
        summary = cmd_output(*diff, "--stat", base, cwd=worktree, env=env).stdout if stat else ""
        return patch.stdout, summary


def commit_exists(repo: str, sha: str) -> bool:
    result = cmd_output(
        "git", "cat-file", "-e", "--end-of-options", f"{sha}^{{commit}}", cwd=repo, check=False
    )
    return result.returncode == 0


def is_ancestor(repo: str, ancestor: str, descendant: str) -> bool:
    result = cmd_output(
        "git", "merge-base", "--is-ancestor", ancestor, descendant, cwd=repo, check=False
    )
    return result.returncode == 0
