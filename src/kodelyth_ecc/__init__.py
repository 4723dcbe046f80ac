"""kodelyth-ecc: run AI coding agents as a swarm, and replay their sessions.

The public API is re-exported here lazily so that ``import kodelyth_ecc`` (and
the CLI start-up path) does not pay for modules a command never uses.
"""

from __future__ import annotations

import importlib
import sys

# Not `from typing import TYPE_CHECKING`: importing typing costs every pane's runner
# and every CLI start-up ~10 ms. Type checkers treat this name the same way.
TYPE_CHECKING = False

__version__ = "0.1.0"

_API = {
    "build_swarm_plan": "kodelyth_ecc.plan",
    "build_orchestration_plan": "kodelyth_ecc.plan",
    "plan_config_from_json": "kodelyth_ecc.plan",
    "PlanConfig": "kodelyth_ecc.plan",
    "WorkerSpec": "kodelyth_ecc.plan",
    "OrchestrationPlan": "kodelyth_ecc.plan",
    "WorkerPlan": "kodelyth_ecc.plan",
    "materialize_plan": "kodelyth_ecc.coordination",
    "SandboxPolicy": "kodelyth_ecc.sandbox",
    "sandbox_problem": "kodelyth_ecc.sandbox",
    "machine_id": "kodelyth_ecc.provenance",
    "execute_plan": "kodelyth_ecc.execute",
    "ExecutionResult": "kodelyth_ecc.execute",
    "collect_status": "kodelyth_ecc.status",
    "list_sessions": "kodelyth_ecc.status",
    "wait_for_session": "kodelyth_ecc.status",
    "teardown": "kodelyth_ecc.teardown",
    "apply_worker": "kodelyth_ecc.apply",
    "worker_diffs": "kodelyth_ecc.apply",
    "retry_workers": "kodelyth_ecc.retry",
    "resume_session": "kodelyth_ecc.retry",
    "pick_agents": "kodelyth_ecc.agents",
    "KodelythError": "kodelyth_ecc.errors",
    "Bundle": "kodelyth_ecc.bundle",
    "BundleWorker": "kodelyth_ecc.bundle",
    "BundleError": "kodelyth_ecc.bundle",
    "read_bundle": "kodelyth_ecc.bundle",
    "decode_bundle": "kodelyth_ecc.bundle",
    "encode_bundle": "kodelyth_ecc.bundle",
    "validate_bundle": "kodelyth_ecc.bundle",
    "write_bundle": "kodelyth_ecc.bundle",
    "export_bundle": "kodelyth_ecc.export",
    "import_bundle": "kodelyth_ecc.importer",
    "import_bundle_file": "kodelyth_ecc.importer",
    "next_replay_name": "kodelyth_ecc.replay",
    "extract_task": "kodelyth_ecc.replay",
    "build_replay_plan_config": "kodelyth_ecc.replay",
    "choose_base": "kodelyth_ecc.replay",
    "compare_bundles": "kodelyth_ecc.compare",
    "compare_runs": "kodelyth_ecc.compare",
    "load_run": "kodelyth_ecc.compare",
    "find_origin": "kodelyth_ecc.compare",
    "Comparison": "kodelyth_ecc.compare",
    "render_html": "kodelyth_ecc.compare_html",
    "render_markdown": "kodelyth_ecc.compare_render",
    "render_terminal": "kodelyth_ecc.compare_render",
    "sanitize_bundle": "kodelyth_ecc.sanitize",
    "scan_text": "kodelyth_ecc.sanitize",
    "redact_text": "kodelyth_ecc.sanitize",
    "SanitizeReport": "kodelyth_ecc.sanitize",
    "Finding": "kodelyth_ecc.sanitize",
    "SecretMatch": "kodelyth_ecc.sanitize",
    "PathRoots": "kodelyth_ecc.sanitize",
    "scan_bundle": "kodelyth_ecc.sanitize",
    "SecretInNameError": "kodelyth_ecc.sanitize",
    "SessionDir": "kodelyth_ecc.sessiondir",
    "WorkerDir": "kodelyth_ecc.sessiondir",
    "WORKER_FIELDS": "kodelyth_ecc.sessiondir",
    "validate_session_name": "kodelyth_ecc.sessiondir",
    "first_free_name": "kodelyth_ecc.freename",
    "Exchange": "kodelyth_ecc.exchanges",
    "parse_lines": "kodelyth_ecc.exchanges",
    "validate_exchanges": "kodelyth_ecc.exchanges",
    "usage_of": "kodelyth_ecc.exchanges",
    "total_usage": "kodelyth_ecc.exchanges",
    "tool_calls": "kodelyth_ecc.exchanges",
    "touches": "kodelyth_ecc.exchanges",
    "first_differing_turn": "kodelyth_ecc.exchanges",
    "Arm": "kodelyth_ecc.experiment",
    "Settings": "kodelyth_ecc.experiment",
    "parse_arm": "kodelyth_ecc.experiment",
    "create_experiment": "kodelyth_ecc.experiment",
    "plan_experiment": "kodelyth_ecc.experiment",
    "new_experiment": "kodelyth_ecc.experiment",
    "load_experiment": "kodelyth_ecc.experiment",
    "read_experiment": "kodelyth_ecc.experiment",
    "run_experiment": "kodelyth_ecc.experiment",
    "LocalScheduler": "kodelyth_ecc.scheduler",
    "RunRequest": "kodelyth_ecc.scheduler",
    "RunOutcome": "kodelyth_ecc.scheduler",
    "run_verify": "kodelyth_ecc.runner",
    "compare_arms": "kodelyth_ecc.compare",
    "experiment_arms": "kodelyth_ecc.compare",
    "runs_arms": "kodelyth_ecc.compare",
    "ManyComparison": "kodelyth_ecc.compare",
    "ManyOptions": "kodelyth_ecc.compare",
    "render_many_terminal": "kodelyth_ecc.compare.render_many",
    "render_many_markdown": "kodelyth_ecc.compare.render_many",
    "render_many_html": "kodelyth_ecc.compare.html_many",
}

__all__ = [
    "WORKER_FIELDS",
    "Arm",
    "Bundle",
    "BundleError",
    "BundleWorker",
    "Comparison",
    "Exchange",
    "ExecutionResult",
    "Finding",
    "KodelythError",
    "LocalScheduler",
    "ManyComparison",
    "ManyOptions",
    "OrchestrationPlan",
    "PathRoots",
    "PlanConfig",
    "RunOutcome",
    "RunRequest",
    "SandboxPolicy",
    "SanitizeReport",
    "SecretInNameError",
    "SecretMatch",
    "SessionDir",
    "Settings",
    "WorkerDir",
    "WorkerPlan",
    "WorkerSpec",
    "__version__",
    "build_orchestration_plan",
    "build_replay_plan_config",
    "build_swarm_plan",
    "choose_base",
    "collect_status",
    "compare_arms",
    "compare_bundles",
    "compare_runs",
    "create_experiment",
    "decode_bundle",
    "encode_bundle",
    "execute_plan",
    "experiment_arms",
    "export_bundle",
    "extract_task",
    "find_origin",
    "first_differing_turn",
    "first_free_name",
    "import_bundle",
    "import_bundle_file",
    "list_sessions",
    "load_experiment",
    "load_run",
    "machine_id",
    "materialize_plan",
    "new_experiment",
    "next_replay_name",
    "parse_arm",
    "parse_lines",
    "pick_agents",
    "plan_config_from_json",
    "plan_experiment",
    "read_bundle",
    "read_experiment",
    "redact_text",
    "render_html",
    "render_many_html",
    "render_many_markdown",
    "render_many_terminal",
    "render_markdown",
    "render_terminal",
    "run_experiment",
    "run_verify",
    "runs_arms",
    "sandbox_problem",
    "sanitize_bundle",
    "scan_bundle",
    "scan_text",
    "teardown",
    "tool_calls",
    "total_usage",
    "touches",
    "usage_of",
    "validate_bundle",
    "validate_exchanges",
    "validate_session_name",
    "wait_for_session",
    "write_bundle",
]

if TYPE_CHECKING:
    from typing import Any

    from kodelyth_ecc.agents import pick_agents
    from kodelyth_ecc.bundle import (
        Bundle,
        BundleError,
        BundleWorker,
        decode_bundle,
        encode_bundle,
        read_bundle,
        validate_bundle,
        write_bundle,
    )
    from kodelyth_ecc.compare import (
        Comparison,
        ManyComparison,
        ManyOptions,
        compare_arms,
        compare_bundles,
        compare_runs,
        experiment_arms,
        find_origin,
        load_run,
        runs_arms,
    )
    from kodelyth_ecc.compare.html_many import render_many_html
    from kodelyth_ecc.compare.render_many import render_many_markdown, render_many_terminal
    from kodelyth_ecc.compare_html import render_html
    from kodelyth_ecc.compare_render import render_markdown, render_terminal
    from kodelyth_ecc.coordination import materialize_plan
    from kodelyth_ecc.errors import KodelythError
    from kodelyth_ecc.exchanges import (
        Exchange,
        first_differing_turn,
        parse_lines,
        tool_calls,
        total_usage,
        touches,
        usage_of,
        validate_exchanges,
    )
    from kodelyth_ecc.execute import ExecutionResult, execute_plan
    from kodelyth_ecc.experiment import (
        Arm,
        Settings,
        create_experiment,
        load_experiment,
        new_experiment,
        parse_arm,
        plan_experiment,
        read_experiment,
        run_experiment,
    )
    from kodelyth_ecc.export import export_bundle
    from kodelyth_ecc.freename import first_free_name
    from kodelyth_ecc.importer import import_bundle, import_bundle_file
    from kodelyth_ecc.plan import (
        OrchestrationPlan,
        PlanConfig,
        WorkerPlan,
        WorkerSpec,
        build_orchestration_plan,
        build_swarm_plan,
        plan_config_from_json,
    )
    from kodelyth_ecc.provenance import machine_id
    from kodelyth_ecc.replay import (
        build_replay_plan_config,
        choose_base,
        extract_task,
        next_replay_name,
    )
    from kodelyth_ecc.runner import run_verify
    from kodelyth_ecc.sandbox import SandboxPolicy, sandbox_problem
    from kodelyth_ecc.sanitize import (
        Finding,
        PathRoots,
        SanitizeReport,
        SecretInNameError,
        SecretMatch,
        redact_text,
        sanitize_bundle,
        scan_bundle,
        scan_text,
    )
    from kodelyth_ecc.scheduler import LocalScheduler, RunOutcome, RunRequest
    from kodelyth_ecc.sessiondir import (
        WORKER_FIELDS,
        SessionDir,
        WorkerDir,
        validate_session_name,
    )
    from kodelyth_ecc.status import collect_status, list_sessions, wait_for_session
    from kodelyth_ecc.teardown import teardown


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'kodelyth_ecc' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


class _Package(type(sys)):  # type: ignore[misc]
    """Keeps API functions that share their module's name (``teardown``) reachable.

    Importing the submodule ``kodelyth_ecc.teardown`` (as ``execute_plan`` does)
    makes the import system bind it here as ``teardown``, over the function of that
    name; refusing that binding leaves ``kodelyth_ecc.teardown`` to ``__getattr__``,
    which returns the function. Submodules stay reachable through ``sys.modules``.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if name in _API and isinstance(value, type(sys)):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
