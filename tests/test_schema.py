"""The published JSON Schema for bundle v1: a valid draft 2020-12 schema, shipped
in the wheel, matched by the reference bundles and by everything we write, and in
step with the reader (what one refuses, the other refuses)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kodelyth_ecc.bundle import (
    BundleError,
    BundleWorker,
    check_name,
    decode_bundle,
    encode_bundle,
)
from kodelyth_ecc.export import _META_KEYS
from kodelyth_ecc.sessiondir import WORKER_FIELDS
from tests.test_bundle import (
    MUTATIONS,
    REFERENCE_BUNDLES,
    SAFE_NAMES,
    UNSAFE_NAMES,
    _mutated,
    fixture_ids,
    full_bundle,
    minimal_doc,
)

SCHEMA_FILE = "session-bundle-v1.schema.json"
REPO = Path(__file__).resolve().parent.parent


def load_schema() -> dict[str, Any]:
    """The schema as the installed package ships it."""
    text = (resources.files("kodelyth_ecc") / "schemas" / SCHEMA_FILE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


_VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def schema_errors(doc: Any) -> list[str]:
    """Every way ``doc`` breaks the schema (empty when it conforms)."""
    return sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
        for e in _VALIDATOR.iter_errors(doc)
    )


def reader_accepts(doc: Any) -> bool:
    try:
        decode_bundle(json.dumps(doc).encode("utf-8"))
    except BundleError:
        return False
    return True


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"] == {
        "description": schema["properties"]["schema"]["description"],
        "const": "kodelyth.session-bundle/v1",
    }
    assert schema["required"] == [
        "schema", "session", "exported_at", "exported_by", "meta", "workers",
    ]  # fmt: skip
    assert schema["$defs"]["worker"]["required"] == ["slug", "task", "handoff", "status"]


def test_schema_in_the_source_tree_is_the_packaged_one() -> None:
    source = REPO / "src" / "kodelyth_ecc" / "schemas" / SCHEMA_FILE
    assert json.loads(source.read_text("utf-8")) == load_schema()


def test_schema_documents_every_optional_field_we_write() -> None:
    """The schema and the code cannot drift apart: a new field needs documenting."""
    schema = load_schema()
    worker_props = schema["$defs"]["worker"]["properties"]
    assert set(worker_props) == set(BundleWorker.__struct_fields__)
    # The schema follows sessiondir's table of worker fields: names, kinds, required.
    kinds = {"name": "string", "text": "string", "str": "string", "int": "integer",
             "float": "number", "object": "object", "exchanges": "array"}  # fmt: skip
    assert set(worker_props) == {f.name for f in WORKER_FIELDS}
    assert schema["$defs"]["worker"]["required"] == [f.name for f in WORKER_FIELDS if f.required]
    for field in WORKER_FIELDS:
        if field.kind == "name":  # a reference to the schema's safe-name rule
            continue
        declared = worker_props[field.name].get("type")
        types = declared if isinstance(declared, list) else [declared]
        assert kinds[field.kind] in types, field.name
    meta_props = set(schema["properties"]["meta"]["properties"])
    assert meta_props == set(_META_KEYS)
    for props in (
        schema["$defs"]["worker"]["properties"],
        schema["properties"]["meta"]["properties"],
    ):
        for name, prop in props.items():
            assert prop.get("description"), name
    # Nothing forbids fields a newer writer adds.
    assert "additionalProperties" not in json.dumps(schema)


def test_wheel_ships_the_schema(tmp_path: Path) -> None:
    """hatch packages src/kodelyth_ecc whole: the schema is package data in the wheel."""
    result = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = zf.read(f"kodelyth_ecc/schemas/{SCHEMA_FILE}")
    assert json.loads(shipped) == load_schema()


@pytest.mark.parametrize("path", REFERENCE_BUNDLES, ids=fixture_ids())
def test_reference_bundles_match_the_schema(path: Path) -> None:
    assert schema_errors(json.loads(path.read_bytes())) == []


def test_a_bundle_with_every_optional_field_matches_the_schema() -> None:
    doc = json.loads(encode_bundle(full_bundle()))
    assert doc["workers"][0]["transcript"] == "hello\n"
    assert schema_errors(doc) == []


def test_minimal_bundle_matches_and_both_accept_nulls_and_extras() -> None:
    doc = minimal_doc(future={"x": 1})
    doc["meta"] = {"task": None, "agents": None, "replay_of": {"session": "o"}, "new": 1}
    doc["workers"][0].update(state=None, exit_code=3, duration_s=2, future_worker=[1])
    assert schema_errors(doc) == []
    assert reader_accepts(doc)


@pytest.mark.parametrize("change", list(MUTATIONS))
def test_schema_refuses_what_the_reader_refuses(change: str) -> None:
    doc = _mutated(change)
    assert not reader_accepts(doc)
    if change == "duplicate":
        # Unique slugs are the one rule JSON Schema cannot say (uniqueItems compares
        # whole items); the schema's description states it.
        assert "slugs are unique" in load_schema()["description"]
        return
    assert schema_errors(doc) != [], change


@pytest.mark.parametrize("name", UNSAFE_NAMES + SAFE_NAMES)
def test_schema_and_reader_agree_on_names(name: str) -> None:
    for field in ("session", "slug"):
        doc = minimal_doc()
        if field == "session":
            doc["session"] = name
        else:
            doc["workers"][0]["slug"] = name
        assert (schema_errors(doc) == []) is reader_accepts(doc) is (name in SAFE_NAMES), field


_SAFE_PATTERN = load_schema()["$defs"]["safeName"]["pattern"]
_SESSION_PATTERN = load_schema()["$defs"]["sessionName"]["pattern"]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="aZ09._-/\\\n \u00e9", max_size=12),
        st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,130}\Z"),
        st.from_regex(r"\A[a-z0-9.]{0,8}\.lock\Z"),
    ),
    st.sampled_from(["slug", "session"]),
)
def test_name_pattern_matches_check_name(name: str, what: str) -> None:
    """The schema's regexes (any dialect) and sessiondir's rules are the same rules."""
    try:
        check_name(name, what, "b")
        accepted = True
    except BundleError:
        accepted = False
    pattern = _SAFE_PATTERN if what == "slug" else _SESSION_PATTERN
    assert jsonschema.Draft202012Validator({"pattern": pattern}).is_valid(name) is accepted, name


def test_our_exports_match_the_schema_and_old_readers_read_them(tmp_path: Path) -> None:
    """A real export (CLI) of a session with every kind of content."""
    from tests.support import run_cli

    root = tmp_path / "coord"
    for slug, text in (("b-worker", "b\r\nno newline"), ("a-worker", "")):
        worker = root / "sess" / slug
        worker.mkdir(parents=True)
        for name in ("task.md", "handoff.md"):
            (worker / name).write_text(text, newline="")
        (worker / "status.md").write_text("- State: failed\n- Exit code: 3\n- Duration: 1.50s\n")
        (worker / "transcript.log").write_bytes(b"\x1b[1mbold\x1b[0m\r\n")
    result = run_cli(
        "session-export", "sess", "--coord-root", str(root), "--task", "t", "--agents", "a,b",
        "--harness", "echo", "--base-ref", "main", "--out", "-", cwd=tmp_path,
    )  # fmt: skip
    assert result.code == 0, result
    doc = json.loads(result.stdout)
    assert schema_errors(doc) == []
    assert doc["workers"][0]["exit_code"] == 3
    assert doc["workers"][0]["transcript"] == "bold\n"
    from tests.test_bundle import old_reader

    seen = old_reader(result.stdout.encode("utf-8"))
    assert seen["meta"] == {
        "task": "t",
        "agents": ["a", "b"],
        "harness": "echo",
        "base_ref": "main",
    }
    assert [w["task"] for w in seen["workers"]] == ["", "b\r\nno newline"]
    data = result.stdout.encode("utf-8")
    assert encode_bundle(decode_bundle(data)) == data
