"""A worker's recorded model traffic: the one owner of the recording format.

The recording proxy appends one ``Exchange`` per request a worker's agent made
(``exchanges.jsonl`` in its coordination dir: one JSON object a line, written with a
single append and fsynced, so a crash loses at most the request in flight and never
tears an earlier one). ``session-export`` carries them as the worker field
``exchanges``; an offline replay answers from them. What is derived from a recording
lives here beside its writer and reader:

- ``usage_of``: the tokens the provider reported, per wire format (Anthropic Messages,
  OpenAI Responses and Chat Completions, Gemini);
- ``tool_calls`` / ``touches``: what the recorded answers would make an agent do
  (dry-run lists every command and path before a stranger's recording drives one);
- ``conversation``: the conversation a request carries, normalised (worktree path,
  session name, dates, per-run context blocks), which decides divergence;
- ``seal``: an HMAC with a key that never leaves this machine, so that a replay can
  tell a recording made here from one that merely claims to be.

A recording from a bundle is hostile: ``validate_exchanges`` checks sizes, types and
order before anything reads it. No credential is ever recorded: requests keep only
the headers in ``REQUEST_HEADERS``, responses those in ``RESPONSE_HEADERS``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

FORMATS = ("anthropic-messages", "openai-responses", "openai-chat", "gemini", "other")
# Who answered: the provider, or the recording (an offline replay).
SOURCES = ("upstream", "recording")
POLICIES = ("stop", "continue", "live")

# Request headers worth keeping (what shapes the provider's answer); every other one,
# and so every credential (authorization, x-api-key, x-goog-api-key, cookie), is dropped.
REQUEST_HEADERS = frozenset(
    {"content-type", "anthropic-version", "anthropic-beta", "openai-beta", "user-agent"}
)
# Response headers kept and replayed: the content type decides how a client reads it.
RESPONSE_HEADERS = frozenset({"content-type", "request-id", "x-request-id", "retry-after"})
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "cookie",
        "set-cookie",
    }
)

# --- caps (checked before a recording is used) -----------------------------------------

MAX_EXCHANGES = 10_000
MAX_BODY_CHARS = 32 * 1024 * 1024
MAX_EVENTS = 200_000
MAX_EVENT_CHARS = 4 * 1024 * 1024
MAX_PATH_CHARS = 8 * 1024
MAX_HEADERS = 32
MAX_HEADER_CHARS = 8 * 1024
MAX_NOTE_CHARS = 1024
# What is read of an exchanges.jsonl: a runaway recording must not exhaust memory.
MAX_RECORDING_BYTES = 1024 * 1024 * 1024
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class Exchange(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One request and its answer. ``events`` holds a stream's server-sent events (each
    block as it came, without its blank line); ``body`` a plain answer."""

    turn: int
    method: str
    path: str
    format: str
    request_headers: dict[str, str] = {}
    request: str = ""
    status: int = 0
    response_headers: dict[str, str] = {}
    body: str | None = None
    events: list[str] | None = None
    started_at: str | None = None
    ttfb_ms: float | None = None
    duration_ms: float | None = None
    usage: dict[str, int | str | None] | None = None
    source: str
    # Why there is no (whole) answer: the upstream was unreachable, the client left.
    error: str | None = None


class RecordingError(ValueError):
    """A recording that breaks the format's rules; the message names what and where."""


def wire_format(path: str) -> str:
    """The provider format a request path belongs to."""
    bare = path.split("?", 1)[0].rstrip("/")
    if bare.endswith("/messages") or bare.endswith("/messages/count_tokens"):
        return "anthropic-messages"
    if bare.endswith("/responses") or "/responses/" in bare:
        return "openai-responses"
    if bare.endswith("/chat/completions"):
        return "openai-chat"
    if ":generateContent" in bare or ":streamGenerateContent" in bare or ":countTokens" in bare:
        return "gemini"
    return "other"


# Query parameters that carry a credential (Google's APIs take ``?key=``).
_SECRET_PARAMS = frozenset(
    {"key", "api_key", "apikey", "api-key", "access_token", "token", "auth", "sig", "signature"}
)


def recorded_path(path: str) -> str:
    """The request path as recorded: a credential in its query is replaced by ``***``."""
    head, sep, query = path.partition("?")
    if not sep:
        return path
    parts = []
    from urllib.parse import unquote

    for pair in query.split("&"):
        name, eq, _value = pair.partition("=")
        secret = eq and unquote(name).strip().lower() in _SECRET_PARAMS
        parts.append(f"{name}=***" if secret else pair)
    return head + "?" + "&".join(parts)


def keep_headers(headers: Iterable[tuple[str, str]], allowed: frozenset[str]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in allowed and key not in SECRET_HEADERS:
            kept[key] = value[:MAX_HEADER_CHARS]
    return kept


# --- validation ------------------------------------------------------------------------


def validate_exchanges(exchanges: Sequence[Exchange], where: str) -> None:
    """Sizes, values and order of a recording (types were checked by decoding)."""
    if len(exchanges) > MAX_EXCHANGES:
        raise RecordingError(f"{where} holds {len(exchanges):,} exchanges, over {MAX_EXCHANGES:,}")
    last = 0
    for index, ex in enumerate(exchanges):
        at = f"{where}[{index}]"
        if ex.turn <= last:
            raise RecordingError(f"{at}.turn is {ex.turn}: turns must increase from 1")
        last = ex.turn
        if ex.method not in _METHODS:
            raise RecordingError(f"{at}.method is not an HTTP method")
        if not ex.path.startswith("/") or len(ex.path) > MAX_PATH_CHARS or "\n" in ex.path:
            raise RecordingError(f"{at}.path must be an absolute request path")
        if ex.format not in FORMATS:
            raise RecordingError(f"{at}.format must be one of {', '.join(FORMATS)}")
        if ex.source not in SOURCES:
            raise RecordingError(f"{at}.source must be one of {', '.join(SOURCES)}")
        if not (ex.status == 0 or 200 <= ex.status <= 599):
            raise RecordingError(f"{at}.status is not an HTTP status")
        for name, headers in (
            ("request_headers", ex.request_headers),
            ("response_headers", ex.response_headers),
        ):
            if len(headers) > MAX_HEADERS or any(
                len(v) > MAX_HEADER_CHARS or k.lower() in SECRET_HEADERS for k, v in headers.items()
            ):
                raise RecordingError(f"{at}.{name} holds a credential header or too many")
            if not all(_HEADER_NAME.fullmatch(k) and _HEADER_VALUE.fullmatch(v)
                       for k, v in headers.items()):  # fmt: skip
                # A line break in a value would write headers (or a body) of its own.
                raise RecordingError(f"{at}.{name} holds a header that is not one line of text")
        if len(ex.request) > MAX_BODY_CHARS or len(ex.body or "") > MAX_BODY_CHARS:
            raise RecordingError(f"{at} holds a body over {MAX_BODY_CHARS:,} characters")
        if ex.events is not None and (
            len(ex.events) > MAX_EVENTS or any(len(e) > MAX_EVENT_CHARS for e in ex.events)
        ):
            raise RecordingError(f"{at}.events is over its limits")
        for name in ("ttfb_ms", "duration_ms"):
            value = getattr(ex, name)
            if value is not None and not 0 <= value < 1e9:
                raise RecordingError(f"{at}.{name} is out of range")
        if ex.usage is not None and len(ex.usage) > 16:
            raise RecordingError(f"{at}.usage holds too many keys")
        if len(ex.error or "") > MAX_NOTE_CHARS or len(ex.started_at or "") > 64:
            raise RecordingError(f"{at} holds an over-long note")


def fit(exchange: Exchange) -> None:
    """Bring an exchange about to be recorded within ``validate_exchanges``' limits (a
    40 MB request is forwarded whole, recorded cut), saying so in ``error``: what we
    write, we read back."""
    cut = []
    if len(exchange.request) > MAX_BODY_CHARS:
        exchange.request = exchange.request[:MAX_BODY_CHARS]
        cut.append("request")
    if exchange.body is not None and len(exchange.body) > MAX_BODY_CHARS:
        exchange.body = exchange.body[:MAX_BODY_CHARS]
        cut.append("answer")
    if exchange.events is not None:
        events = [e[:MAX_EVENT_CHARS] for e in exchange.events[:MAX_EVENTS]]
        if len(events) < len(exchange.events) or any(
            len(a) < len(b) for a, b in zip(events, exchange.events, strict=False)
        ):
            cut.append("answer")
        exchange.events = events
    if len(exchange.path) > MAX_PATH_CHARS:
        exchange.path = exchange.path[:MAX_PATH_CHARS]
        cut.append("path")
    if cut:
        note = f"{' and '.join(dict.fromkeys(cut))} over the recording's limits: kept its start"
        exchange.error = note if exchange.error is None else f"{exchange.error}; {note}"
    if exchange.error is not None:
        exchange.error = exchange.error[:MAX_NOTE_CHARS]


# --- the file on disk: writer and reader -----------------------------------------------

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Exchange)
_LIST_DECODER = msgspec.json.Decoder(list[Exchange])


def encode_line(exchange: Exchange) -> bytes:
    return _ENCODER.encode(exchange) + b"\n"


class ExchangeLog:
    """Append-only ``exchanges.jsonl`` with its seal file beside it. Each exchange is one
    ``write`` of a whole line, and the seal (an HMAC of everything so far, fixed length)
    is rewritten in place, both before the agent gets the end of its answer: a killed
    proxy loses nothing that was answered. fsync runs on a background thread, so that
    recording costs a request two system calls, not a disk flush (a power cut may lose
    the last moments). Thread-safe: a worker's requests may overlap."""

    def __init__(self, path: str, seal_path: str | None = None) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        self._seal_fd: int | None = None
        if seal_path is not None:
            seal_flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            self._seal_fd = os.open(seal_path, seal_flags, 0o600)
        self._key = machine_key()
        self._lock = threading.Lock()
        self._digest = hashlib.sha256()
        self._length = 0
        self._turns = 0
        self._dirty = threading.Event()
        self._closed = False
        self._syncer = threading.Thread(target=self._sync_loop, daemon=True)
        self._syncer.start()

    def next_turn(self) -> int:
        with self._lock:
            self._turns += 1
            return self._turns

    def append(self, exchange: Exchange) -> None:
        line = encode_line(exchange)
        with self._lock:
            if self._closed:
                # A request that finished while the proxy shut down: its descriptor is
                # closed (and its number may be another file's by now).
                return
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view) :]
            self._digest.update(line)
            self._length += len(line)
            if self._seal_fd is not None:
                # "<seal> <bytes it covers>": a reader that catches the file mid-append
                # checks the prefix the seal was made for. Only ever grows, so an
                # in-place rewrite never leaves an old tail.
                seal = _file_seal(self._digest.hexdigest(), self._key)
                os.pwrite(self._seal_fd, f"{seal} {self._length}\n".encode("ascii"), 0)
        self._dirty.set()

    def _sync_loop(self) -> None:
        while not self._closed:
            self._dirty.wait()
            self._dirty.clear()
            self._sync()

    def _sync(self) -> None:
        with self._lock:
            for fd in (self._fd, self._seal_fd):
                if fd is not None and not self._closed:
                    with contextlib.suppress(OSError):
                        os.fsync(fd)

    def close(self) -> None:
        self._sync()
        with self._lock:
            self._closed = True
            os.close(self._fd)
            if self._seal_fd is not None:
                os.close(self._seal_fd)
        self._dirty.set()


def parse_lines(data: bytes) -> list[Exchange]:
    """The exchanges of an ``exchanges.jsonl``'s bytes, in turn order. A last line
    without its newline was being written when the proxy stopped: it is left out; so
    is a line that does not decode (the file is ours, but a disk may fail)."""
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or a torn write
    found: list[Exchange] = []
    for line in lines:
        try:
            found.append(_DECODER.decode(line))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    found.sort(key=lambda e: e.turn)
    unique: list[Exchange] = []
    for ex in found:
        if not unique or ex.turn > unique[-1].turn:
            unique.append(ex)
    return unique[:MAX_EXCHANGES]


def decode_list(data: bytes, where: str) -> list[Exchange]:
    """A JSON list of exchanges (a replay's source file), validated."""
    try:
        exchanges = _LIST_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RecordingError(f"{where}: {exc}") from None
    validate_exchanges(exchanges, where)
    return exchanges


def encode_list(exchanges: Sequence[Exchange]) -> bytes:
    return _ENCODER.encode(list(exchanges))


# --- the seal --------------------------------------------------------------------------

SEAL_PREFIX = "hmac-sha256:"


def _key_path() -> str:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "kodelyth-ecc", "recording.key")


def machine_key() -> bytes:
    """This machine's (this user's) recording key: 32 random bytes made on first use,
    mode 0600, never written anywhere else."""
    path = _key_path()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        key = os.urandom(32)
        # Written whole under a temporary name, then linked into place: a process that
        # opens the key never sees it half-written, and the first one made wins.
        tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:  # another process made it first: use theirs
                return machine_key()
        finally:
            os.unlink(tmp)
        return key
    with os.fdopen(fd, "rb") as fh:
        return fh.read(64)


def _file_seal(hexdigest: str, key: bytes | None = None) -> str:
    message = b"file\0" + hexdigest.encode()
    tag = hmac.new(key if key is not None else machine_key(), message, hashlib.sha256)
    return SEAL_PREFIX + tag.hexdigest()


def file_sealed_here(data: bytes, seal_text: str | None) -> int | None:
    """How many bytes of ``exchanges.jsonl`` this machine's proxy sealed (None: its seal
    does not match them). The file may have grown since the seal was read: the seal
    covers the prefix it names."""
    if not seal_text:
        return None
    seal, _, length = seal_text.strip().partition(" ")
    size = int(length) if length.isdigit() else len(data)
    if size > len(data):
        return None
    expected = _file_seal(hashlib.sha256(data[:size]).hexdigest())
    return size if hmac.compare_digest(expected, seal) else None


def seal(exchanges: Sequence[Exchange], context: Context, slug: str, task: str) -> str:
    """The bundle's seal of a worker's recording: over its canonical encoding, the
    context it was recorded in, the worker's slug and its task, so that a recording
    moved to another worker or given another task is no longer "made here"."""
    task_digest = hashlib.sha256(task.encode("utf-8", "surrogatepass")).hexdigest()
    message = b"\0".join(
        (b"bundle", _ENCODER.encode(context), slug.encode(), task_digest.encode(),
         encode_list(exchanges))
    )  # fmt: skip
    return SEAL_PREFIX + hmac.new(machine_key(), message, hashlib.sha256).hexdigest()


def sealed_here(exchanges: Sequence[Exchange], recording: object, slug: str, task: str) -> bool:
    """Whether a bundle worker's recording was made on this machine, for this worker and
    task, and not altered since."""
    claimed = recording.get("seal") if isinstance(recording, dict) else None
    if not isinstance(claimed, str):
        return False
    return hmac.compare_digest(seal(exchanges, Context.of(recording), slug, task), claimed)


# --- server-sent events ----------------------------------------------------------------


def split_events(text: str) -> tuple[list[str], str]:
    """Complete event blocks of a stream, and what is left of an incomplete one."""
    text = text.replace("\r\n", "\n")
    *blocks, rest = text.split("\n\n")
    return [b for b in blocks if b.strip()], rest


def event_data(block: str) -> str:
    """The ``data:`` of one event block (lines joined, as the SSE spec says)."""
    parts = []
    for line in block.split("\n"):
        if line.startswith("data:"):
            parts.append(line[5:].removeprefix(" "))
    return "\n".join(parts)


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _payloads(exchange: Exchange) -> list[Any]:
    """The JSON values of an answer: each event's data, or the body (a Gemini stream
    without ``alt=sse`` is one JSON array)."""
    events = exchange.events
    value = _json(exchange.body)
    if events is None and value is None and exchange.body:
        # Not JSON: read it the way a client would read a stream (a recording may serve
        # a stream as a plain body).
        events, rest = split_events(exchange.body)
        events.append(rest)
    if events is not None:
        return [v for v in (_json(event_data(e)) for e in events) if v is not None]
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


def _d(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _objs(value: object) -> list[dict[str, Any]]:
    """The JSON objects of a list (anything else in it, or a non-list, is skipped)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _n(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# --- usage -----------------------------------------------------------------------------

USAGE_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def usage_of(exchange: Exchange) -> dict[str, int | str | None] | None:
    """The usage the provider reported in this answer (None: it reported none). Input
    tokens exclude cached ones, as the harness adapters count them."""
    if not 200 <= exchange.status < 300:
        return None
    found: dict[str, int | str | None] = {}
    for value in _payloads(exchange):
        for item in value if isinstance(value, list) else [value]:
            _usage_from(exchange.format, _d(item), found)
    return found or None


def _usage_from(fmt: str, item: dict[str, Any], found: dict[str, int | str | None]) -> None:
    if fmt == "anthropic-messages":
        message = _d(item.get("message")) if item.get("type") == "message_start" else item
        if isinstance(message.get("model"), str):
            found["model"] = message["model"][:200]
        usage = _d(message.get("usage")) or _d(item.get("usage"))
        for key, name in (
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cache_read_input_tokens", "cache_read_tokens"),
            ("cache_creation_input_tokens", "cache_write_tokens"),
        ):
            if _n(usage.get(key)) is not None:
                found[name] = usage[key]
    elif fmt == "openai-responses":
        response = _d(item.get("response")) if "response" in item else item
        if isinstance(response.get("model"), str):
            found["model"] = response["model"][:200]
        _openai_usage(_d(response.get("usage")), "input", "output", found)
    elif fmt == "openai-chat":
        if isinstance(item.get("model"), str):
            found["model"] = item["model"][:200]
        _openai_usage(_d(item.get("usage")), "prompt", "completion", found)
    elif fmt == "gemini":
        if isinstance(item.get("modelVersion"), str):
            found["model"] = item["modelVersion"][:200]
        usage = _d(item.get("usageMetadata"))
        if usage:
            cached = _n(usage.get("cachedContentTokenCount")) or 0
            found["input_tokens"] = max(0, (_n(usage.get("promptTokenCount")) or 0) - cached)
            found["output_tokens"] = (_n(usage.get("candidatesTokenCount")) or 0) + (
                _n(usage.get("thoughtsTokenCount")) or 0
            )
            found["cache_read_tokens"] = cached


def _openai_usage(
    usage: dict[str, Any], prompt: str, completion: str, found: dict[str, int | str | None]
) -> None:
    """OpenAI's usage (Responses: ``input``/``output``; Chat: ``prompt``/``completion``),
    cached input tokens taken out of the input, as the adapters count them."""
    if not usage:
        return
    cached = _n(_d(usage.get(f"{prompt}_tokens_details")).get("cached_tokens")) or 0
    found["input_tokens"] = max(0, (_n(usage.get(f"{prompt}_tokens")) or 0) - cached)
    found["output_tokens"] = _n(usage.get(f"{completion}_tokens")) or 0
    found["cache_read_tokens"] = cached


def total_usage(exchanges: Iterable[Exchange]) -> dict[str, Any] | None:
    """The recording's usage summed over its answers (``turns``: answers with usage)."""
    total: dict[str, Any] = {}
    turns = 0
    for exchange in exchanges:
        usage = exchange.usage
        if not usage:
            continue
        turns += 1
        for key in USAGE_TOKENS:
            value = usage.get(key)
            if isinstance(value, int):
                total[key] = total.get(key, 0) + value
        if isinstance(usage.get("model"), str):
            total["model"] = usage["model"]
    if not turns:
        return None
    total["turns"] = turns
    return total


# --- tool calls ------------------------------------------------------------------------


class ToolCall(msgspec.Struct, frozen=True):
    turn: int
    name: str
    arguments: Any


def tool_calls(exchange: Exchange) -> list[ToolCall]:
    """The tool calls a recorded answer asks the agent to make."""
    calls: list[tuple[str, Any]] = []
    fmt = exchange.format
    partial: dict[int, list[Any]] = {}
    for value in _payloads(exchange):
        for item in _objs(value if isinstance(value, list) else [value]):
            if fmt == "anthropic-messages":
                _anthropic_calls(item, calls, partial)
            elif fmt == "openai-responses":
                _responses_calls(item, calls)
            elif fmt == "openai-chat":
                _chat_calls(item, partial)
            elif fmt == "gemini":
                for candidate in item.get("candidates") or []:
                    for part in _d(_d(candidate).get("content")).get("parts") or []:
                        call = _d(_d(part).get("functionCall"))
                        if call:
                            calls.append((str(call.get("name")), call.get("args")))
    for name, given, pieces in partial.values():
        text = "".join(pieces)
        calls.append((name, (_json(text) or text) if pieces else given))
    return [ToolCall(exchange.turn, name[:200], args) for name, args in calls]


def _anthropic_calls(
    item: dict[str, Any], calls: list[tuple[str, Any]], partial: dict[int, list[Any]]
) -> None:
    kind = item.get("type")
    if kind == "message":  # a whole answer
        for block in _objs(item.get("content") or []):
            if block.get("type") in ("tool_use", "server_tool_use"):
                calls.append((str(block.get("name")), block.get("input")))
    elif kind == "content_block_start":
        block = _d(item.get("content_block"))
        if block.get("type") in ("tool_use", "server_tool_use") and isinstance(
            item.get("index"), int
        ):
            # [name, the input given whole at the start, the deltas that replace it]
            partial[item["index"]] = [str(block.get("name")), block.get("input"), []]
    elif kind == "content_block_delta":
        delta = _d(item.get("delta"))
        entry = partial.get(item.get("index"))  # type: ignore[arg-type]
        if entry is not None and isinstance(delta.get("partial_json"), str):
            entry[2].append(delta["partial_json"])


def _responses_calls(item: dict[str, Any], calls: list[tuple[str, Any]]) -> None:
    kind = item.get("type")
    items: list[Any] = []
    if kind == "response.output_item.done":
        items = [item.get("item")]
    elif "output" in item and "type" not in item:  # a whole (non-streamed) response
        items = list(item.get("output") or [])
    for entry in _objs(items):
        if entry.get("type") == "function_call":
            args = entry.get("arguments")
            calls.append((str(entry.get("name")), _json(args) if isinstance(args, str) else args))
        elif entry.get("type") == "custom_tool_call":
            calls.append((str(entry.get("name")), entry.get("input")))
        elif entry.get("type") == "local_shell_call":
            calls.append(("local_shell", _d(entry.get("action"))))


def _chat_calls(item: dict[str, Any], partial: dict[int, list[Any]]) -> None:
    for choice in _objs(item.get("choices") or []):
        message = _d(choice.get("delta")) or _d(choice.get("message"))
        for call in _objs(message.get("tool_calls") or []):
            function = _d(call.get("function"))
            index = call.get("index", len(partial))
            index = index if isinstance(index, int) else len(partial)
            entry = partial.setdefault(index, ["", None, []])
            if isinstance(function.get("name"), str):
                entry[0] = function["name"]
            if isinstance(function.get("arguments"), str):
                entry[2].append(function["arguments"])


_COMMAND_KEYS = ("command", "cmd", "script")
_PATH_KEYS = (
    "file_path",
    "filePath",
    "path",
    "notebook_path",
    "absolute_path",
    "dir_path",
    "directory",
    "workdir",
    "cwd",
)
_PATCH_PATH = re.compile(r"^\*\*\* (?:Add|Update|Delete) File: (.+)$", re.MULTILINE)


def touches(calls: Iterable[ToolCall]) -> tuple[list[str], list[str]]:
    """Every shell command and every file path the calls name, in order, once each."""
    commands, paths, _others = what_calls_do(calls)
    return commands, paths


def what_calls_do(calls: Iterable[ToolCall]) -> tuple[list[str], list[str], list[str]]:
    """The shell commands and file paths the calls name, and every other call as
    ``described`` (a web fetch, a tool we do not know): nothing a recording asks an
    agent to do goes unlisted."""
    commands: dict[str, None] = {}
    paths: dict[str, None] = {}
    others: dict[str, None] = {}
    for call in calls:
        before = len(commands) + len(paths)
        _touches(call, commands, paths)
        if len(commands) + len(paths) == before:
            others[described(call)] = None
    return list(commands), list(paths), list(others)


def described(call: ToolCall) -> str:
    """One tool call as ``name {arguments}``: what dry-run lists for every call."""
    args = call.arguments
    shown = args if isinstance(args, str) else json.dumps(args, sort_keys=True, ensure_ascii=False)
    return f"{call.name} {shown}"


def _touches(call: ToolCall, commands: dict[str, None], paths: dict[str, None]) -> None:
    args = call.arguments
    if isinstance(args, str):  # a freeform tool (codex's apply_patch)
        for match in _PATCH_PATH.finditer(args):
            paths[match.group(1).strip()] = None
        return
    args = _d(args)
    for key in _COMMAND_KEYS:
        value = args.get(key)
        if isinstance(value, list):
            value = " ".join(str(v) for v in value)
        if isinstance(value, str) and value:
            commands[value] = None
    for key in _PATH_KEYS:
        value = args.get(key)
        if isinstance(value, str) and value:
            paths[value] = None
    for value in args.values():
        if isinstance(value, str) and _PATCH_PATH.search(value):
            for match in _PATCH_PATH.finditer(value):
                paths[match.group(1).strip()] = None


# --- the conversation a request carries ------------------------------------------------

# Per-run context a CLI adds to its messages (date, environment, reminders): not
# conversation, and it differs between any two runs.
_CONTEXT_BLOCKS = re.compile(
    r"<(system-reminder|environment_context|user_instructions)>.*?</\1>", re.DOTALL
)
# What differs between two runs of the same commands: timestamps, times of day,
# durations ("passed in 0.12s") and ls-style modification times (a fresh checkout's
# files are all "now"). Masked everywhere.
_TIMES = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} +(?:\d{1,2}:\d{2}|\d{4})\b"
    r"|(?<![\w:.])\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\b"
    r"|\b\d+(?:\.\d+)?\s?(?:ms|s|sec|secs|seconds|min|minutes)\b"
)
# Dates: masked only in what the CLI writes (its context says today's date), never in
# a tool's result, where a changed date is a change ("version: 2026-02-01").
_DATES = re.compile(
    r"\b\d{4}-\d{2}-\d{2}\b"
    r"|\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,? (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct"
    r"|Nov|Dec)[a-z]* \d{1,2},? \d{4}\b"
)


# What a CLI's own tools report that differs on every run of the same command: gemini's
# run_shell_command ends its result with the process group it ran in, codex's
# exec_command starts it with a random chunk id.
_VOLATILE = re.compile(r"(Process Group PGID|Background PIDs|Chunk ID): [0-9a-f, ()]+")


TOOL_RESULT = "tool result:"


class Context(msgspec.Struct, frozen=True):
    """What differs between the recorded run and this one by construction: where the
    repository, the coordination files and the worktree are, and the session's name."""

    worktree: str = ""
    session: str = ""
    repo: str = ""
    coordination: str = ""

    @classmethod
    def of(cls, recording: object) -> Context:
        """The context a bundle's ``recording`` object (or ``recording.json``) names."""
        values = recording if isinstance(recording, dict) else {}
        return cls(**{k: str(values.get(k) or "")[:4096] for k in cls.__struct_fields__})


def normaliser(*contexts: Context) -> Callable[[str], str]:
    """One function that makes texts of any of ``contexts`` comparable: each context's
    paths and names (of both runs, in both texts, longest first, so that a worktree
    under the repository is replaced whole) become placeholders, per-run blocks go,
    dates become ``<date>``. A session name is replaced only as a whole word."""
    paths: dict[str, str] = {}
    names: set[str] = set()
    for context in contexts:
        for value, mark in (
            (context.worktree, "<worktree>"),
            (context.coordination, "<coordination>"),
            (context.repo, "<repo>"),
        ):
            if len(value) > 1:
                paths.setdefault(value, mark)
        if context.session:
            names.add(context.session)
    ordered = sorted(paths, key=len, reverse=True)
    word = (
        re.compile(
            r"(?<![A-Za-z0-9])(?:"
            + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
            + r")(?![A-Za-z0-9])"
        )
        if names
        else None
    )

    def normalise(text: str) -> str:
        text = _CONTEXT_BLOCKS.sub("", text)
        for value in ordered:
            text = text.replace(value, paths[value])
        if word is not None:
            text = word.sub("<session>", text)
        text = _VOLATILE.sub(r"\1: <pid>", text)
        if not text.startswith(TOOL_RESULT):
            text = _DATES.sub("<date>", text)
        return _TIMES.sub("<time>", text).strip()

    return normalise


def _text_of(value: Any) -> str:
    """A message content as text: strings, and the text of lists of parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        for key in ("text", "content", "output", "result"):
            if key in value:
                return _text_of(value[key])
        return json.dumps(value, sort_keys=True)
    return "" if value is None else json.dumps(value)


def _args(value: Any) -> str:
    if isinstance(value, str):
        parsed = _json(value)
        value = parsed if parsed is not None else value
    return json.dumps(value, sort_keys=True) if not isinstance(value, str) else value


def conversation(exchange_format: str, body: str, normalise: Callable[[str], str]) -> list[str]:
    """The conversation a request carries, one normalised line per part: what the
    agent said, what its tools returned. The system prompt, tool definitions and ids
    are left out (a CLI's own, not the conversation)."""
    data = _d(_json(body))
    parts: list[str] = []
    if exchange_format == "anthropic-messages":
        for message in _objs(data.get("messages") or []):
            role = str(message.get("role"))
            content = message.get("content")
            for piece in content if isinstance(content, list) else [content]:
                if isinstance(piece, str):
                    parts.append(f"{role}: {piece}")
                    continue
                block = _d(piece)
                kind = block.get("type")
                if kind == "text":
                    parts.append(f"{role}: {_text_of(block.get('text'))}")
                elif kind == "tool_use":
                    parts.append(f"tool call {block.get('name')}: {_args(block.get('input'))}")
                elif kind == "tool_result":
                    parts.append(f"{TOOL_RESULT} {_text_of(block.get('content'))}")
    elif exchange_format == "openai-responses":
        items = data.get("input")
        for entry in items if isinstance(items, list) else [items]:
            if isinstance(entry, str):
                parts.append(f"user: {entry}")
                continue
            item = _d(entry)
            kind = item.get("type", "message")
            if kind == "message":
                parts.append(f"{item.get('role')}: {_text_of(item.get('content'))}")
            elif kind in ("function_call", "custom_tool_call"):
                args = item.get("arguments", item.get("input"))
                parts.append(f"tool call {item.get('name')}: {_args(args)}")
            elif kind in ("function_call_output", "custom_tool_call_output"):
                parts.append(f"{TOOL_RESULT} {_text_of(item.get('output'))}")
    elif exchange_format == "openai-chat":
        for message in _objs(data.get("messages") or []):
            role = str(message.get("role"))
            if role in ("system", "developer"):
                continue
            if message.get("content"):
                label = TOOL_RESULT if role == "tool" else f"{role}:"
                parts.append(f"{label} {_text_of(message.get('content'))}")
            for call in message.get("tool_calls") or []:
                function = _d(_d(call).get("function"))
                parts.append(
                    f"tool call {function.get('name')}: {_args(function.get('arguments'))}"
                )
    elif exchange_format == "gemini":
        for content in _objs(data.get("contents") or []):
            role = str(content.get("role"))
            for part in _objs(content.get("parts") or []):
                if "text" in part:
                    parts.append(f"{role}: {_text_of(part.get('text'))}")
                elif "functionCall" in part:
                    call = _d(part["functionCall"])
                    parts.append(f"tool call {call.get('name')}: {_args(call.get('args'))}")
                elif "functionResponse" in part:
                    response = _d(part["functionResponse"])
                    parts.append(f"{TOOL_RESULT} {_args(response.get('response'))}")
    else:
        parts.append(body)
    # A part left empty by normalising (a context block alone) is no conversation.
    return [p for p in (normalise(p) for p in parts) if p and not p.endswith(":")]


def lane(exchange_format: str, method: str, path: str, body: str) -> str:
    """Requests that answer one another in order: the same endpoint and model, with or
    without tools (a CLI's side requests, titles or quota probes, run beside its
    main conversation and may interleave with it)."""
    data = _d(_json(body))
    model = data.get("model")
    if exchange_format == "gemini":
        match = re.search(r"/models/([^/:?]+)", path)
        model = match.group(1) if match else model
    tools = "tools" if data.get("tools") else "no-tools"
    return f"{method} {path.split('?', 1)[0]} {model} {tools}"


def first_difference(recorded: list[str], now: list[str]) -> str | None:
    """Where two conversations part, in a few words (None: they do not). Never their
    text: a tool result may hold anything the agent read, a key among it."""
    for index, (a, b) in enumerate(zip(recorded, now, strict=False)):
        if a != b:
            return (
                f"{_kind(a)} (part {index + 1} of the conversation) differs from the "
                f"recording ({len(b)} characters, recorded {len(a)})"
            )
    if len(recorded) != len(now):
        return (
            f"the request carries {len(now)} parts of conversation, the recording {len(recorded)}"
        )
    return None


def _kind(part: str) -> str:
    if part.startswith("tool result"):
        return "a tool result"
    if part.startswith("tool call"):
        return "a tool call"
    role = part.split(":", 1)[0]
    return f"a {role} message" if role.isalpha() and len(role) < 20 else "a message"


# --- comparing recordings --------------------------------------------------------------


def replay_outcome(
    exchanges: Sequence[Exchange] | None, divergence: object, recording: object = None
) -> str | None:
    """For an exact (offline) replay: "identical to the recording", "diverged at turn
    k", or, when the agent stopped before using every recorded turn, how far it got;
    None for a run that was not answered from a recording."""
    if isinstance(divergence, dict) and isinstance(divergence.get("turn"), int):
        return f"diverged at turn {divergence['turn']}"
    if not exchanges or not all(e.source == "recording" for e in exchanges):
        return None
    held = recording.get("replays_turns") if isinstance(recording, dict) else None
    if isinstance(held, int) and not isinstance(held, bool) and len(exchanges) < held:
        return f"stopped after {len(exchanges)} of {held} recorded turns"
    return "identical to the recording"


def first_differing_turn(
    a: Sequence[Exchange], a_recording: object, b: Sequence[Exchange], b_recording: object
) -> int | None:
    """The first turn at which two runs' model traffic differs (the conversation sent,
    normalised, or the answer given); None when it does not. Compared lane by lane
    (``lane``): a CLI's side requests may come in another order beside its main
    conversation without anything having changed."""
    normalise = normaliser(Context.of(a_recording), Context.of(b_recording))

    def lanes(run: Sequence[Exchange]) -> dict[str, list[Exchange]]:
        found: dict[str, list[Exchange]] = {}
        for x in run:
            found.setdefault(lane(x.format, x.method, x.path, x.request), []).append(x)
        return found

    def same(x: Exchange, y: Exchange) -> bool:
        return (
            x.status == y.status
            and x.events == y.events
            and x.body == y.body
            and conversation(x.format, x.request, normalise)
            == conversation(y.format, y.request, normalise)
        )

    lanes_a, lanes_b = lanes(a), lanes(b)
    turns: list[int] = []
    for key in lanes_a.keys() | lanes_b.keys():
        xs, ys = lanes_a.get(key, []), lanes_b.get(key, [])
        pairs = zip(xs, ys, strict=False)
        parted = next((min(x.turn, y.turn) for x, y in pairs if not same(x, y)), None)
        if parted is None and len(xs) != len(ys):
            parted = (xs if len(xs) > len(ys) else ys)[min(len(xs), len(ys))].turn
        if parted is not None:
            turns.append(parted)
    return min(turns) if turns else None
