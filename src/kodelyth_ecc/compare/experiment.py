"""An experiment directory (``kodelyth.experiment/v1``) read for ``compare DIR``: its arms
and the bundles of its finished runs.

``DIR/experiment.json`` names the arms (in order) and the runs, each with its arm's label,
its repeat number and its bundle, a plain file name inside ``DIR``. The file is hostile
like any bundle: read without following a symlink, capped, type-checked field by field;
a bundle path that is not a plain file name (``/``, ``..``) or a bundle that is a symlink
is an error naming the run, and a run whose bundle is not there (yet) is skipped with a
note. Only the arm facts compare shows are kept: never the values of an arm's ``env``
(they may be secrets), only its variable names.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from kodelyth_ecc.bundle import decode_bundle
from kodelyth_ecc.bundleformat import DEFAULT_MAX_BUNDLE_BYTES
from kodelyth_ecc.compare.runs import Run
from kodelyth_ecc.experiment import (
    EXPERIMENT_FILE,
    MAX_EXPERIMENT_BYTES,
    MAX_LABEL_CHARS,
    ExperimentError,
    read_experiment,
)
from kodelyth_ecc.experiment import SCHEMA as EXPERIMENT_SCHEMA
from kodelyth_ecc.sessiondir import UnsafeFile, read_file

__all__ = [
    "EXPERIMENT_FILE",
    "EXPERIMENT_SCHEMA",
    "MAX_EXPERIMENT_BYTES",
    "Experiment",
    "ExperimentArm",
    "ExperimentError",
    "ExperimentRun",
    "Skipped",
    "is_experiment_dir",
    "load_experiment",
]

# The arm facts shown (from experiment.json's arm objects), in this order.
ARM_FACTS = ("harness", "model", "agents", "base_ref", "launcher_cmd", "env")


@dataclass(frozen=True)
class ExperimentRun:
    """One run of an experiment whose bundle was read."""

    name: str
    repeat: int | None
    state: str | None
    run: Run


@dataclass(frozen=True)
class Skipped:
    """A run of an experiment left out of the comparison, and why."""

    name: str
    arm: str
    state: str | None
    bundle: str
    reason: str


@dataclass(frozen=True)
class ExperimentArm:
    """An arm: its label, the facts it was given, and its runs read (by repeat)."""

    label: str
    facts: tuple[tuple[str, str], ...]
    runs: tuple[ExperimentRun, ...]


@dataclass(frozen=True)
class Experiment:
    directory: str
    arms: tuple[ExperimentArm, ...]
    skipped: tuple[Skipped, ...] = ()
    notes: tuple[str, ...] = field(default=())


def is_experiment_dir(path: str) -> bool:
    """A directory holding ``experiment.json`` (a file or a link: reading says which)."""
    return os.path.isdir(path) and os.path.lexists(os.path.join(path, EXPERIMENT_FILE))


def _text(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value if isinstance(v, (str, int, float)))
    return str(value)


def _arm_facts(arm: dict[str, object]) -> tuple[tuple[str, str], ...]:
    facts = []
    for key in ARM_FACTS:
        value = arm.get(key)
        if value is None or value in ("", [], {}):
            continue
        if key == "env":
            if not isinstance(value, dict):
                continue
            # The names only: an arm's environment may carry keys and tokens.
            value = sorted(str(name) for name in value)
        if isinstance(value, (str, int, float, list)) and not isinstance(value, bool):
            facts.append((key, _text(value)[:MAX_LABEL_CHARS]))
    return tuple(facts)


def _read_bundle(
    directory: str, dir_fd: int, name: str, run_name: str, max_bytes: int
) -> Run | None:
    """The run's bundle (None: not there); a link or a non-file is an error."""
    path = os.path.join(directory, name)
    try:
        size = os.lstat(path).st_size
    except OSError:
        size = 0  # absent (read_file says None) or unreadable (read_file says why)
    if size > max_bytes:
        raise ExperimentError(
            f"{path} (run {json.dumps(run_name)}) is {size:,} bytes, over the {max_bytes:,}-byte "
            "limit: raise it with --max-bundle-size if you trust this bundle"
        )
    if os.path.islink(path):
        raise ExperimentError(
            f"{path} (run {json.dumps(run_name)}) is a symlink: an experiment's bundles are "
            "never read through links; copy the bundle into the directory"
        )
    try:
        data = read_file(name, max_bytes, dir_fd=dir_fd, shown=path)
    except UnsafeFile as exc:
        raise ExperimentError(f"{exc.message} (run {json.dumps(run_name)})") from None
    if data is None:
        return None
    bundle = decode_bundle(data, path)
    return Run(bundle, path, "bundle", hashlib.sha256(data).hexdigest())


def load_experiment(directory: str, *, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> Experiment:
    """Read ``directory``'s ``experiment.json`` and the bundles of its runs (each at most
    ``max_bytes``, validated as import does). Arms keep the file's order, runs within an
    arm are sorted by repeat number; runs whose bundle is absent are in ``skipped``."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise ExperimentError(f"cannot open {directory}: {exc.strerror}") from None
    try:
        return _load(directory, dir_fd, max_bytes)
    finally:
        os.close(dir_fd)


def _load(directory: str, dir_fd: int, max_bytes: int) -> Experiment:
    # The document's shape is checked by its owner, beside the code that writes it.
    data = read_experiment(directory, dir_fd)
    arms = {str(arm["label"]): _arm_facts(arm) for arm in data["arms"]}
    runs: dict[str, list[ExperimentRun]] = {label: [] for label in arms}
    skipped: list[Skipped] = []
    notes: list[str] = []
    for item in data["runs"]:
        name, arm_label, bundle = item["run"], item["arm"], item["bundle"]
        state, repeat = item.get("state"), item.get("repeat")
        if arm_label not in arms:
            skipped.append(Skipped(name, arm_label, state, bundle, "its arm is not in arms"))
            continue
        run = _read_bundle(directory, dir_fd, bundle, name, max_bytes)
        if run is None:
            skipped.append(Skipped(name, arm_label, state, bundle, "no bundle (not finished)"))
            continue
        runs[arm_label].append(ExperimentRun(name, repeat, state, run))
    if skipped:
        notes.append(
            f"{len(skipped):,} run{'s' if len(skipped) != 1 else ''} of {directory} skipped "
            "(no bundle yet, or an unknown arm)"
        )
    return Experiment(
        directory=directory,
        arms=tuple(
            ExperimentArm(
                label,
                facts,
                tuple(
                    sorted(
                        runs[label],
                        key=lambda r: (r.repeat is None, r.repeat if r.repeat is not None else 0),
                    )
                ),
            )
            for label, facts in arms.items()
        ),
        skipped=tuple(skipped),
        notes=tuple(notes),
    )
