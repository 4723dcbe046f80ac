"""The bundle format itself, in process: the reference bundles of the earlier
JavaScript tool read and re-encode byte for byte, our bundles stay readable by a
reader that knows only the required fields, decoding errors name the line and
column, validation refuses every unsafe name, and ``write_bundle`` is atomic.

Also the helpers the other bundle test modules share."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from kodelyth_ecc.bundle import (
    SCHEMA,
    Bundle,
    BundleError,
    BundleWorker,
    decode_bundle,
    encode_bundle,
    read_bundle,
    read_bundle_file,
    validate_bundle,
    write_bundle,
)
from tests.support import Result

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REFERENCE_BUNDLES = sorted((FIXTURES / "reference-bundles").glob("*.bundle.json"))
WORKER_STRINGS = ("task", "handoff", "status")


def fixture_ids() -> list[str]:
    return [p.name.removesuffix(".bundle.json") for p in REFERENCE_BUNDLES]


def minimal_doc(**overrides: Any) -> dict[str, Any]:
    """A valid bundle as plain JSON data, with top-level fields replaced."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "session": "s1",
        "exported_at": "2026-01-02T03:04:05Z",
        "exported_by": "kodelyth-ecc@0.0.0",
        "meta": {},
        "workers": [
            {"slug": "alpha", "task": "do a\n", "handoff": "did a\n", "status": "- State: done\n"},
            {"slug": "beta", "task": "do b", "handoff": "", "status": ""},
        ],
    }
    doc.update(overrides)
    return doc


def full_bundle() -> Bundle:
    """A bundle using every optional field we write."""
    return Bundle(
        schema=SCHEMA,
        session="swarm-2026-05-10-2a",
        exported_at="2026-05-10T17:30:00Z",
        exported_by="kodelyth-ecc@0.1.0",
        meta={
            "task": "audit oauth",
            "agents": ["security-reviewer", "code-reviewer"],
            "harness": "echo",
            "base_ref": "HEAD",
            "base_commit": "0" * 40,
            "launcher": "printf 'x' {worker_slug_sh}",
            "seed_paths": ["config/app.env"],
            "created_at": "2026-05-10T17:00:00Z",
            "tool": "kodelyth-ecc@0.1.0",
            "replay_of": {"session": "swarm-origin", "bundle_sha256": "a" * 64},
            "variation": {"harness": "echo", "agents": ["x"]},
        },
        workers=[
            BundleWorker(
                slug=slug,
                task=f"# Worker Task: {slug}\r\nno final newline",
                handoff="h\u00e9 \U0001f600\n",
                status="- State: completed\n- Exit code: 0\n",
                state="completed",
                exit_code=0,
                started_at="2026-05-10T17:00:01Z",
                finished_at="2026-05-10T17:00:03Z",
                duration_s=2.25,
                diff="diff --git a/x b/x\n",
                diffstat=" x | 1 +\n",
                transcript="hello\n",
            )
            for slug in ("security-reviewer", "code-reviewer")
        ],
    )


def old_reader(data: bytes) -> dict[str, Any]:
    """A reader that knows only what the earlier JavaScript tool wrote: the required
    fields and meta's task, agents, harness and base_ref. Anything else is ignored,
    as old readers do; anything it needs that is missing or mistyped is an error."""
    doc = json.loads(data.decode("utf-8"))
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError("not a kodelyth.session-bundle/v1 object")
    for key in ("session", "exported_at", "exported_by"):
        if not isinstance(doc.get(key), str):
            raise ValueError(f"{key} is not a string")
    meta = doc.get("meta")
    if not isinstance(meta, dict):
        raise ValueError("meta is not an object")
    known_meta = {k: meta[k] for k in ("task", "agents", "harness", "base_ref") if k in meta}
    for key in ("task", "harness", "base_ref"):
        if key in known_meta and not isinstance(known_meta[key], str):
            raise ValueError(f"meta.{key} is not a string")
    if "agents" in known_meta and not all(isinstance(a, str) for a in known_meta["agents"]):
        raise ValueError("meta.agents is not a list of strings")
    workers = doc.get("workers")
    if not isinstance(workers, list) or not workers:
        raise ValueError("no workers")
    read = []
    for worker in workers:
        fields = ("slug", *WORKER_STRINGS)
        if not isinstance(worker, dict) or not all(isinstance(worker.get(k), str) for k in fields):
            raise ValueError("a worker lacks slug, task, handoff or status")
        read.append({k: worker[k] for k in fields})
    return {"session": doc["session"], "meta": known_meta, "workers": read}


def required_view(bundle: Bundle) -> dict[str, Any]:
    """What ``old_reader`` should see of a bundle we decoded."""
    return {
        "session": bundle.session,
        "meta": {
            k: bundle.meta[k] for k in ("task", "agents", "harness", "base_ref") if k in bundle.meta
        },
        "workers": [
            {"slug": w.slug, "task": w.task, "handoff": w.handoff, "status": w.status}
            for w in bundle.workers
        ],
    }


def assert_one_line_error(result: Result, code: int, *needles: str) -> str:
    """A refusal: the exit code, one line on stderr naming the problem, no traceback."""
    assert result.code == code, result
    assert "Traceback" not in result.stderr, result
    assert "internal error" not in result.stderr, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result
    assert re.match(r"kodelyth-ecc( [a-z-]+)?: error: ", lines[0]), result
    for needle in needles:
        assert needle in lines[0], result
    return lines[0]


def encode_doc(doc: Any) -> bytes:
    return json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"


# --- the reference bundles ---------------------------------------------------------


def test_reference_bundles_are_all_there() -> None:
    assert fixture_ids() == ["no-meta", "objective-only", "replay-1", "rich-meta"]


@pytest.mark.parametrize("path", REFERENCE_BUNDLES, ids=fixture_ids())
def test_reference_bundle_reads_and_reencodes_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    bundle, digest = read_bundle_file(str(path))
    assert encode_bundle(bundle) == data
    import hashlib

    assert digest == hashlib.sha256(data).hexdigest()
    assert bundle.schema == SCHEMA
    assert [w.slug for w in bundle.workers] == sorted(w.slug for w in bundle.workers)
    # The JS tool's bundles carry none of our optional worker fields.
    for worker in bundle.workers:
        assert worker.state is None
        assert worker.diff is None
        assert worker.transcript is None


@pytest.mark.parametrize("path", REFERENCE_BUNDLES, ids=fixture_ids())
def test_old_reader_and_ours_agree_on_reference_bundles(path: Path) -> None:
    data = path.read_bytes()
    assert old_reader(data) == required_view(read_bundle(str(path)))


def test_rich_meta_fixture_keeps_its_meta_in_order() -> None:
    bundle = read_bundle(str(FIXTURES / "reference-bundles" / "rich-meta.bundle.json"))
    assert list(bundle.meta) == ["task", "agents", "harness", "base_ref"]
    assert bundle.meta["agents"] == ["security-reviewer", "code-reviewer", "pair-programmer"]


# --- our encoding ----------------------------------------------------------------------


def test_encoding_is_indented_utf8_sorted_with_a_final_newline() -> None:
    bundle = full_bundle()
    data = encode_bundle(bundle)
    assert data.endswith(b"}\n")
    assert not data.endswith(b"\n\n")
    assert data.startswith(b'{\n  "schema": "kodelyth.session-bundle/v1",\n  "session": ')
    text = data.decode("utf-8")
    assert "h\u00e9 \U0001f600" in text  # not \u-escaped: diff-friendly
    assert "\\r\\n" in text  # the CRLF of the task survives as an escape
    decoded = json.loads(text)
    assert [w["slug"] for w in decoded["workers"]] == ["code-reviewer", "security-reviewer"]
    assert list(decoded) == ["schema", "session", "exported_at", "exported_by", "meta", "workers"]
    assert list(decoded["workers"][0])[:4] == ["slug", "task", "handoff", "status"]
    # Encoding sorts a copy: the caller's bundle is left as it was.
    assert [w.slug for w in bundle.workers] == ["security-reviewer", "code-reviewer"]


def test_absent_optional_fields_are_omitted_not_null() -> None:
    bundle = decode_bundle(encode_doc(minimal_doc()))
    text = encode_bundle(bundle).decode("utf-8")
    assert "null" not in text
    assert json.loads(text)["workers"][0] == minimal_doc()["workers"][0]


def test_our_bundles_read_with_an_old_reader() -> None:
    bundle = full_bundle()
    data = encode_bundle(bundle)
    seen = old_reader(data)
    assert seen == required_view(decode_bundle(data))
    assert seen["meta"] == {
        "task": "audit oauth",
        "agents": ["security-reviewer", "code-reviewer"],
        "harness": "echo",
        "base_ref": "HEAD",
    }
    assert [w["slug"] for w in seen["workers"]] == ["code-reviewer", "security-reviewer"]


def test_full_bundle_round_trips_through_encoding() -> None:
    bundle = full_bundle()
    data = encode_bundle(bundle)
    again = decode_bundle(data)
    assert encode_bundle(again) == data
    assert again.worker("code-reviewer") == bundle.worker("code-reviewer")
    assert again.meta == bundle.meta


def test_unknown_fields_are_accepted_everywhere() -> None:
    """A newer writer's additions must not stop us reading its bundles."""
    doc = minimal_doc(future_top={"x": 1}, meta={"task": "t", "future_meta": [1, "a", None]})
    doc["workers"][0]["future_worker"] = {"nested": True}
    bundle = decode_bundle(encode_doc(doc))
    assert bundle.meta["future_meta"] == [1, "a", None]
    assert bundle.workers[0].task == "do a\n"


def test_null_optional_fields_are_accepted() -> None:
    meta = dict.fromkeys(("task", "agents", "harness", "base_ref", "seed_paths", "replay_of"))
    doc = minimal_doc(meta=meta)
    doc["workers"][0].update(dict.fromkeys(("state", "exit_code", "duration_s", "diff")))
    bundle = decode_bundle(encode_doc(doc))
    assert bundle.workers[0].exit_code is None


# --- decoding errors -------------------------------------------------------------------

GOOD = encode_doc(minimal_doc())


@pytest.mark.parametrize(
    ("data", "needles"),
    [
        pytest.param(b"", ("not valid JSON", "line 1, column 1"), id="empty"),
        pytest.param(b"  \n   ", ("not valid JSON", "line 2, column 4"), id="whitespace"),
        pytest.param(b'{\n  "schema": nope\n}', ("line 2, column 13",), id="bad-literal"),
        pytest.param(GOOD[:60], ("not valid JSON", "line 3, column"), id="truncated"),
        pytest.param(
            GOOD + b",", ("not valid JSON", f"line {GOOD.count(10) + 1}, column 1"), id="trailing"
        ),
        pytest.param(
            GOOD.replace(b'"do a', b'"\xc3\xa9\xff'),
            ("not UTF-8", "line 10, column 17"),
            id="bad-utf8",
        ),
        pytest.param(b"\xef\xbb\xbf" + GOOD, ("byte-order mark", "line 1"), id="bom"),
        pytest.param(b'{"x": NaN}', ("not valid JSON", "line 1, column 7"), id="nan"),
        pytest.param(
            b'{"session": "\\ud800"}', ("not valid JSON", "line 1", "column"), id="lone-surrogate"
        ),
        pytest.param(b"[]", ("Expected `object`, got `array`",), id="array"),
        pytest.param(b'"bundle"', ("Expected `object`, got `str`",), id="string"),
        pytest.param(b"null", ("Expected `object`, got `null`",), id="null"),
    ],
)
def test_undecodable_input_names_where_it_breaks(data: bytes, needles: tuple[str, ...]) -> None:
    with pytest.raises(BundleError) as err:
        decode_bundle(data, "x.json")
    message = err.value.message
    assert message.startswith("x.json is not ")
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def _mutated(change: str) -> dict[str, Any]:
    doc = minimal_doc()
    worker = doc["workers"][0]
    if change == "wrong-schema":
        doc["schema"] = "kodelyth.session-bundle/v2"
    elif change.startswith("no-"):
        del doc[change[3:]]
    elif change == "worker-no-handoff":
        del worker["handoff"]
    elif change == "slug-int":
        worker["slug"] = 7
    elif change == "task-null":
        worker["task"] = None
    elif change == "meta-list":
        doc["meta"] = []
    elif change == "workers-object":
        doc["workers"] = {"alpha": worker}
    elif change == "empty-workers":
        doc["workers"] = []
    elif change == "duplicate":
        doc["workers"][1]["slug"] = "alpha"
    elif change == "exit-code-string":
        worker["exit_code"] = "0"
    elif change == "agents-string":
        doc["meta"] = {"agents": "a,b"}
    elif change == "seed-paths-int":
        doc["meta"] = {"seed_paths": 5}
    elif change == "task-list":
        doc["meta"] = {"task": ["a"]}
    elif change == "replay-of-string":
        doc["meta"] = {"replay_of": "origin"}
    elif change == "replay-of-session-int":
        doc["meta"] = {"replay_of": {"session": 1}}
    elif change == "variation-list":
        doc["meta"] = {"variation": ["harness"]}
    elif change == "reserved-slug":
        worker["slug"] = "session.json"
    else:
        raise AssertionError(change)
    return doc


MUTATIONS = {
    "wrong-schema": "expected 'kodelyth.session-bundle/v1'",
    "no-schema": "missing required field `schema`",
    "no-session": "missing required field `session`",
    "no-exported_at": "missing required field `exported_at`",
    "no-exported_by": "missing required field `exported_by`",
    "no-meta": "missing required field `meta`",
    "no-workers": "missing required field `workers`",
    "worker-no-handoff": "missing required field `handoff` at `$.workers[0]`",
    "slug-int": "Expected `str`, got `int` at `$.workers[0].slug`",
    "task-null": "Expected `str`, got `null` at `$.workers[0].task`",
    "meta-list": "Expected `object`, got `array` at `$.meta`",
    "workers-object": "Expected `array`, got `object` at `$.workers`",
    "empty-workers": "no workers",
    "duplicate": "workers[1].slug appears twice",
    "exit-code-string": "at `$.workers[0].exit_code`",
    "agents-string": "meta.agents must be a list of strings",
    "seed-paths-int": "meta.seed_paths must be a list of strings",
    "task-list": "meta.task must be a string",
    "replay-of-string": "meta.replay_of must be an object",
    "replay-of-session-int": "meta.replay_of.session must be a string",
    "variation-list": "meta.variation must be an object",
    "reserved-slug": "reserved",
}


@pytest.mark.parametrize("change", list(MUTATIONS))
def test_invalid_bundles_are_refused_with_the_reason(change: str) -> None:
    with pytest.raises(BundleError) as err:
        decode_bundle(encode_doc(_mutated(change)), "b.json")
    assert err.value.message.startswith("b.json is not a valid session bundle: ")
    assert MUTATIONS[change] in err.value.message


UNSAFE_NAMES = [
    "a/b",
    "a\\b",
    "..",
    "../escape",
    "../../escape",
    "a..b",
    ".hidden",
    ".",
    "/abs/path",
    "C:\\evil",
    "",
    " lead",
    "a b",
    "a\n",
    "-flag",
    "x" * 129,
    "caf\u00e9",
]
SAFE_NAMES = ["a", "A-1", "swarm-2026-11-20-3a", "tdd_guide", "x" * 64, "0"]
# Valid slugs that are not valid session names: tmux rewrites '.' in session names.
SAFE_SLUGS_ONLY = ["v1.2", "api.guardian"]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
@pytest.mark.parametrize("field", ["session", "slug"])
def test_unsafe_names_are_refused(field: str, name: str) -> None:
    doc = minimal_doc()
    if field == "session":
        doc["session"] = name
    else:
        doc["workers"][1]["slug"] = name
    with pytest.raises(BundleError) as err:
        decode_bundle(encode_doc(doc))
    assert "not one safe path component" in err.value.message
    # The error names the field, never the value: a hostile name may hold anything.
    if len(name) > 2:  # '.' and '..' are in the rule's own words
        assert repr(name) not in err.value.message


@pytest.mark.parametrize("name", SAFE_NAMES)
def test_safe_names_are_accepted(name: str) -> None:
    doc = minimal_doc(session=name)
    doc["workers"][1]["slug"] = name
    bundle = decode_bundle(encode_doc(doc))
    assert bundle.session == name


@pytest.mark.parametrize("name", SAFE_SLUGS_ONLY)
def test_dotted_names_are_slugs_not_sessions(name: str) -> None:
    doc = minimal_doc()
    doc["workers"][1]["slug"] = name
    assert decode_bundle(encode_doc(doc)).workers[1].slug == name
    doc = minimal_doc(session=name)
    with pytest.raises(BundleError, match="session is not one safe path component"):
        decode_bundle(encode_doc(doc))


def test_validate_bundle_checks_bundles_built_in_python() -> None:
    bundle = full_bundle()
    assert validate_bundle(bundle) is bundle
    bad = Bundle(
        schema=SCHEMA,
        session="ok",
        exported_at="",
        exported_by="",
        meta={},
        workers=[BundleWorker(slug="../x", task="", handoff="", status="")],
    )
    with pytest.raises(BundleError, match="not one safe path component"):
        validate_bundle(bad, "mine")


def test_read_bundle_size_cap_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_bytes(GOOD)
    assert read_bundle(str(path), max_bytes=len(GOOD)).session == "s1"
    with pytest.raises(
        BundleError, match=r"over the .*-byte limit: raise it with --max-bundle-size"
    ):
        read_bundle(str(path), max_bytes=len(GOOD) - 1)
    with pytest.raises(BundleError, match="does not exist"):
        read_bundle(str(tmp_path / "missing.json"))
    with pytest.raises(BundleError, match="is a directory"):
        read_bundle(str(tmp_path))


# --- writing ---------------------------------------------------------------------------


def test_write_bundle_writes_exactly_the_encoding(tmp_path: Path) -> None:
    out = tmp_path / "d" / "out.bundle.json"
    out.parent.mkdir()
    write_bundle(full_bundle(), str(out))
    assert out.read_bytes() == encode_bundle(full_bundle())
    assert os.listdir(out.parent) == ["out.bundle.json"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_write_bundle_is_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    """A failure at the last moment (the rename) leaves the old file and no temp file."""
    out = tmp_path / "d" / "out.bundle.json"
    out.parent.mkdir()
    out.write_bytes(b"old bundle\n")
    written: list[str] = []
    real_replace = os.replace

    def failing_replace(src: str, dst: str) -> None:
        written.append(Path(src).read_text(encoding="utf-8"))
        raise failure

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(type(failure)):
        write_bundle(full_bundle(), str(out))
    monkeypatch.setattr(os, "replace", real_replace)
    assert written and written[0].startswith("{")  # the new bundle was complete in the temp file
    assert out.read_bytes() == b"old bundle\n"
    assert os.listdir(out.parent) == ["out.bundle.json"]


def test_write_bundle_refuses_an_invalid_bundle_before_writing(tmp_path: Path) -> None:
    bundle = full_bundle()
    bundle.workers.append(bundle.workers[0])
    out = tmp_path / "d" / "out.json"
    out.parent.mkdir()
    with pytest.raises(BundleError, match="appears twice"):
        write_bundle(bundle, str(out))
    assert os.listdir(out.parent) == []
