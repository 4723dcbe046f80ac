"""Experiments: the same session run N times per variation (an arm), and the file
that records them, ``experiment.json`` (``kodelyth.experiment/v1``).

An experiment directory holds ``experiment.json``, ``origin.bundle.json`` (the session
every run replays, frozen when the experiment was made), ``<run>.bundle.json`` for each
finished run and ``logs/<run>.log`` (what each run's replay printed). Its runs are
ordinary replays made by a scheduler (``scheduler.py``); ``experiment.json`` is
rewritten atomically at each start and finish, so an interrupted experiment resumes
from it without redoing a finished run.

The document::

    {"schema": "kodelyth.experiment/v1", "created_at", "updated_at",
     "state": "planned" | "running" | "interrupted" | "timed-out" | "done",
     "origin": {"target", "session", "bundle": "origin.bundle.json", "bundle_sha256"},
     "settings": {"repeat", "max_parallel", "verify", "verify_timeout_s",
                  "worker_timeout_s", "offline", "on_divergence", "record", "sandbox",
                  "sandbox_allow_hosts", "sandbox_allow_paths", "trust_recording"},
     "arms": [{"label", "harness", "model", "agents", "base_ref", "launcher_cmd",
               "env": {NAME: VALUE}}],
     "runs": [{"run": "arm1-rep1", "arm": <label>, "arm_index": 1, "repeat": 1,
               "bundle": "arm1-rep1.bundle.json", "log": "logs/arm1-rep1.log",
               "state": "pending" | "running" | "completed" | "failed" | "error"
                        | "interrupted",
               "session", "reason", "started_at", "finished_at", "duration_s",
               "attempts", "earlier_sessions": [...]}],
     "estimate": {...}, "provenance": {"kodelyth_ecc", "python", "platform", "machine",
                  "repo_head", "coordination_root"},
     "seal": "hmac-sha256:..."}

``seal`` (``experiment_seal``) is what lets ``--resume`` run the file's commands: an
HMAC with this user's recording key over the arms, settings and origin digest.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kodelyth_ecc.bundle import Bundle
    from kodelyth_ecc.scheduler import Scheduler

# The largest bundle read unless the settings say (the CLI's --max-bundle-size default).
DEFAULT_MAX_BUNDLE_BYTES = 256 * 1024**2

SCHEMA = "kodelyth.experiment/v1"
EXPERIMENT_FILE = "experiment.json"
ORIGIN_FILE = "origin.bundle.json"
LOG_DIR = "logs"
# Bounds: an experiment is a plan a person wrote, and its file is read back on resume
# and by compare (where it may be a stranger's).
MAX_ARMS = 26
MAX_REPEAT = 100
MAX_RUNS = 1000
MAX_EXPERIMENT_BYTES = 16 * 1024 * 1024
# Arm labels and run names are shown (escaped) and matched: bounded like names.
MAX_LABEL_CHARS = 500
ARM_KEYS = ("harness", "model", "agents", "base-ref", "launcher-cmd", "env")
RUN_STATES = ("pending", "running", "completed", "failed", "error", "interrupted")
# A run in one of these states is not made again on --resume.
FINISHED = frozenset({"completed", "failed"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Variables whose value is a credential by name: never written into experiment.json.
_SECRET_NAME = re.compile(r"(?i)(key|token|secret|passw|credential|auth)")
# What the runs must never be given by an arm: they decide where the run goes.
_RESERVED_ENV = frozenset(
    {
        "PATH", "HOME", "TMUX", "TMUX_TMPDIR", "PYTHONPATH", "PYTHONHOME", "BASH_ENV", "ENV",
        "LD_PRELOAD", "LD_LIBRARY_PATH", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
    }
)  # fmt: skip
# Nor git's own variables (GIT_DIR, GIT_WORK_TREE ...): they would move the runs' git.
_RESERVED_PREFIXES = ("GIT_",)


class Arm(Record):
    """One variation every repeat of it runs under; unset fields keep the origin's."""

    label: str
    harness: str | None = None
    model: str | None = None
    agents: str | None = None
    base_ref: str | None = None
    launcher_cmd: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "harness": self.harness,
            "model": self.model,
            "agents": self.agents.split(",") if self.agents else None,
            "base_ref": self.base_ref,
            "launcher_cmd": self.launcher_cmd,
            "env": dict(self.env),
        }

    def replay_args(self) -> list[str]:
        """The replay flags that make this arm's conditions."""
        args: list[str] = []
        for flag, value in (
            ("--harness", self.harness),
            ("--model", self.model),
            ("--agents", self.agents),
            ("--base-ref", self.base_ref),
            ("--launcher-cmd", self.launcher_cmd),
        ):
            if value is not None:
                args += [flag, value]
        return args


ORIGIN_ARM = Arm(label="origin")


def parse_arm(text: str) -> Arm:
    """``"harness=codex model=gpt-5 env=KODELYTH_ROUTER_TIER=fast"``: shell words of
    ``key=value`` (keys: harness, model, agents, base-ref, launcher-cmd, env; env takes
    NAME=VALUE and may repeat; a bare ``NAME=VALUE`` of an upper-case name is an env
    too). The label is the text, normalised."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"arm {text[:60]!r}: {exc} (quote values with spaces)") from None
    if not words:
        raise UsageError("arm: empty: give key=value pairs, e.g. 'harness=codex model=gpt-5'")
    fields: dict[str, str] = {}
    env: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise UsageError(f"arm {text[:60]!r}: {word[:40]!r} is not key=value")
        if key == "env" or (key.isupper() and _ENV_NAME.fullmatch(key)):
            name, value = value.partition("=")[::2] if key == "env" else (key, value)
            env[_check_env(name, value, text)] = value
            continue
        if key not in ARM_KEYS:
            raise UsageError(
                f"arm {text[:60]!r}: unknown key {key[:40]!r} (keys: {', '.join(ARM_KEYS)})"
            )
        if key in fields:
            raise UsageError(f"arm {text[:60]!r}: {key} is given twice")
        if not value:
            raise UsageError(f"arm {text[:60]!r}: {key} has no value")
        _check_value(key, value, text)
        fields[key] = value
    if "harness" in fields and "launcher-cmd" in fields:
        raise UsageError(f"arm {text[:60]!r}: harness and launcher-cmd are exclusive")
    label = " ".join(shlex.quote(w) if " " in w else w for w in words)
    return Arm(
        label=label,
        harness=fields.get("harness"),
        model=fields.get("model"),
        agents=fields.get("agents"),
        base_ref=fields.get("base-ref"),
        launcher_cmd=fields.get("launcher-cmd"),
        env=tuple(sorted(env.items())),
    )


def _check_value(key: str, value: str, text: str) -> None:
    """An arm's value goes into experiment.json and a replay's command line: printable
    UTF-8, and never a credential (a key inside a launcher command included)."""
    from kodelyth_ecc.sanitize import scan_text

    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"arm {key}: not UTF-8 text") from None
    if scan_text(value):
        raise UsageError(
            f"arm {key}: it holds what looks like a credential: export it in your "
            "environment instead (the runs inherit it)"
        )


def _check_env(name: str, value: str, text: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise UsageError(f"arm {text[:60]!r}: env takes NAME=VALUE, got {name[:40]!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"arm env {name}: not UTF-8 text") from None
    if name in _RESERVED_ENV or name.startswith(_RESERVED_PREFIXES):
        raise UsageError(f"arm {text[:60]!r}: {name} cannot be set by an arm")
    from kodelyth_ecc.sanitize import scan_text

    if _SECRET_NAME.search(name) or scan_text(value):
        # experiment.json keeps the arms (resume needs them) and a command line is
        # visible to every user of the machine: a key goes in through the environment.
        raise UsageError(
            f"arm {text[:60]!r}: {name} looks like a credential: export it in your "
            "environment instead (the runs inherit it)"
        )
    return name


def arm_from_json(data: object, where: str) -> Arm:
    """An arm as ``experiment.json`` keeps it (read back on resume; checked again)."""
    if not isinstance(data, dict) or not isinstance(data.get("label"), str):
        raise _bad(where, "an arm must be an object with a label")
    fields: dict[str, str | None] = {}
    for key in ("harness", "model", "base_ref", "launcher_cmd"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise _bad(where, f"arm {key} must be a string")
        fields[key] = value
    agents = data.get("agents")
    if agents is not None and (
        not isinstance(agents, list) or not all(isinstance(a, str) for a in agents)
    ):
        raise _bad(where, "arm agents must be a list of names")
    env = data.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise _bad(where, "arm env must map names to strings")
    for name, value in env.items():
        _check_env(name, value, data["label"])
    return Arm(
        label=data["label"],
        harness=fields["harness"],
        model=fields["model"],
        agents=",".join(agents) if agents else None,
        base_ref=fields["base_ref"],
        launcher_cmd=fields["launcher_cmd"],
        env=tuple(sorted(env.items())),
    )


class Settings(Record):
    """What every run of the experiment shares (the replay flags besides the arm's)."""

    repeat: int = 1
    max_parallel: int = 8
    verify: str | None = None
    verify_timeout: float | None = None
    worker_timeout: float | None = None
    offline: bool = False
    on_divergence: str | None = None
    record: bool = True
    # None: the replay's own default (on for a stranger's bundle).
    sandbox: bool | None = None
    sandbox_allow_hosts: tuple[str, ...] = ()
    sandbox_allow_paths: tuple[str, ...] = ()
    trust_recording: bool = False
    max_bundle_size: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "repeat": self.repeat,
            "max_parallel": self.max_parallel,
            "verify": self.verify,
            "verify_timeout_s": self.verify_timeout,
            "worker_timeout_s": self.worker_timeout,
            "offline": self.offline,
            "on_divergence": self.on_divergence,
            "record": self.record,
            "sandbox": self.sandbox,
            "sandbox_allow_hosts": list(self.sandbox_allow_hosts),
            "sandbox_allow_paths": list(self.sandbox_allow_paths),
            "trust_recording": self.trust_recording,
            "max_bundle_size": self.max_bundle_size,
        }

    def replay_args(self) -> list[str]:
        args: list[str] = []
        if self.verify is not None:
            args += ["--verify", self.verify]
        if self.verify_timeout is not None:
            args += ["--verify-timeout", f"{self.verify_timeout:g}"]
        if self.worker_timeout is not None:
            args += ["--worker-timeout", f"{self.worker_timeout:g}"]
        if self.offline:
            args.append("--offline")
        if self.on_divergence is not None:
            args += ["--on-divergence", self.on_divergence]
        if not self.record:
            args.append("--no-record")
        if self.sandbox is not None:
            args.append("--sandbox" if self.sandbox else "--no-sandbox")
        for host in self.sandbox_allow_hosts:
            args += ["--sandbox-allow-host", host]
        for path in self.sandbox_allow_paths:
            args += ["--sandbox-allow-path", path]
        if self.trust_recording:
            args.append("--trust-recording")
        if self.max_bundle_size is not None:
            args += ["--max-bundle-size", str(self.max_bundle_size)]
        return args


def settings_from_json(data: object, where: str) -> Settings:
    if not isinstance(data, dict):
        raise _bad(where, "settings must be an object")

    def number(key: str) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise _bad(where, f"settings.{key} must be a positive number")
        return float(value)

    def strings(key: str) -> tuple[str, ...]:
        value = data.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad(where, f"settings.{key} must be a list of strings")
        return tuple(value)

    repeat, parallel = data.get("repeat"), data.get("max_parallel")
    if not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
        raise _bad(where, f"settings.repeat must be 1-{MAX_REPEAT}")
    if not isinstance(parallel, int) or parallel < 1:
        raise _bad(where, "settings.max_parallel must be a positive integer")
    verify, divergence = data.get("verify"), data.get("on_divergence")
    if verify is not None and not isinstance(verify, str):
        raise _bad(where, "settings.verify must be a string")
    if divergence not in (None, "stop", "continue", "live"):
        raise _bad(where, "settings.on_divergence must be stop, continue or live")
    size = data.get("max_bundle_size")
    sandbox = data.get("sandbox")
    return Settings(
        repeat=repeat,
        max_parallel=parallel,
        verify=verify,
        verify_timeout=number("verify_timeout_s"),
        worker_timeout=number("worker_timeout_s"),
        offline=data.get("offline") is True,
        on_divergence=divergence,
        record=data.get("record") is not False,
        sandbox=sandbox if isinstance(sandbox, bool) else None,
        sandbox_allow_hosts=strings("sandbox_allow_hosts"),
        sandbox_allow_paths=strings("sandbox_allow_paths"),
        trust_recording=data.get("trust_recording") is True,
        max_bundle_size=size if isinstance(size, int) and size > 0 else None,
    )


def run_name(arm_index: int, repeat: int) -> str:
    """``arm1-rep1``: 1-based, the name of the run's bundle and log."""
    return f"arm{arm_index}-rep{repeat}"


def plan_runs(arms: Sequence[Arm], repeat: int) -> list[dict[str, Any]]:
    """Every run, pending: arms x repeats, repeats interleaved across the arms (the
    first repeat of every arm, then the second ...), so that an experiment stopped
    half-way has runs of each arm, and any drift over time falls on all arms alike."""
    if not arms:
        raise UsageError("an experiment needs at least one arm")
    if len(arms) > MAX_ARMS:
        raise UsageError(f"at most {MAX_ARMS} arms")
    if len({a.label for a in arms}) != len(arms):
        raise UsageError("two arms are the same: give each arm other conditions")
    if not 1 <= repeat <= MAX_REPEAT:
        raise UsageError(f"repeat must be 1-{MAX_REPEAT}")
    if len(arms) * repeat > MAX_RUNS:
        raise UsageError(f"arms x repeat is {len(arms) * repeat}: at most {MAX_RUNS} runs")
    runs = []
    for rep in range(1, repeat + 1):
        for index, arm in enumerate(arms, 1):
            name = run_name(index, rep)
            runs.append(
                {
                    "run": name,
                    "arm": arm.label,
                    "arm_index": index,
                    "repeat": rep,
                    "bundle": f"{name}.bundle.json",
                    "log": f"{LOG_DIR}/{name}.log",
                    "state": "pending",
                    "session": None,
                    "reason": None,
                    "started_at": None,
                    "finished_at": None,
                    "duration_s": None,
                    "attempts": 0,
                    "earlier_sessions": [],
                }
            )
    return runs


# --- the estimate -----------------------------------------------------------------------


class Estimate(Record):
    """Tokens and cost the experiment may use, from the origin's recorded usage (each
    worker's as many times as it runs). ``None``: the origin recorded none."""

    runs: int
    workers: int
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    note: str

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "workers": self.workers,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "note": self.note,
        }


def estimate(
    origin_usage: Sequence[Mapping[str, Any] | None],
    worker_counts: Sequence[int],
    *,
    offline: bool,
) -> Estimate:
    """``origin_usage``: each origin worker's ``usage``; ``worker_counts``: how many
    workers each run has. A run's estimate is the origin's per-worker mean times its
    workers."""
    runs, workers = len(worker_counts), sum(worker_counts)
    if offline:
        return Estimate(runs, workers, 0, 0, 0.0, "offline: answered from the recording")

    def mean(key: str) -> float | None:
        values = [
            u[key]
            for u in origin_usage
            if isinstance(u, Mapping)
            and isinstance(u.get(key), (int, float))
            and not isinstance(u.get(key), bool)
        ]
        return sum(values) / len(values) if values else None

    tokens_in, tokens_out, cost = mean("input_tokens"), mean("output_tokens"), mean("cost_usd")
    if tokens_in is None and tokens_out is None and cost is None:
        return Estimate(runs, workers, None, None, None, "the origin recorded no usage")
    return Estimate(
        runs,
        workers,
        None if tokens_in is None else round(tokens_in * workers),
        None if tokens_out is None else round(tokens_out * workers),
        None if cost is None else round(cost * workers, 4),
        "the origin's usage per worker x workers; another model or harness may differ",
    )


# --- the file ---------------------------------------------------------------------------


def _bad(where: str, what: str) -> KodelythError:
    return KodelythError(f"{where}: {what}: not an experiment file this version can use")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_experiment(directory: str, doc: dict[str, Any]) -> None:
    """``experiment.json``, atomically (a reader sees the old document or the new)."""
    from kodelyth_ecc.fsutil import atomic_write_text

    doc["updated_at"] = _now()
    atomic_write_text(
        os.path.join(directory, EXPERIMENT_FILE),
        json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
    )


class ExperimentError(KodelythError):
    """An experiment directory that cannot be read as one (one line: what and where)."""


class _Reader:
    """Field-by-field checks of ``experiment.json`` with errors that say where."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, what: str) -> ExperimentError:
        return ExperimentError(f"{self.where}: {what}: fix or regenerate experiment.json")

    def string(self, obj: dict[str, Any], key: str, at: str, *, required: bool) -> str | None:
        value = obj.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            got = "missing" if value is None else f"a {type(value).__name__}"
            raise self.fail(f"{at}.{key} must be a non-empty string, got {got}")
        if len(value) > MAX_LABEL_CHARS:
            raise self.fail(
                f"{at}.{key} is {len(value):,} characters, over the limit of {MAX_LABEL_CHARS}"
            )
        return value

    def objects(self, data: dict[str, Any], key: str, limit: int) -> list[dict[str, Any]]:
        items = data.get(key)
        if not isinstance(items, list):
            raise self.fail(f"{key} must be a list, got {type(items).__name__}")
        if len(items) > limit:
            raise self.fail(f"{key} has {len(items):,} entries, over the limit of {limit:,}")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(f"{key}[{index}] must be an object, got {type(item).__name__}")
        return items

    def whole(self, obj: dict[str, Any], key: str, at: str) -> None:
        value = obj.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9
        ):
            raise self.fail(f"{at}.{key} must be a whole number, got {json.dumps(value)[:40]}")


def plain_name(name: str) -> bool:
    """A file name inside the experiment dir: no separator, no ``..``, no NUL."""
    return not (
        "/" in name or "\\" in name or "\0" in name or name in (".", "..") or name != name.strip()
    )


def read_experiment(directory: str, dir_fd: int | None = None) -> dict[str, Any]:
    """``DIR/experiment.json``, checked before anything reads it further: its size
    capped before it is read, never through a symlink, its shape field by field (labels,
    run names and bundles unique; a run's bundle a plain file name inside DIR). The
    directory may be a stranger's. A run may name an arm the file lacks: compare skips
    it, resume refuses it."""
    from kodelyth_ecc.sessiondir import UnsafeFile, read_file

    where = os.path.join(directory, EXPERIMENT_FILE)
    try:
        data = read_file(EXPERIMENT_FILE if dir_fd is not None else where,
                         MAX_EXPERIMENT_BYTES, dir_fd=dir_fd, shown=where)  # fmt: skip
    except UnsafeFile as exc:
        if os.path.islink(where):
            raise ExperimentError(
                f"{where} is a symlink: an experiment's files are never read through links"
            ) from None
        raise ExperimentError(exc.message) from None
    if data is None:
        raise ExperimentError(f"{where} does not exist: is {directory} an experiment directory?")
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ExperimentError(f"{where} is not UTF-8: regenerate experiment.json") from None
    except json.JSONDecodeError as exc:
        raise ExperimentError(
            f"{where} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise ExperimentError(f"{where} nests too deeply to be an experiment") from None
    try:
        # JSON may spell a lone surrogate (\ud800), which no output can encode.
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ExperimentError(
            f"{where} holds text that is not Unicode (a lone surrogate)"
        ) from None
    reader = _Reader(where)
    if not isinstance(doc, dict):
        raise reader.fail(f"it must hold a JSON object, got {type(doc).__name__}")
    schema = doc.get("schema")
    if schema != SCHEMA:
        shown = json.dumps(schema)[:80] if isinstance(schema, str) else type(schema).__name__
        raise ExperimentError(
            f"{where}: schema is {shown}, not {SCHEMA!r}: not an experiment this version reads"
        )
    labels: set[str] = set()
    for index, arm in enumerate(reader.objects(doc, "arms", MAX_ARMS)):
        label = reader.string(arm, "label", f"arms[{index}]", required=True)
        if label in labels:
            raise reader.fail(f"arms[{index}].label {json.dumps(label)} is given twice")
        labels.add(str(label))
    names: set[str] = set()
    bundles: set[str] = set()
    for index, run in enumerate(reader.objects(doc, "runs", MAX_RUNS)):
        at = f"runs[{index}]"
        name = reader.string(run, "run", at, required=True)
        reader.string(run, "arm", at, required=True)
        bundle = str(reader.string(run, "bundle", at, required=True))
        reader.string(run, "state", at, required=False)
        reader.string(run, "session", at, required=False)
        for key in ("repeat", "arm_index"):
            reader.whole(run, key, at)
        if name in names:
            raise reader.fail(f"{at}.run {json.dumps(name)} is given twice")
        names.add(str(name))
        if not plain_name(bundle):
            raise reader.fail(
                f"{at}.bundle {json.dumps(bundle)} is not a plain file name inside the "
                "directory (no '/', no '..')"
            )
        if bundle in bundles:
            raise reader.fail(f"{at}.bundle {json.dumps(bundle)} is the bundle of another run too")
        bundles.add(bundle)
    return doc


def _check_resumable(doc: dict[str, Any], where: str) -> None:
    """What resume needs beyond the shape: every run of a known arm, in a known state,
    with its numbers."""
    reader = _Reader(where)
    labels = {a["label"] for a in doc["arms"]}
    for index, run in enumerate(doc["runs"]):
        at = f"runs[{index}]"
        if run["arm"] not in labels:
            raise reader.fail(f"{at}.arm names no arm of the file")
        if run.get("state") not in RUN_STATES:
            raise reader.fail(f"{at}.state must be one of {', '.join(RUN_STATES)}")
        for key in ("repeat", "arm_index"):
            if run.get(key) is None:
                raise reader.fail(f"{at}.{key} must be a whole number")
        log = run.get("log")
        if (
            not isinstance(log, str)
            or not log.startswith(f"{LOG_DIR}/")
            or not plain_name(log[len(LOG_DIR) + 1 :])
        ):
            raise reader.fail(f"{at}.log must be {LOG_DIR}/<file name>")


# --- making an experiment ---------------------------------------------------------------


class Experiment(Record):
    """An experiment ready to run (or shown by a dry-run)."""

    directory: str
    doc: dict[str, Any]
    arms: tuple[Arm, ...]
    settings: Settings
    target: str
    repo_root: str
    coordination_root: str
    # The bundle replayed (from plan_experiment; None when loaded from its file).
    origin: Bundle | None = None

    @property
    def runs(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self.doc["runs"]
        return runs


def new_experiment(
    *,
    directory: str,
    target: str,
    origin_session: str,
    origin_sha256: str,
    origin_usage: Sequence[Mapping[str, Any] | None],
    worker_counts: Mapping[str, int],
    arms: Sequence[Arm],
    settings: Settings,
    repo_root: str,
    coordination_root: str,
) -> Experiment:
    """The experiment's document, all runs pending (nothing is written)."""
    runs = plan_runs(arms, settings.repeat)
    counts = [worker_counts[r["arm"]] for r in runs]
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "created_at": _now(),
        "updated_at": None,
        "state": "planned",
        "origin": {
            "target": target,
            "session": origin_session,
            "bundle": ORIGIN_FILE,
            "bundle_sha256": origin_sha256,
        },
        "settings": settings.to_json(),
        "arms": [a.to_json() for a in arms],
        "worker_counts": {a.label: worker_counts[a.label] for a in arms},
        "runs": runs,
        "estimate": estimate(origin_usage, counts, offline=settings.offline).to_json(),
        "provenance": provenance(repo_root, coordination_root),
    }
    doc["seal"] = experiment_seal(doc)
    return Experiment(directory, doc, tuple(arms), settings, target, repo_root, coordination_root)


def provenance(repo_root: str, coordination_root: str) -> dict[str, Any]:
    """What the experiment ran with: this tool's version, Python, the platform, the
    machine (a salted hash, never a host name) and the repository's HEAD."""
    import platform

    from kodelyth_ecc import __version__, gitrepo
    from kodelyth_ecc.provenance import machine_id

    try:
        head: str | None = gitrepo.resolve_commit(repo_root, "HEAD")
    except (KodelythError, OSError):
        head = None
    return {
        "kodelyth_ecc": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "machine": machine_id(),
        "repo_head": head,
        "coordination_root": coordination_root,
    }


def experiment_seal(doc: Mapping[str, Any]) -> str:
    """An HMAC, with this user's recording key (``exchanges.machine_key``), over what
    resuming would run: the arms (their launchers), the settings (the --verify check),
    the runs' worker counts and the origin's digest. Only an experiment made here, by
    this user, resumes: a stranger's ``experiment.json`` is a list of commands."""
    import hashlib
    import hmac

    from kodelyth_ecc.exchanges import SEAL_PREFIX, machine_key

    origin = doc.get("origin")
    covered = {
        "arms": doc.get("arms"),
        "settings": doc.get("settings"),
        "worker_counts": doc.get("worker_counts"),
        "origin": origin.get("bundle_sha256") if isinstance(origin, dict) else None,
    }
    message = SCHEMA.encode() + b"\0" + json.dumps(covered, sort_keys=True).encode()
    return SEAL_PREFIX + hmac.new(machine_key(), message, hashlib.sha256).hexdigest()


def load_experiment(directory: str, repo_root: str) -> Experiment:
    """An experiment made earlier, to resume: its arms and settings as it recorded,
    if its seal says it was made here (and its origin is the one it froze)."""
    import hashlib
    import hmac

    if os.path.islink(directory):
        raise ExperimentError(f"{directory} is a symlink: give the experiment directory itself")
    doc = read_experiment(directory)
    where = os.path.join(directory, EXPERIMENT_FILE)
    seal = doc.get("seal")
    if not isinstance(seal, str) or not hmac.compare_digest(seal, experiment_seal(doc)):
        raise ExperimentError(
            f"{where} was not made here by this user, or was changed since (its seal does "
            "not match): resuming would run its arms' commands; start a new experiment from "
            f"its {ORIGIN_FILE} instead"
        )
    _check_resumable(doc, where)
    arms = tuple(arm_from_json(a, where) for a in doc["arms"])
    settings = settings_from_json(doc.get("settings"), where)
    origin = doc.get("origin")
    if not isinstance(origin, dict) or not isinstance(origin.get("target"), str):
        raise _bad(where, "origin.target must be a string")
    from kodelyth_ecc.sessiondir import read_file

    limit = settings.max_bundle_size or DEFAULT_MAX_BUNDLE_BYTES
    frozen = read_file(os.path.join(directory, ORIGIN_FILE), limit)
    if frozen is None or hashlib.sha256(frozen).hexdigest() != origin.get("bundle_sha256"):
        raise ExperimentError(
            f"{os.path.join(directory, ORIGIN_FILE)} is missing or is not the origin the "
            "experiment froze: its runs would replay another session"
        )
    provenance_ = doc.get("provenance")
    coord = provenance_.get("coordination_root") if isinstance(provenance_, dict) else None
    if not isinstance(coord, str) or not os.path.isabs(coord):
        raise _bad(where, "provenance.coordination_root must be an absolute path")
    return Experiment(directory, doc, arms, settings, origin["target"], repo_root, coord)


# --- planning and creating one ----------------------------------------------------------


def default_directory(coordination_root: str, origin: str) -> str:
    """``<coord-root>/<origin>.experiment-N``: beside the sessions, never one of them
    (a dot is not in a session name)."""
    n = 1
    while os.path.lexists(os.path.join(coordination_root, f"{origin}.experiment-{n}")):
        n += 1
    return os.path.join(coordination_root, f"{origin}.experiment-{n}")


def plan_experiment(
    target: str,
    arms: Sequence[Arm],
    settings: Settings,
    *,
    repo_root: str,
    coordination_root: str,
    directory: str | None = None,
) -> Experiment:
    """The experiment that replays ``target`` (a bundle file, or a session exported in
    memory) under each arm, every arm planned as its replay would be (a bad harness,
    agents list or base fails here, once, not in every run). Nothing is written."""
    from kodelyth_ecc.replay import load_replay_source

    if directory is not None:
        _check_directory(directory, coordination_root)
    limit = settings.max_bundle_size or DEFAULT_MAX_BUNDLE_BYTES
    bundle, digest = load_replay_source(target, coordination_root, max_bytes=limit)
    counts = check_arms(bundle, arms, settings, repo_root, coordination_root)
    experiment = new_experiment(
        directory=directory or default_directory(coordination_root, bundle.session),
        target=os.path.abspath(target) if os.path.isfile(target) else target,
        origin_session=bundle.session,
        origin_sha256=digest,
        origin_usage=[w.usage for w in bundle.workers],
        worker_counts=counts,
        arms=arms,
        settings=settings,
        repo_root=repo_root,
        coordination_root=coordination_root,
    )
    return experiment._replace(origin=bundle)


def _check_directory(directory: str, coordination_root: str) -> None:
    """Not a session's directory, nor inside one: `status` would list it as a session,
    and `teardown --purge` or a `swarm --replace` of that name would remove it."""
    from kodelyth_ecc.sessiondir import is_session_name

    rel = os.path.relpath(os.path.abspath(directory), os.path.abspath(coordination_root))
    first = rel.split(os.sep, 1)[0]
    if rel != "." and first != ".." and is_session_name(first):
        raise UsageError(
            f"directory {directory} is (inside) what the coordination root takes for a "
            f"session, {first!r}: choose another (the default is "
            "<coordination root>/<origin>.experiment-N)"
        )


def check_arms(
    bundle: Bundle,
    arms: Sequence[Arm],
    settings: Settings,
    repo_root: str,
    coordination_root: str,
) -> dict[str, int]:
    """Each arm planned as its replay would be; how many workers each arm's runs have.
    Errors name the arm."""
    from kodelyth_ecc.plan import build_orchestration_plan
    from kodelyth_ecc.replay import (
        build_replay_plan_config,
        choose_base,
        replay_agents,
        resolve_base,
    )
    from kodelyth_ecc.termsafe import one_line

    counts = {}
    for arm in arms:
        where = f"arm {one_line(arm.label, 60)!r}: "
        try:
            base = choose_base(bundle, repo_root, arm.base_ref)
            resolve_base(bundle, repo_root, base)
            config = build_replay_plan_config(
                bundle,
                repo_root=repo_root,
                coordination_root=coordination_root,
                harness=arm.harness,
                agents=arm.agents,
                base_ref=arm.base_ref,
                session_name="experiment-check",
                base=base,
                model=arm.model,
                launcher_command=arm.launcher_cmd,
                worker_timeout=settings.worker_timeout,
                record=settings.record,
                offline=settings.offline,
                on_divergence=settings.on_divergence or "stop",
                verify=settings.verify,
                verify_timeout=settings.verify_timeout,
            )
            plan = build_orchestration_plan(config)
        except KodelythError as exc:
            raise type(exc)(where + exc.message) from None
        if settings.offline and not plan.proxied:
            raise UsageError(where + f"an offline replay needs the proxy: {plan.proxy_note}")
        counts[arm.label] = len(replay_agents(bundle, arm.agents))
    return counts


def create_experiment(experiment: Experiment) -> None:
    """The directory (it must not exist), the frozen origin and ``experiment.json``;
    all of it removed again if any of it cannot be written."""
    import hashlib
    import shutil

    from kodelyth_ecc.bundle import encode_bundle
    from kodelyth_ecc.fsutil import atomic_write_bytes, missing_dirs, remove_empty_dirs

    directory, target = experiment.directory, experiment.target
    made = missing_dirs(directory)
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    os.mkdir(directory)
    try:
        if os.path.isfile(target):
            # The file's own bytes: each run's replay_of.bundle_sha256 is the origin's.
            limit = experiment.settings.max_bundle_size or DEFAULT_MAX_BUNDLE_BYTES
            with open(target, "rb") as fh:
                data = fh.read(limit + 1)
            if hashlib.sha256(data).hexdigest() != experiment.doc["origin"]["bundle_sha256"]:
                raise KodelythError(f"{target} changed while it was read: run it again")
        elif experiment.origin is not None:
            data = encode_bundle(experiment.origin)
        else:
            raise KodelythError("create_experiment needs an experiment from plan_experiment")
        atomic_write_bytes(os.path.join(directory, ORIGIN_FILE), data)
        write_experiment(directory, experiment.doc)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        remove_empty_dirs(made)  # and the parents it made, if still empty
        raise


# --- running it -------------------------------------------------------------------------


class Progress(Record):
    """Where the experiment is, for a progress line: counts of runs by state."""

    total: int
    done: int
    running: int
    queued: int
    failed: int
    elapsed_s: float


def to_run(experiment: Experiment) -> list[dict[str, Any]]:
    """The runs ``run_experiment`` still has to make: all but the finished ones whose
    bundle is there."""
    todo = []
    for run in experiment.runs:
        bundle = os.path.join(experiment.directory, run["bundle"])
        if run["state"] in FINISHED and os.path.isfile(bundle) and not os.path.islink(bundle):
            continue
        todo.append(run)
    return todo


def run_experiment(
    experiment: Experiment,
    scheduler: Scheduler,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    deadline: float | None = None,
) -> Experiment:
    """Make every run not yet made; ``experiment.json`` is kept true at each step. A run
    left ``running`` by an experiment that died (its session started) is waited for and
    exported, not made again; an ``interrupted`` or ``error`` one is made afresh under
    a new session name (the old session is listed in ``earlier_sessions``). Raises
    ``scheduler.Stopped`` (with the document saved) on Ctrl-C or the deadline."""
    import time

    from kodelyth_ecc.scheduler import RunRequest, Stopped, owned

    directory = experiment.directory
    os.makedirs(os.path.join(directory, LOG_DIR), exist_ok=True)
    doc = experiment.doc
    todo = to_run(experiment)
    by_name = {r["run"]: r for r in experiment.runs}
    arms = {a.label: a for a in experiment.arms}
    names: set[str] = set()
    requests = []
    for run in todo:
        arm = arms[run["arm"]]
        session = run.get("session")
        found = run.get("tag")
        tag: str = found if isinstance(found, str) else ""
        ours = isinstance(session, str) and owned(session, experiment.coordination_root, tag)
        started = run["state"] == "running" and ours
        if not started:
            if ours:
                run["earlier_sessions"] = [*run.get("earlier_sessions", []), session][-20:]
            # Named when it starts (``prepare``): a name is taken when it is used.
            session, tag = None, ""
            run["session"], run["tag"] = None, None
        else:
            names.add(str(session))
        run["state"], run["reason"] = "pending", None
        requests.append(
            RunRequest(
                run=run["run"],
                argv=tuple(_replay_argv(experiment, arm, session)) if session else (),
                session=session or "",
                coordination_root=experiment.coordination_root,
                workers=_workers(experiment, arm),
                log=os.path.join(directory, run["log"]),
                export=os.path.join(directory, run["bundle"]),
                env=arm.env,
                started=started,
                cwd=experiment.repo_root,
                tag=tag,
                meta={
                    "experiment": {
                        "arm": arm.label,
                        "arm_index": run["arm_index"],
                        "run": run["run"],
                        "repeat": run["repeat"],
                        "created_at": doc.get("created_at"),
                        # The arm's variables: names and values, as experiment.json
                        # keeps them (never a credential: parse_arm refuses those).
                        "env": dict(arm.env),
                    }
                },
            )
        )
    numbers = [1]

    def prepare(request: RunRequest) -> RunRequest:
        """The run's session named now, from the names free at this moment."""
        if request.session:
            return request
        run = by_name[request.run]
        arm = arms[run["arm"]]
        session = _free_session(experiment, arm, names, numbers[0])
        numbers[0] = _number(session) + 1
        names.add(session)
        # Recorded (on "started") before its replay starts: after a kill, resume knows
        # the session of that name is this run's by it, and nothing else is.
        tag = secrets.token_hex(16)
        run["session"], run["tag"] = session, tag
        argv = (*_replay_argv(experiment, arm, session), "--experiment-run", tag)
        return request._replace(session=session, argv=argv, tag=tag)

    doc["state"] = "running"
    write_experiment(directory, doc)
    start = time.monotonic()

    def progress() -> None:
        if on_progress is None:
            return
        states = [r["state"] for r in experiment.runs]
        on_progress(
            Progress(
                total=len(states),
                done=sum(s in FINISHED or s == "error" for s in states),
                running=states.count("running"),
                queued=states.count("pending"),
                failed=sum(s in ("failed", "error") for s in states),
                elapsed_s=time.monotonic() - start,
            )
        )

    def on_event(kind: str, request: RunRequest, outcome: Any) -> None:
        run = by_name[request.run]
        if kind == "started":
            run["state"] = "running"
            if not (request.started and run.get("started_at")):
                run["started_at"] = _now()
            if not request.started:
                run["attempts"] = int(run.get("attempts") or 0) + 1
        else:
            run["state"] = outcome.state
            run["reason"] = outcome.reason
            run["finished_at"] = _now()
            run["duration_s"] = (
                _seconds_since(run.get("started_at")) if request.started else outcome.duration_s
            )
            if on_run is not None:
                on_run(run)
        write_experiment(directory, doc)
        progress()

    progress()
    try:
        scheduler.run(requests, on_event, deadline=deadline, prepare=prepare)
    except Stopped as exc:
        doc["state"] = "timed-out" if exc.timed_out else "interrupted"
        write_experiment(directory, doc)
        raise
    doc["state"] = "done"
    write_experiment(directory, doc)
    return experiment


def _seconds_since(when: object) -> float | None:
    """Seconds from an ISO time this module wrote until now (a resumed run's duration
    counts from its first start)."""
    if not isinstance(when, str):
        return None
    try:
        then = datetime.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return round((now - then).total_seconds(), 3)


def _free_session(experiment: Experiment, arm: Arm, taken: set[str], start: int) -> str:
    """The next ``<origin>-replay-N`` from N = ``start`` on that is free here and not
    given to another run (the caller passes the last N given out, plus one: names are
    looked for once each, not from 1 again for every run)."""
    from kodelyth_ecc.naming import slugify
    from kodelyth_ecc.replay import next_replay_name

    origin = experiment.doc["origin"]["session"]
    slugs = [slugify(a) for a in arm.agents.split(",")] if arm.agents else []
    while True:
        name = next_replay_name(
            origin, experiment.coordination_root, experiment.repo_root, slugs=slugs, start=start
        )
        if name not in taken:
            return name
        start = _number(name) + 1


def _number(session: str) -> int:
    return int(session.rsplit("-", 1)[1])


def _workers(experiment: Experiment, arm: Arm) -> int:
    counts = experiment.doc.get("worker_counts") or {}
    count = counts.get(arm.label) if isinstance(counts, dict) else None
    return count if isinstance(count, int) and count > 0 else 1


def _replay_argv(experiment: Experiment, arm: Arm, session: str) -> list[str]:
    origin = os.path.join(experiment.directory, ORIGIN_FILE)
    return [
        "replay",
        origin,
        "--execute",
        "--session",
        session,
        "--coordination-root",
        experiment.coordination_root,
        *arm.replay_args(),
        *experiment.settings.replay_args(),
    ]
