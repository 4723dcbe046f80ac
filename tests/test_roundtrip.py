"""export -> import -> export round trips.

A property test (in process) over random worker names and texts: whatever a bundle
holds comes back from import + export unchanged, and a second round is byte for
byte the first. And a real echo swarm: export, import elsewhere, export again,
with SOURCE_DATE_EPOCH set, gives the identical bundle."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kodelyth_ecc.bundle import (
    RESERVED_SLUGS,
    SCHEMA,
    Bundle,
    BundleWorker,
    encode_bundle,
    read_bundle,
    write_bundle,
)
from kodelyth_ecc.export import MAX_TRANSCRIPT_BYTES, export_bundle
from kodelyth_ecc.importer import import_bundle
from tests.conftest import Sandbox
from tests.swarm_helpers import started, wait_done
from tests.test_bundle import old_reader
from tests.test_schema import schema_errors

EPOCH = "1767225600"  # 2026-01-01T00:00:00Z

# One safe path component (sessiondir's rule), never the session's own file.
slugs = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,40}\Z").filter(
    lambda s: ".." not in s and s not in RESERVED_SLUGS and not s.endswith(".lock")
)
# Session names are tmux session names too: no '.'.
session_names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,40}\Z")

# JSON strings hold any Unicode scalar value: NUL and other controls are escaped, astral
# characters are UTF-8. Lone surrogates (category Cs) cannot be UTF-8, so no file holds one.
any_char = st.characters(codec="utf-8")
line_ends = st.sampled_from(["\n", "\r\n", "\r", ""])
HUGE = [
    "x" * 200_000,
    ("\U0001f600 wide \u00e9 " * 10_000) + "\r\n",
    "line\r\n" * 20_000 + "no final newline",
]


@st.composite
def texts(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["empty", "text", "text", "lines", "lines", "huge"]))
    if kind == "empty":
        return ""
    if kind == "huge":
        return draw(st.sampled_from(HUGE))
    if kind == "text":
        return draw(st.text(any_char, max_size=200))
    parts = draw(st.lists(st.tuples(st.text(any_char, max_size=30), line_ends), max_size=8))
    return "".join(a + b for a, b in parts)


# Transcripts are stored as the export left them: plain text, no control characters.
plain_texts = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"], include_characters="\n\t"), max_size=200
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(any_char, max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)

metas = st.fixed_dictionaries(
    {},
    optional={
        "task": st.text(any_char, max_size=80),
        "agents": st.lists(st.text(any_char, max_size=20), max_size=4),
        "harness": st.sampled_from(["claude", "codex", "echo"]),
        "base_ref": st.sampled_from(["HEAD", "main", "v1.0"]),
        "base_commit": st.text("0123456789abcdef", min_size=40, max_size=40),
        "launcher": st.text(any_char, max_size=40),
        "seed_paths": st.lists(st.text(any_char, min_size=1, max_size=20), max_size=3),
        "replay_of": st.fixed_dictionaries(
            {"session": slugs}, optional={"bundle_sha256": st.text("0123456789abcdef")}
        ),
        "variation": st.dictionaries(st.text(max_size=10), json_values, max_size=3),
        "x-future": json_values,
    },
)


@st.composite
def bundles(draw: st.DrawFn) -> Bundle:
    names = draw(st.lists(slugs, min_size=1, max_size=6, unique=True))
    workers = []
    for slug in names:
        with_changes = draw(st.booleans())
        workers.append(
            BundleWorker(
                slug=slug,
                task=draw(texts()),
                handoff=draw(texts()),
                status=draw(texts()),
                diff=draw(texts()) if with_changes else None,
                diffstat=draw(texts()) if with_changes else None,
                transcript=draw(st.none() | plain_texts),
            )
        )
    return Bundle(
        schema=SCHEMA,
        session=draw(session_names),
        exported_at="2026-01-01T00:00:00Z",
        exported_by="kodelyth-ecc@0.0.0",
        meta=draw(metas),
        workers=workers,
    )


@contextmanager
def source_date_epoch(value: str) -> Iterator[None]:
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = previous


def _strings(bundle: Bundle) -> dict[str, tuple[Any, ...]]:
    return {
        w.slug: (w.task, w.handoff, w.status, w.diff, w.diffstat, w.transcript)
        for w in bundle.workers
    }


def _import_then_export(bundle_path: Path, root: Path) -> Bundle:
    bundle = read_bundle(str(bundle_path))
    import_bundle(bundle, str(root / bundle.session), source=str(bundle_path))
    return export_bundle(bundle.session, str(root))


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(bundles())
@example(
    Bundle(
        schema=SCHEMA,
        session="v1_2",
        exported_at="x",
        exported_by="y",
        meta={"task": "t\r\n", "agents": ["a b"], "big": 2**70, "f": -0.0},
        workers=[
            BundleWorker(slug="b", task="nul\x00 \U0001f600", handoff="", status="no newline"),
            BundleWorker(
                slug="A",
                task="\r\n\r",
                handoff=HUGE[1],
                status="- State: failed\n",
                transcript="\n[kodelyth-ecc: truncated, 1 of 2 bytes omitted]\nx",
            ),
        ],
    )
)
def test_write_import_export_keeps_every_string(bundle: Bundle) -> None:
    with tempfile.TemporaryDirectory() as tmp, source_date_epoch(EPOCH):
        tmp_path = Path(tmp)
        first_path = tmp_path / "first.bundle.json"
        write_bundle(bundle, str(first_path))

        exported = _import_then_export(first_path, tmp_path / "one")
        assert exported.session == bundle.session
        assert exported.meta == bundle.meta
        assert [w.slug for w in exported.workers] == sorted(w.slug for w in bundle.workers)
        assert _strings(exported) == _strings(bundle)
        # Restored files are the bundle's strings, byte for byte.
        for worker in bundle.workers:
            worker_dir = tmp_path / "one" / bundle.session / worker.slug
            assert (worker_dir / "task.md").read_bytes() == worker.task.encode("utf-8")
            assert (worker_dir / "status.md").read_bytes() == worker.status.encode("utf-8")

        # The export is a valid bundle for us, the schema and an old reader...
        second = encode_bundle(exported)
        doc = json.loads(second)
        assert schema_errors(doc) == []
        seen = old_reader(second)
        assert {w["slug"]: w["handoff"] for w in seen["workers"]} == {
            w.slug: w.handoff for w in bundle.workers
        }
        # ...and a fixpoint: another round changes no byte.
        second_path = tmp_path / "second.bundle.json"
        write_bundle(exported, str(second_path))
        again = _import_then_export(second_path, tmp_path / "two")
        assert encode_bundle(again) == second


def test_a_capped_transcript_survives_the_round_trip(tmp_path: Path) -> None:
    """A transcript at the cap (marker included) comes back as it was, not re-capped."""
    from kodelyth_ecc.export import cap_text

    capped = cap_text("z" * (MAX_TRANSCRIPT_BYTES * 2), MAX_TRANSCRIPT_BYTES, keep="tail")
    bundle = Bundle(
        schema=SCHEMA, session="s", exported_at="x", exported_by="y", meta={},
        workers=[BundleWorker(slug="w", task="", handoff="", status="", transcript=capped)],
    )  # fmt: skip
    path = tmp_path / "b.json"
    write_bundle(bundle, str(path))
    exported = _import_then_export(path, tmp_path / "root")
    assert exported.workers[0].transcript == capped


# --- a real echo swarm -------------------------------------------------------------------

LAUNCHER = (
    "printf '\\033[1mworking\\033[0m on %s\\r\\n' {worker_slug_sh}; "
    "printf 'change\\n' >> README.md && "
    "printf 'new\\r\\nno final newline' > added-{worker_slug}.txt && "
    "printf 'handoff of %s\\r\\n\\U0001f600' {worker_slug_sh} >> {handoff_file_sh}"
)


def test_echo_session_export_import_export_is_byte_identical(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    started(sandbox, "rt", launcher=LAUNCHER, agents="alpha,Beta Two,gamma")
    wait_done(sandbox, "rt")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    first = sandbox.root / "first.bundle.json"
    result = sandbox.cli("session-export", "rt", "--out", str(first))
    assert result.code == 0, result
    data = first.read_bytes()
    doc = json.loads(data)
    assert doc["exported_at"] == "2026-01-01T00:00:00Z"
    assert [w["slug"] for w in doc["workers"]] == ["alpha", "beta-two", "gamma"]
    for worker in doc["workers"]:
        assert worker["state"] == "completed"
        assert "+change" in worker["diff"]
        assert f"added-{worker['slug']}.txt" in worker["diffstat"]
        assert f"working on {worker['slug']}\n" in worker["transcript"]
        assert worker["handoff"].endswith(f"handoff of {worker['slug']}\r\n\U0001f600")

    elsewhere = sandbox.root / "elsewhere"
    result = sandbox.cli("session-import", str(first), "--coord-root", str(elsewhere))
    assert result.code == 0, result
    second = sandbox.root / "second.bundle.json"
    result = sandbox.cli("session-export", "rt", "--coord-root", str(elsewhere),
                         "--out", str(second))  # fmt: skip
    assert result.code == 0, result
    assert second.read_bytes() == data

    # And once more, over the first import.
    result = sandbox.cli("session-import", str(second), "--coord-root", str(elsewhere),
                         "--overwrite")  # fmt: skip
    assert result.code == 0, result
    assert result.stdout.startswith("replaced rt (3 workers)")
    result = sandbox.cli("session-export", "rt", "--coord-root", str(elsewhere), "--out", "-")
    assert result.stdout.encode("utf-8") == data
