"""Helpers for the replay tests: reference bundles and hand-made bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kodelyth_ecc.bundle import Bundle, decode_bundle
from kodelyth_ecc.prompts import agent_prompt, worker_task_md

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference-bundles"
SCHEMA = "kodelyth.session-bundle/v1"


def reference(name: str) -> dict[str, Any]:
    """A JS-written bundle from ``tests/fixtures/reference-bundles`` as a dict."""
    data: dict[str, Any] = json.loads((REFERENCE / name).read_text(encoding="utf-8"))
    return data


def reference_bundle(name: str) -> Bundle:
    return decode_bundle((REFERENCE / name).read_bytes(), name)


def task_md(slug: str, objective: str, session: str = "origin") -> str:
    """A worker's task.md as a swarm writes it (paths from some other machine)."""
    root = "/home/someone/src/project"
    return worker_task_md(
        worker_name=slug,
        session_name=session,
        repo_root=root,
        worktree_path=f"{root}-{session}-{slug}",
        branch_name=f"orchestrator-{session}-{slug}",
        status_file=f"{root}/.orchestration/{session}/{slug}/status.md",
        handoff_file=f"{root}/.orchestration/{session}/{slug}/handoff.md",
        objective=objective,
    )


def swarm_task_md(slug: str, task: str, session: str = "origin") -> str:
    """task.md of a swarm worker: the agent prompt holding ``## Shared Task``."""
    return task_md(slug, agent_prompt(slug, task), session)


def bundle_dict(
    workers: dict[str, str],
    *,
    session: str = "origin",
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A v1 bundle with one worker per ``slug: task.md`` (sorted by slug)."""
    return {
        "schema": SCHEMA,
        "session": session,
        "exported_at": "2026-11-25T23:12:29Z",
        "exported_by": "kodelyth-ecc@test",
        "meta": meta if meta is not None else {},
        "workers": [
            {
                "slug": slug,
                "task": text,
                "handoff": f"# Handoff: {slug}\n",
                "status": f"# Status: {slug}\n",
            }
            for slug, text in sorted(workers.items())
        ],
    }


def make_bundle(
    workers: dict[str, str], *, session: str = "origin", meta: dict[str, Any] | None = None
) -> Bundle:
    data = bundle_dict(workers, session=session, meta=meta)
    return decode_bundle(json.dumps(data).encode("utf-8"), "test bundle")


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
