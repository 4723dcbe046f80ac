"""The facts of the experiment (harness, model, agents, base, task...) in both runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kodelyth_ecc.bundle import Bundle
from kodelyth_ecc.compare.results import VariationRow


def _models_of(bundle: Bundle) -> object:
    """meta.model, else the model(s) the workers' CLIs reported."""
    if bundle.meta.get("model"):
        return bundle.meta.get("model")
    models = sorted(
        {
            w.usage["model"]
            for w in bundle.workers
            if isinstance(w.usage, dict) and isinstance(w.usage.get("model"), str)
        }
    )
    return ", ".join(models) if models else None


def _meta_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={_meta_text(v)}" for k, v in sorted(value.items())) or None
    return str(value)


def _task_of(bundle: Bundle) -> str | None:
    task = bundle.meta.get("task")
    if isinstance(task, str) and task.strip():
        return task.strip()
    first = bundle.workers[0].task
    if not first.strip():
        return None
    from kodelyth_ecc.replay import extract_task

    return extract_task(first)[0]


# (field, how to read it, hidden in --blind: it would tell the runs apart)
_VARIATION: tuple[tuple[str, Callable[[Bundle], object], bool], ...] = (
    ("harness", lambda b: b.meta.get("harness"), True),
    ("model", _models_of, True),
    ("agents", lambda b: b.meta.get("agents") or [w.slug for w in b.workers], False),
    ("base_ref", lambda b: b.meta.get("base_ref"), True),  # a branch may name the model
    ("base_commit", lambda b: b.meta.get("base_commit"), False),
    ("task", _task_of, False),
    ("launcher", lambda b: b.meta.get("launcher"), True),
    ("seed_paths", lambda b: b.meta.get("seed_paths"), False),
    ("variation", lambda b: b.meta.get("variation"), True),
    ("replay_of", lambda b: (b.meta.get("replay_of") or {}).get("session"), True),
    ("session", lambda b: b.session, True),
    ("exported_by", lambda b: b.exported_by, True),
)


def variation(
    a: Bundle, b: Bundle, blind: bool, redact: Callable[[str], str]
) -> list[VariationRow]:
    rows = []
    for name, read, hide in _VARIATION:
        raw_a, raw_b = read(a), read(b)
        value_a, value_b = _meta_text(raw_a), _meta_text(raw_b)
        if value_a is None and value_b is None:
            continue
        same = value_a == value_b
        if name == "agents" and isinstance(raw_a, list) and isinstance(raw_b, list):
            same = sorted(map(str, raw_a)) == sorted(map(str, raw_b))  # order means nothing
        hidden = blind and hide
        rows.append(
            VariationRow(
                field=name,
                a=None if hidden or value_a is None else redact(value_a),
                b=None if hidden or value_b is None else redact(value_b),
                same=same,
                hidden=hidden,
            )
        )
    # What the experiment changed first.
    rows.sort(key=lambda row: row.same)
    return rows


# What names an arm of many runs (``compare A... --vs B...``): the fields that can vary.
LABEL_FIELDS = ("harness", "model", "agents", "base_ref", "launcher")
_LABEL_VALUE_CHARS = 80


def _label_value(name: str, bundle: Bundle) -> str | None:
    read = next(read for field, read, _ in _VARIATION if field == name)
    raw = read(bundle)
    if name == "agents" and isinstance(raw, list):
        raw = sorted(map(str, raw))  # order means nothing
    value = _meta_text(raw)
    if value is not None and len(value) > _LABEL_VALUE_CHARS:
        value = value[: _LABEL_VALUE_CHARS - 1] + "…"
    return value


def arm_labels(sides: Sequence[Sequence[Bundle]], fallback: Sequence[str]) -> list[str]:
    """A label for each side (a list of bundles), by what varied between them:
    ``harness=codex model=gpt-5``, from the fields of ``LABEL_FIELDS`` whose value is the
    same across a side's bundles, is known on every side and is not the same on all;
    ``fallback[i]`` for a side when there is none (or two sides would share a label)."""
    uniform: list[dict[str, str]] = []
    for bundles in sides:
        values: dict[str, str] = {}
        for name in LABEL_FIELDS:
            seen = {_label_value(name, b) for b in bundles}
            if len(seen) == 1 and None not in seen:
                values[name] = next(v for v in seen if v is not None)
        uniform.append(values)
    varied = [
        name
        for name in LABEL_FIELDS
        if all(name in values for values in uniform)
        and len({values[name] for values in uniform}) > 1
    ]
    labels = [
        " ".join(f"{name}={values[name]}" for name in varied) or fallback[index]
        for index, values in enumerate(uniform)
    ]
    if len(set(labels)) != len(labels):
        return list(fallback[: len(labels)])
    return labels
