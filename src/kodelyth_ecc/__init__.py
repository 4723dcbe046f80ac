"""kodelyth-ecc: run AI coding agents as a swarm, and replay their sessions.

The public API is re-exported here lazily so that ``import kodelyth_ecc`` (and
the CLI start-up path) does not pay for modules a command never uses.
"""

from __future__ import annotations

import importlib

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
    "execute_plan": "kodelyth_ecc.execute",
    "ExecutionResult": "kodelyth_ecc.execute",
    "collect_status": "kodelyth_ecc.status",
    "list_sessions": "kodelyth_ecc.status",
    "wait_for_session": "kodelyth_ecc.status",
    "teardown": "kodelyth_ecc.teardown",
    "pick_agents": "kodelyth_ecc.agents",
    "KodelythError": "kodelyth_ecc.errors",
}

__all__ = [
    "ExecutionResult",
    "KodelythError",
    "OrchestrationPlan",
    "PlanConfig",
    "WorkerPlan",
    "WorkerSpec",
    "__version__",
    "build_orchestration_plan",
    "build_swarm_plan",
    "collect_status",
    "execute_plan",
    "list_sessions",
    "materialize_plan",
    "pick_agents",
    "plan_config_from_json",
    "teardown",
    "wait_for_session",
]

if TYPE_CHECKING:
    from typing import Any

    from kodelyth_ecc.agents import pick_agents
    from kodelyth_ecc.coordination import materialize_plan
    from kodelyth_ecc.errors import KodelythError
    from kodelyth_ecc.execute import ExecutionResult, execute_plan
    from kodelyth_ecc.plan import (
        OrchestrationPlan,
        PlanConfig,
        WorkerPlan,
        WorkerSpec,
        build_orchestration_plan,
        build_swarm_plan,
        plan_config_from_json,
    )
    from kodelyth_ecc.status import collect_status, list_sessions, wait_for_session
    from kodelyth_ecc.teardown import teardown


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'kodelyth_ecc' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
