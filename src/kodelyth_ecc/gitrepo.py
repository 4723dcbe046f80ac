"""The git operations a swarm needs, each one call through ``cmd_output``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from kodelyth_ecc.errors import KodelythError
from kodelyth_ecc.process import CmdResult, cmd_output, cmd_output_bytes, scrubbed_env


class NotInWorkTree(KodelythError):
    """git itself says the directory is not inside a work tree."""


def git(*args: str, cwd: str, check: bool = True) -> str:
    return cmd_output("git", *args, cwd=cwd, check=check).stdout


def git_bytes(
    *args: str, cwd: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> bytes:
    """A git command's stdout exactly as git wrote it (patches, ``-z`` lists)."""
    return cmd_output_bytes("git", *args, cwd=cwd, env=env, stdin=stdin).stdout


# What git says (in the C locale) when there is no work tree around a directory.
_NOT_A_WORK_TREE = ("not a git repository", "must be run in a work tree")


def _where_git_failed(result: CmdResult, cmd: tuple[str, ...], where: str) -> KodelythError:
    """The error for a failed ``rev-parse --show-toplevel``: "not inside a git work
    tree" only when git says so; any other failure (a lock, a permission, "dubious
    ownership", a crash) as git reported it, so the user can fix the real cause."""
    if result.returncode == 0 or any(s in result.stderr for s in _NOT_A_WORK_TREE):
        return NotInWorkTree(
            f"{where} is not inside a git work tree: cd into your repository (or run `git init`)"
        )
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    reason = lines[-1] if lines else "no output"
    return KodelythError(
        f"`{' '.join(cmd)}` exited {result.returncode} in {where}: {reason} "
        "(fix what git reports, then retry)"
    )


def _c_locale() -> dict[str, str]:
    # Messages in English, so that "not a git repository" can be recognised.
    return scrubbed_env({"LC_ALL": "C"})


def repo_root(cwd: str | None = None) -> str:
    """The top of the git work tree containing ``cwd``."""
    where = cwd or os.getcwd()
    cmd = ("git", "rev-parse", "--show-toplevel")
    result = cmd_output(*cmd, cwd=where, check=False, env=_c_locale())
    if result.returncode != 0 or not result.stdout.strip():
        raise _where_git_failed(result, cmd, where)
    return os.path.normpath(result.stdout.strip())


def locate(ref: str, cwd: str | None = None) -> tuple[str, str | None]:
    """The work tree's top and the commit ``ref`` names (None if it names none),
    in one git call: a dry-run pays for every process it starts."""
    where = cwd or os.getcwd()
    cmd = (
        "git", "rev-parse", "--show-toplevel", "--verify", "--quiet", "--end-of-options",
        f"{ref}^{{commit}}",
    )  # fmt: skip
    result = cmd_output(*cmd, cwd=where, check=False, env=_c_locale())
    lines = result.stdout.split("\n")
    if result.returncode not in (0, 1) or not lines[0].strip():
        if any(s in result.stderr for s in _NOT_A_WORK_TREE):
            raise _where_git_failed(result, cmd, where)
        # Some other failure: ask for the top alone (if that fails too, its error is
        # git's own, as git gave it); the commit is then resolved by resolve_commit.
        return repo_root(where), None
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


# What git-check-ref-format(1) forbids anywhere in a ref name.
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def is_branch_name(name: str) -> bool:
    """Whether ``name`` can be a branch's own name (git-check-ref-format's rules, as
    `git branch` applies them: no leading '-', not ``HEAD``): never a revision such as
    ``main~1``, ``main@{1}`` or ``main^{commit}``, which would resolve to a commit
    that no branch moves with."""
    if not name or name in ("HEAD", "@") or name.startswith(("-", "/")):
        return False
    if name.endswith(("/", ".")) or "//" in name or ".." in name or "@{" in name:
        return False
    if _BAD_REF_CHARS.search(name):
        return False
    return all(p and not p.startswith(".") and not p.endswith(".lock") for p in name.split("/"))


def branch_tip(repo: str, branch: str) -> str | None:
    """The commit the local branch ``branch`` points at, by its exact name (None: no
    such branch, or not a branch name). A name git would resolve some other way
    (``main~1``, a tag, ``refs/tags/refs/heads/main``) is no branch."""
    if not is_branch_name(branch):
        return None
    ref = f"refs/heads/{branch}"
    out = git("for-each-ref", "--format=%(refname)%00%(objecttype)%00%(objectname)", ref,
              cwd=repo)  # fmt: skip
    for line in out.splitlines():
        name, kind, sha = [*line.split("\0"), "", ""][:3]
        if name == ref and kind == "commit":
            return sha
    return None


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


def unsaved_commits(repo: str, tips: Sequence[str], base: str, doomed: Sequence[str]) -> int:
    """Commits reachable from ``tips`` that nothing else keeps: not in ``base`` and
    not reachable from any local branch, tag or remote-tracking ref except the
    branches in ``doomed`` (those about to be deleted). As `git branch -d` judges
    "merged", but against every other ref, not only HEAD."""
    if not tips:
        return 0
    excludes = [f"--exclude={branch}" for branch in doomed]
    out = git(
        "rev-list", "--count", *tips, "--not", base, *excludes, "--branches", "--tags",
        "--remotes", cwd=repo,
    )  # fmt: skip
    return int(out.strip() or 0)


def head_commit(worktree: str) -> str | None:
    """The commit checked out in ``worktree`` (None before its first commit)."""
    result = cmd_output(
        "git", "rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=worktree, check=False
    )
    return result.stdout.strip() or None


def ignored_files(worktree: str) -> list[str]:
    """Untracked files that ``.gitignore`` (or info/exclude) covers, worktree-relative,
    every file inside ignored directories listed (``.env``, ``node_modules/...``).
    Names are exact (``-z``; undecodable bytes kept as surrogates, as ``os`` does)."""
    out = git_bytes("ls-files", "-z", "--others", "--ignored", "--exclude-standard", cwd=worktree)
    return [os.fsdecode(name) for name in out.split(b"\0") if name]


# Settings that change how a patch is written (prefixes, relative paths, textconv
# filters): pinned, so that what is saved is what `git apply` on the base restores.
_PATCH_FLAGS = (
    "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames", "--no-relative",
    "--src-prefix=a/", "--dst-prefix=b/",
)  # fmt: skip


def diff_against(worktree: str, base: str, include_ignored: Sequence[str] = ()) -> bytes:
    """Everything in the worktree that differs from ``base`` (commits, edits, new
    files, deletions, mode changes), as a patch for ``git apply``, byte for byte:
    CR, CRLF, non-UTF-8 and binary content are kept exactly.

    ``include_ignored`` are paths taken even if ``.gitignore`` covers them (edited
    seeds such as a local ``.env``).
    """
    patch, _ = worktree_diff(worktree, base, binary=True, include_ignored=include_ignored)
    return patch


def diff_commits(repo: str, base: str, branch: str) -> bytes:
    """``base`` to the tip of ``branch`` as a byte-exact, binary-safe patch."""
    return git_bytes("diff", *_PATCH_FLAGS, "--binary", base, f"refs/heads/{branch}", cwd=repo)


def worktree_changes(
    worktree: str,
    base: str,
    *,
    binary: bool = False,
    stat: bool = False,
    include_ignored: Sequence[str] = (),
) -> tuple[str, str]:
    """(patch, diffstat) of the worktree against ``base``: commits, edits and new files,
    as text to show (bad UTF-8 replaced; use ``diff_against`` for a patch to apply).

    Uses a throwaway index so the worktree's own index is left untouched. Without
    ``binary``, binary files show as "Binary files differ" (text-only patches).
    """
    patch, summary = worktree_diff(
        worktree, base, binary=binary, stat=stat, include_ignored=include_ignored
    )
    return patch.decode("utf-8", errors="replace"), summary


def _scratch_index(
    worktree: str, index_dir: str, include_ignored: Sequence[str], exclude: Sequence[str]
) -> dict[str, str]:
    """An environment whose index (a file in ``index_dir``) holds everything in the
    worktree as ``git add --all`` would stage it: tracked edits, deletions and new files
    not ignored, files the worktree's index tracks although ignored (``git add -f``),
    plus ``include_ignored``; ``exclude`` paths stay as HEAD has them. The worktree's
    own index is read, never written."""
    add = ("add", "--all", *(_excludes(exclude) if exclude else ()))
    steps: list[tuple[str, ...]] = [("read-tree", "HEAD"), add]
    forced = [
        rel
        for rel in _indexed_but_ignored(worktree)
        if not any(rel == p or rel.startswith(p + "/") for p in exclude)
        and os.path.lexists(os.path.join(worktree, rel))
    ]
    if forced:
        steps.append(("--literal-pathspecs", "add", "--force", "--", *forced))
    if include_ignored:
        steps.append(("add", "--force", "--", *include_ignored))
    env = scrubbed_env({"GIT_INDEX_FILE": os.path.join(index_dir, "index")})
    for args in steps:
        result = cmd_output("git", *args, cwd=worktree, env=env, check=False)
        if result.returncode != 0:
            # git's reason is its first line ("'sub/' does not have a commit checked
            # out"), not its last ("adding files failed").
            said = [line for line in result.stderr.splitlines() if line.strip()]
            reason = "; ".join(said[:2]) if said else f"exited {result.returncode}"
            raise KodelythError(
                f"git could not read the worktree {worktree} (`git {' '.join(args[:2])}`: "
                f"{reason}): fix what git reports there, then try again"
            )
    return env


def _indexed_but_ignored(worktree: str) -> list[str]:
    """Files the worktree's index holds that ``.gitignore`` covers (added with
    ``git add -f``, committed or not): work that ``git add --all`` alone would miss."""
    out = git_bytes("ls-files", "-z", "--cached", "--ignored", "--exclude-standard", cwd=worktree)
    return [os.fsdecode(name) for name in out.split(b"\0") if name]


def worktree_diff(
    worktree: str,
    base: str,
    *,
    binary: bool = False,
    stat: bool = False,
    patch: bool = True,
    include_ignored: Sequence[str] = (),
) -> tuple[bytes, str]:
    """(patch bytes, diffstat) of everything in the worktree against ``base``, exactly
    as git wrote the patch: what ``worktree_changes`` shows and ``diff_against`` saves.
    ``patch=False`` skips the patch (b"") when only the diffstat is wanted."""
    import tempfile  # only teardown, export, diff and apply need it: off the start-up path

    with tempfile.TemporaryDirectory(prefix="kodelyth-index-") as tmp:
        env = _scratch_index(worktree, tmp, include_ignored, ())
        diff = ("diff", "--cached", *_PATCH_FLAGS)
        flags = ["--binary"] if binary else []
        text = git_bytes(*diff, *flags, base, cwd=worktree, env=env) if patch else b""
        summary = (
            cmd_output("git", *diff, "--stat", base, cwd=worktree, env=env).stdout if stat else ""
        )
        return text, summary


def worktree_tree(worktree: str, exclude: Sequence[str] = ()) -> str:
    """The tree of everything in the worktree as a commit of it would hold it (tracked
    edits and new files not ignored; ``exclude`` paths as HEAD has them), written
    through a throwaway index: the worktree, its index and its branch are untouched."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kodelyth-index-") as tmp:
        env = _scratch_index(worktree, tmp, (), exclude)
        return cmd_output("git", "write-tree", cwd=worktree, env=env).stdout.strip()


def rev_parse(repo: str, rev: str) -> str | None:
    """The object ``rev`` names (``X^{tree}``, ``refs/heads/b``), or None."""
    result = cmd_output(
        "git", "rev-parse", "--verify", "--quiet", "--end-of-options", rev, cwd=repo, check=False
    )
    return result.stdout.strip() or None


def current_branch(checkout: str) -> str | None:
    """The branch checked out in ``checkout`` (None: a detached HEAD)."""
    result = cmd_output("git", "symbolic-ref", "--quiet", "HEAD", cwd=checkout, check=False)
    ref = result.stdout.strip()
    return ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None


def merge_tree(repo: str, ours: str, theirs: str) -> str | None:
    """The tree ``git merge`` of ``theirs`` into ``ours`` would write (None: it would
    conflict, or this git is older than 2.38 and cannot say without a checkout)."""
    result = cmd_output(
        "git", "merge-tree", "--write-tree", "--no-messages", ours, theirs, cwd=repo, check=False
    )
    if result.returncode != 0:
        return None
    return result.stdout.split("\n", 1)[0].strip() or None


def refs_under(repo: str, prefix: str) -> list[str]:
    """Full names of the refs under ``prefix`` (``refs/kodelyth/applied/s/``)."""
    out = git("for-each-ref", "--format=%(refname)", prefix, cwd=repo)
    return [line for line in out.splitlines() if line]


def ref_delete(repo: str, ref: str) -> None:
    git("update-ref", "--no-deref", "-d", ref, cwd=repo)


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
