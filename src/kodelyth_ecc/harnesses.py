"""Harness adapters: how each agent CLI is driven, and how its result is read back.

One small typed object per CLI says everything a worker needs of it: the program and
its version probe, the versions it was tested with, the launch template (the task
comes from ``task.md`` on stdin, never on the command line, which caps at ~128 KiB),
the non-interactive and permission flags, how a model is chosen, the environment
that makes it fail fast instead of retrying for minutes, how its provider endpoint
is set, and which structured output mode it writes. After the agent exits, the
worker's runner hands its transcript to ``read_result``, which takes the final
answer (for ``handoff.md``: no banners, no echoed prompt, no control characters) and
the usage (model, tokens, cost, turns, the agent's own session id).

Standard library only, and imported lazily: the runner imports it after its agent
exits; the CLI only when a plan is built.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from kodelyth_ecc.errors import KodelythError, UsageError
from kodelyth_ecc.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The launch templates read the task from task.md on stdin, and exec the agent (no pipe)
# so that the exit code the runner records is the agent's own, whatever shell runs it.
_STDIN = "< {task_file_sh}"


class Upstream(Record):
    """Where the session's model proxy forwards a harness's requests: the endpoint the
    user had configured in ``variable``, else the provider's ``default``. With
    ``prefixes``, only request paths starting with one of them (a custom launcher may
    speak to several providers); ``strip`` comes off the path before forwarding."""

    variable: str
    default: str
    prefixes: tuple[str, ...] = ()
    strip: str = ""
    # A settings file (under HOME) whose ``env`` block the CLI lets beat the environment.
    settings: str | None = None
    # Where one proxy serves several providers (a custom launcher): requests of these
    # wire formats also go here, a request must carry ``needs_header`` to, and only the
    # ``credentials`` headers are forwarded (never one provider's key to another).
    formats: tuple[str, ...] = ()
    needs_header: str | None = None
    credentials: tuple[str, ...] = ()
    # Where the CLI itself says its endpoint is ("opencode:<provider>": the merged config
    # ``opencode debug config`` prints), asked when the proxy starts.
    discover: str | None = None

    def base(self, environ: Mapping[str, str], cwd: str | None = None) -> str:
        configured = (
            self._discovered(environ, cwd)
            or self._from_settings(environ)
            or (environ.get(self.variable) if self.variable else None)
        )
        return (configured or self.default).rstrip("/")

    def _discovered(self, environ: Mapping[str, str], cwd: str | None) -> str | None:
        if not self.discover or not self.discover.startswith("opencode:"):
            return None
        import json

        from kodelyth_ecc.process import cmd_output

        provider = self.discover.split(":", 1)[1]
        try:
            out = cmd_output(
                "opencode", "debug", "config", cwd=cwd, env=environ, check=False, timeout=30
            )
            config = json.loads(out.stdout) if out.returncode == 0 else {}
        except (OSError, ValueError, KodelythError):  # no endpoint known: the default
            return None
        providers = config.get("provider") if isinstance(config, dict) else None
        entry = providers.get(provider) if isinstance(providers, dict) else None
        options = entry.get("options") if isinstance(entry, dict) else None
        url = options.get("baseURL") if isinstance(options, dict) else None
        return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None

    def _from_settings(self, environ: Mapping[str, str]) -> str | None:
        if self.settings is None:
            return None
        import json
        import os

        path = os.path.join(environ.get("HOME") or os.path.expanduser("~"), self.settings)
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read(1 << 20))
        except (OSError, ValueError, RecursionError):
            return None
        env = data.get("env") if isinstance(data, dict) else None
        value = env.get(self.variable) if isinstance(env, dict) else None
        good = isinstance(value, str) and value.startswith(("http://", "https://"))
        return value if good and isinstance(value, str) else None


ANTHROPIC = Upstream("ANTHROPIC_BASE_URL", "https://api.anthropic.com")
# claude reads ANTHROPIC_BASE_URL from ~/.claude/settings.json before the environment.
CLAUDE_UPSTREAM = Upstream(ANTHROPIC.variable, ANTHROPIC.default, settings=".claude/settings.json")
GEMINI = Upstream("GOOGLE_GEMINI_BASE_URL", "https://generativelanguage.googleapis.com")
OPENAI = Upstream("OPENAI_BASE_URL", "https://api.openai.com/v1", strip="/v1")


class Harness(Record):
    """One agent CLI (or ``echo``, or ``custom`` for a user's --launcher-cmd)."""

    name: str
    # The program that must be on PATH (None: nothing to find).
    program: str | None
    # The shell template; ``{model_args}`` is replaced by the model flag and its quoted
    # value (or nothing) before the usual placeholders are filled.
    command: str
    # How ``read_result`` reads the transcript: a key of _READERS, or None (plain text:
    # the template writes the handoff itself).
    output: str | None = None
    model_flag: str | None = None
    version_args: tuple[str, ...] = ("--version",)
    # The oldest version the template's flags work with, and the versions tested.
    min_version: tuple[int, ...] | None = None
    tested_versions: tuple[str, ...] = ()
    # Set for the agent unless the user set them: no update checks, no telemetry, few
    # retries (an authentication or connection failure ends the worker in seconds).
    env_defaults: tuple[tuple[str, str], ...] = ()
    # How its provider endpoint is set (for users behind a proxy or gateway).
    endpoint: str = ""
    # Whether it refuses to skip permissions as root unless IS_SANDBOX=1.
    refuses_root: bool = False
    # How the session's model proxy is put between it and its provider: the variables
    # set to the proxy's URL (plus a suffix), where the proxy forwards, and the key
    # variables an offline replay fills with a placeholder when none is set. Empty:
    # this CLI cannot be pointed at the proxy without editing the user's config.
    proxy_env: tuple[tuple[str, str], ...] = ()
    upstreams: tuple[Upstream, ...] = ()
    key_env: tuple[str, ...] = ()
    # Flags added to the launch template when proxied (``{proxy_args}``): what makes
    # the CLI use the proxy even where the user's own settings name another endpoint.
    proxy_flags: str = ""
    # Names the CLI runs its own binary by (it dispatches on argv[0]) and looks up on
    # PATH: the runner finds a link of each name to ``native_binary`` first on PATH.
    arg0_links: tuple[str, ...] = ()
    # Under --sandbox (its HOME is an empty tmpfs): the settings files copied in
    # read-only, as (``~/...`` or ``$VAR/...`` outside, path under HOME), the first found
    # for each destination; the variables naming its config dir (a path ending in "/",
    # made inside) or file, set under HOME inside when set outside (a CLI pointed at a
    # path outside fails, claude silently: docs/research/sandbox-clis.md); and flag swaps
    # in its launch template.
    sandbox_home: tuple[tuple[str, str], ...] = ()
    sandbox_vars: tuple[tuple[str, str], ...] = ()
    sandbox_flags: tuple[tuple[str, str], ...] = ()
    # How it continues one of its own conversations by the id ``usage`` recorded
    # (``agent_session_id``): the arguments put at ``{resume_args}`` in its template,
    # ``{id}`` standing for the quoted id; the message then comes on stdin instead of
    # the task. Empty: it cannot (``retry --message`` starts it afresh).
    resume_args: str = ""

    @property
    def records(self) -> bool:
        """Whether its model traffic goes through the session's proxy by its fixed
        variables (codex and opencode are pointed by ``proxy_point`` from their config)."""
        return bool(self.proxy_env)

    @property
    def template(self) -> str:
        """The launch template without a model choice."""
        return self.launch_template()

    def launch_template(
        self, model: str | None = None, proxy_flags: str = "", *, sandboxed: bool = False
    ) -> str:
        """The template with ``--model``, the flags that point the CLI at the session's
        proxy (``ProxyPoint.flags``) and, in the sandbox, its ``sandbox_flags``."""
        command = self.command.replace("{proxy_args}", proxy_flags).replace("{resume_args}", "")
        for before, after in self.sandbox_flags if sandboxed else ():
            command = command.replace(before, after)
        args = f" {self.model_flag} {_literal(model)}" if model and self.model_flag else ""
        return command.replace("{model_args}", args)

    def resume_template(
        self, agent_session: str, message_file: str, model: str | None = None, proxy_flags: str = ""
    ) -> str | None:
        """The launch template that continues the conversation ``agent_session`` with the
        message in ``message_file`` on stdin (never on the command line), or None when
        this CLI cannot, or the id is not one a CLI gives (it goes on a command line)."""
        if not self.resume_args or not AGENT_SESSION.fullmatch(agent_session):
            return None
        resume = self.resume_args.replace("{id}", _literal(agent_session))
        resumed = self._replace(command=self.command.replace("{resume_args}", resume))
        template = resumed.launch_template(model, proxy_flags)
        if not template.endswith(_STDIN):  # every adapter's task comes last, on stdin
            return None
        return template[: -len(_STDIN)] + "< " + _literal(message_file)


def _literal(value: str) -> str:
    """``value`` shell-quoted, as a template's literal text (its braces doubled: the
    result is filled in as a template after this)."""
    from kodelyth_ecc.launchers import shell_quote

    return shell_quote(value).replace("{", "{{").replace("}", "}}")


# What an agent session id may look like to go on a command line (claude's, gemini's and
# codex's are UUIDs, opencode's "ses_" and letters): anything else is not resumed.
AGENT_SESSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
CUSTOM = "custom"
ECHO_TEMPLATE = "printf 'demo worker %s\\n' {worker_slug_sh} | tee -a {handoff_file_sh}"

HARNESSES: Mapping[str, Harness] = {
    h.name: h
    for h in (
        Harness(
            "claude",
            "claude",
            # stream-json needs --verbose; with no prompt argument -p reads stdin.
            "exec claude --print --output-format stream-json --verbose"
            " --dangerously-skip-permissions{resume_args}{model_args}{proxy_args} " + _STDIN,
            output="claude",
            model_flag="--model",
            min_version=(2, 0, 0),
            tested_versions=("2.1.197",),
            env_defaults=(
                ("DISABLE_AUTOUPDATER", "1"),
                ("DISABLE_TELEMETRY", "1"),
                ("DISABLE_ERROR_REPORTING", "1"),
                ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
                # Its default retries a 401 or a dead endpoint for minutes, silently.
                ("CLAUDE_CODE_MAX_RETRIES", "2"),
            ),
            endpoint="ANTHROPIC_BASE_URL (and ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN)",
            refuses_root=True,
            proxy_env=(("ANTHROPIC_BASE_URL", ""),),
            upstreams=(CLAUDE_UPSTREAM,),
            key_env=("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
            # An ANTHROPIC_BASE_URL in the user's ~/.claude/settings.json beats the
            # environment; --settings beats both (docs/research/proxy-endpoints.md).
            proxy_flags=' --settings "{{\\"env\\":{{\\"ANTHROPIC_BASE_URL\\":'
            '\\"$KODELYTH_PROXY_URL\\"}}}}"',
            # Its settings, never .credentials.json (a key comes through the environment).
            sandbox_home=(
                ("$CLAUDE_CONFIG_DIR/settings.json", ".claude/settings.json"),
                ("~/.claude/settings.json", ".claude/settings.json"),
            ),
            sandbox_vars=(("CLAUDE_CONFIG_DIR", ".claude/"),),
            # The same session id goes on (--fork-session would make a new one).
            resume_args=" --resume {id}",
        ),
        Harness(
            "codex",
            "codex",
            # --full-auto was removed in 0.147; `exec` never asks for approval. Under
            # workspace-write the worktree is writable, .git is not (the diff is kept
            # all the same: export records uncommitted work).
            # Without the -c, a dead endpoint keeps it "waiting for network" forever; with
            # it, it gives up after 5 reconnects (~25 s, measured with 0.171.0).
            "exec codex exec --json --color never --sandbox workspace-write"
            " -c features.unbounded_connection_retries=false{model_args}{proxy_args}"
            "{resume_args} - " + _STDIN,
            output="codex",
            model_flag="--model",
            # With Debian's bwrap at /usr/bin/bwrap (0.8.0: no --argv0) its shell tool
            # execs "codex-linux-sandbox" by name and fails, silently (docs/research/
            # sandbox.md): a link of that name to its native binary fixes it.
            arg0_links=("codex-linux-sandbox",),
            min_version=(0, 147, 0),
            tested_versions=("0.171.0",),
            # Its config, never auth.json. Inside our sandbox its own would make .git
            # read-only (no commits) and needs nested user namespaces: ours is the fence.
            sandbox_home=(
                ("$CODEX_HOME/config.toml", ".codex/config.toml"),
                ("~/.codex/config.toml", ".codex/config.toml"),
            ),
            sandbox_vars=(("CODEX_HOME", ".codex/"),),
            sandbox_flags=(("--sandbox workspace-write", "--sandbox danger-full-access"),),
            # `exec`'s own flags stay before the subcommand (0.171.0 takes them there);
            # `-` after the id reads the message from stdin.
            resume_args=" resume {id}",
            endpoint="a [model_providers.X] entry (base_url .../v1, env_key, wire_api = "
            '"responses") in $CODEX_HOME/config.toml; stream_max_retries = 0 and '
            "[features] unbounded_connection_retries = false fail fast; codex ignores "
            "OPENAI_BASE_URL",
        ),
        Harness(
            "opencode",
            "opencode",
            # --print-logs at ERROR: a failed request says so on stderr (the transcript).
            "exec opencode run --format json --print-logs --log-level ERROR{resume_args}"
            "{model_args} " + _STDIN,
            output="opencode",
            model_flag="--model",
            min_version=(1, 0, 0),
            tested_versions=("1.18.33",),
            # Its config, never ~/.local/share/opencode/auth.json.
            sandbox_home=(
                ("$OPENCODE_CONFIG", ".config/opencode/kodelyth-sandbox.json"),
                ("$XDG_CONFIG_HOME/opencode/opencode.json", ".config/opencode/opencode.json"),
                ("$XDG_CONFIG_HOME/opencode/opencode.jsonc", ".config/opencode/opencode.jsonc"),
                ("~/.config/opencode/opencode.json", ".config/opencode/opencode.json"),
                ("~/.config/opencode/opencode.jsonc", ".config/opencode/opencode.jsonc"),
            ),
            sandbox_vars=(("OPENCODE_CONFIG", ".config/opencode/kodelyth-sandbox.json"),),
            resume_args=" --session {id}",
            env_defaults=(
                ("NO_COLOR", "1"),
                ("OPENCODE_DISABLE_AUTOUPDATE", "1"),
                ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
            ),
            endpoint='a provider with options.baseURL and apiKey "{env:VAR}" in opencode.json '
            "(OPENCODE_CONFIG, or $XDG_CONFIG_HOME/opencode/opencode.json); -m provider/model",
        ),
        Harness(
            "gemini",
            "gemini",
            # --prompt '' makes it headless; the task comes on stdin (gemini joins them).
            "exec gemini --skip-trust --approval-mode yolo{resume_args}{model_args}"
            " --output-format stream-json --prompt '' " + _STDIN,
            output="gemini",
            model_flag="--model",
            min_version=(0, 30, 0),
            tested_versions=("0.61.0",),
            sandbox_home=(
                ("$GEMINI_CLI_HOME/.gemini/settings.json", ".gemini/settings.json"),
                ("~/.gemini/settings.json", ".gemini/settings.json"),
            ),
            sandbox_vars=(("GEMINI_CLI_HOME", ""),),
            # 0.61.0 takes "latest", an index or the session's UUID.
            resume_args=" --resume {id}",
            env_defaults=(
                # One process: a relaunched child would outlive a killed parent.
                ("GEMINI_CLI_NO_RELAUNCH", "true"),
                ("NO_COLOR", "1"),
            ),
            endpoint="GOOGLE_GEMINI_BASE_URL and GEMINI_API_KEY, with "
            'security.auth.selectedType "gemini-api-key" and general.maxAttempts in '
            "~/.gemini/settings.json (docs/harnesses/gemini.md)",
            proxy_env=(("GOOGLE_GEMINI_BASE_URL", ""),),
            upstreams=(GEMINI,),
            key_env=("GEMINI_API_KEY",),
        ),
        Harness("echo", None, ECHO_TEMPLATE, version_args=()),
    )
}
DEFAULT_HARNESS = "claude"
# A user's --launcher-cmd: whatever it runs finds the proxy under each provider's usual
# variable (and KODELYTH_PROXY_URL), and the proxy routes by request path.
CUSTOM_ADAPTER = Harness(
    CUSTOM,
    None,
    "",
    proxy_env=(
        ("ANTHROPIC_BASE_URL", ""),
        ("OPENAI_BASE_URL", "/v1"),
        ("GOOGLE_GEMINI_BASE_URL", ""),
    ),
    upstreams=(
        Upstream(
            ANTHROPIC.variable,
            ANTHROPIC.default,
            ("/v1/",),
            needs_header="anthropic-version",
            credentials=("x-api-key", "authorization"),
        ),
        Upstream(
            GEMINI.variable,
            GEMINI.default,
            ("/v1beta/", "/v1alpha/", "/upload/"),
            formats=("gemini",),
            credentials=("x-goog-api-key", "authorization"),
        ),
        Upstream(
            OPENAI.variable,
            OPENAI.default,
            ("/v1/",),
            OPENAI.strip,
            credentials=("authorization", "openai-organization", "openai-project"),
        ),
    ),
)


# What an offline replay gives a CLI that wants a key and finds none: the proxy answers
# from the recording, so no key is needed, and it never forwards this one.
OFFLINE_KEY = "kodelyth-offline-replay"


class ProxyPoint(Record):
    """How one session's workers are pointed at their port of the recording proxy:
    ``env`` entries (variable, a path into the JSON value it holds, or () for the whole
    value, and the suffix after the proxy's URL), launch ``flags`` (a template fragment
    for ``{proxy_args}``), where the proxy forwards, and the key variables an offline
    replay fills with a placeholder."""

    env: tuple[tuple[str, tuple[str, ...], str], ...]
    upstreams: tuple[Upstream, ...]
    flags: str = ""
    key_env: tuple[str, ...] = ()


def _static_point(adapter: Harness) -> ProxyPoint:
    return ProxyPoint(
        tuple((name, (), suffix) for name, suffix in adapter.proxy_env),
        adapter.upstreams,
        adapter.proxy_flags,
        adapter.key_env,
    )


# A provider or model id that can go into a flag or a JSON path as it is.
_SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
OPENCODE_DEFAULTS = {
    "anthropic": "https://api.anthropic.com/v1",
    "openai": "https://api.openai.com/v1",
}


def proxy_point(
    harness: str | None, model: str | None, environ: Mapping[str, str]
) -> ProxyPoint | str:
    """How ``harness``'s workers are pointed at the proxy, or why they cannot be."""
    if harness in (None, CUSTOM):
        return _static_point(CUSTOM_ADAPTER)
    adapter = HARNESSES.get(harness)
    if adapter is None or harness == "echo":
        return "echo workers make no model requests"
    if adapter.records:
        return _static_point(adapter)
    if harness == "opencode":
        return _opencode_point(model)
    if harness == "codex":
        return _codex_point(environ)
    return f"{harness} cannot be pointed at it"


def _opencode_point(model: str | None) -> ProxyPoint | str:
    """opencode: ``OPENCODE_CONFIG_CONTENT`` overlays the provider's ``baseURL`` (deep
    merged over the user's config; docs/research/proxy-endpoints.md). The provider is
    the one ``--model provider/model`` names."""
    provider = (model or "").split("/", 1)[0] if model and "/" in model else None
    if provider is None or not _SAFE_ID.fullmatch(provider):
        return "opencode needs --model provider/model to know which provider to record"
    upstream = Upstream(
        "ANTHROPIC_BASE_URL" if provider == "anthropic" else "",
        OPENCODE_DEFAULTS.get(provider, ""),
        strip="/v1",
        discover=f"opencode:{provider}",
    )
    path = ("provider", provider, "options", "baseURL")
    return ProxyPoint((("OPENCODE_CONFIG_CONTENT", path, "/v1"),), (upstream,))


_UNREADABLE = object()

# The codex npm package's native binary, per machine: its platform package and target.
_CODEX_PLATFORMS = {
    "x86_64": ("codex-linux-x64", "x86_64-unknown-linux-musl"),
    "aarch64": ("codex-linux-arm64", "aarch64-unknown-linux-musl"),
}


def native_binary(program: str) -> str | None:
    """The native executable behind ``program`` on PATH: itself when it is one (an ELF
    file), else, for the codex npm package's node launcher, the binary its platform
    package ships (beside it in node_modules, or nested in it)."""
    import os
    import platform

    real = os.path.realpath(program)
    try:
        with open(real, "rb") as fh:
            if fh.read(4) == b"\x7fELF":
                return real
    except OSError:
        return None
    found = _CODEX_PLATFORMS.get(platform.machine())
    if found is None:
        return None
    package, triple = found
    root = os.path.dirname(os.path.dirname(real))  # .../@openai/codex
    for vendor in (
        os.path.join(os.path.dirname(root), package, "vendor"),
        os.path.join(root, "node_modules", "@openai", package, "vendor"),
        os.path.join(root, "vendor"),
    ):
        candidate = os.path.join(vendor, triple, "bin", "codex")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def codex_config(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The user's ``$CODEX_HOME/config.toml`` (None: unreadable, or no TOML reader: the
    standard library has one from Python 3.11)."""
    import importlib
    import os

    try:
        tomllib = importlib.import_module("tomllib")
    except ImportError:  # Python 3.10
        return None
    home = environ.get("CODEX_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".codex"
    )
    try:
        with open(os.path.join(home, "config.toml"), "rb") as fh:
            data = tomllib.loads(fh.read(1 << 20).decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {"model_provider": _UNREADABLE}
    return data if isinstance(data, dict) else None


def _codex_point(environ: Mapping[str, str]) -> ProxyPoint | str:
    """codex: ``-c`` overrides only the selected provider's ``base_url`` (an inline table,
    deep-merged, keeps its key and wire settings), or ``openai_base_url`` for the
    built-in provider (docs/research/proxy-endpoints.md)."""
    config = codex_config(environ)
    if config is None:
        return "reading codex's config.toml needs Python 3.11 or later (tomllib)"
    if config.get("model_provider") is _UNREADABLE:
        return "codex's config.toml is not readable TOML: fix it, or pass --no-record"
    provider = config.get("model_provider")
    if provider is None or provider == "openai":
        base = config.get("openai_base_url")
        upstream = Upstream(
            "", base if isinstance(base, str) else "https://api.openai.com/v1", strip="/v1"
        )
        flags = ' -c "openai_base_url=\\"$KODELYTH_PROXY_URL/v1\\""'
        return ProxyPoint((), (upstream,), flags, ("CODEX_API_KEY",))
    providers = config.get("model_providers")
    entry = providers.get(provider) if isinstance(providers, dict) else None
    base = entry.get("base_url") if isinstance(entry, dict) else None
    if (
        not isinstance(provider, str)
        or not _SAFE_ID.fullmatch(provider)
        or not isinstance(base, str)
    ):
        return "codex's model_provider has no base_url kodelyth-ecc can read in config.toml"
    key = entry.get("env_key") if isinstance(entry, dict) else None
    flags = (
        ' -c "model_providers={{\\"' + provider + '\\"={{base_url=\\"$KODELYTH_PROXY_URL/v1\\"}}}}"'
    )
    keys = (key,) if isinstance(key, str) and _SAFE_ID.fullmatch(key) else ()
    return ProxyPoint((), (Upstream("", base, strip="/v1"),), flags, keys)


# Harnesses that used to exist: bundles naming them still import; replaying them asks
# for --harness.
REMOVED = {
    "windsurf": "there is no windsurf command-line agent (`windsurf chat` belongs to the "
    "editor and returns at once)",
}


def get_harness(name: str) -> Harness:
    harness = HARNESSES.get(name)
    if harness is not None:
        return harness
    choices = ", ".join(HARNESSES)
    if name in REMOVED:
        raise UsageError(f"the {name} harness was removed: {REMOVED[name]}; use one of {choices}")
    raise UsageError(f"unknown harness {name[:40]!r}: use one of {choices}")


def parse_version(text: str) -> tuple[int, ...] | None:
    """The first dotted version number in a ``--version`` output."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


# --- results ---------------------------------------------------------------------------


class AgentResult(Record):
    """What a structured-output run left: its final answer, usage and failure reason."""

    answer: str | None
    usage: dict[str, Any] | None
    reason: str | None = None


# What is read of a transcript's end: structured output is JSON lines, the result last.
MAX_TRANSCRIPT_READ = 64 * 1024 * 1024
_MAX_LINE = 16 * 1024 * 1024


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a transcript, one a line (a pty writes \\r\\n; other lines,
    such as a CLI's warnings, are skipped)."""
    import json  # only once an agent has exited: not on the CLI's start-up path

    # "\n" only: str.splitlines() also cuts at U+0085 and U+2028, which JSON may hold raw.
    for raw in text.split("\n"):
        line = raw.strip()
        # Every event of every reader has a "type": other lines are not worth decoding.
        if not line.startswith("{") or len(line) > _MAX_LINE or '"type"' not in line:
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            yield value


def _obj(value: object, default: dict[str, Any] | None = None) -> dict[str, Any]:
    """``value`` if it is a JSON object, else ``default`` (an empty one)."""
    if isinstance(value, dict):
        return value
    return default if default is not None else {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _num(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e12:
        return float(value)  # NaN and Infinity fail the comparison
    return None


def _str(value: object) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


def _usage(**values: object) -> dict[str, Any]:
    from kodelyth_ecc.statusfile import USAGE_KEYS

    return {key: values.get(key) for key in USAGE_KEYS}


def _claude(events: Iterable[dict[str, Any]]) -> AgentResult:
    model = session = None
    result: dict[str, Any] | None = None
    for event in events:
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "init":
            model = _str(event.get("model")) or model
            session = _str(event.get("session_id")) or session
        elif kind == "assistant":
            message = _obj(event.get("message"))
            named = _str(message.get("model"))
            # claude labels the error message it makes up itself "<synthetic>".
            if named and not named.startswith("<"):
                model = named
        elif kind == "result":
            result = event
    if result is None:
        # Killed or crashed before its result: a mid-run message is no final answer.
        return AgentResult(None, None, "claude ended without a result")
    usage = _obj(result.get("usage"))
    answer = result.get("result") if isinstance(result.get("result"), str) else None
    reason = None
    # A failure ends with subtype "success" too: is_error says it (claude 2.1.197).
    if result.get("is_error"):
        reason = _str(answer) or "claude reported an error"
        answer = None
    per_model = _obj(result.get("modelUsage"))
    model = next((_str(name) for name in per_model), None) or model
    return AgentResult(
        answer,
        _usage(
            model=model,
            input_tokens=_int(usage.get("input_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            cache_read_tokens=_int(usage.get("cache_read_input_tokens")),
            cache_write_tokens=_int(usage.get("cache_creation_input_tokens")),
            cost_usd=_num(result.get("total_cost_usd")),
            turns=_int(result.get("num_turns")),
            agent_session_id=_str(result.get("session_id")) or session,
        ),
        reason,
    )


def _codex(events: Iterable[dict[str, Any]]) -> AgentResult:
    answer = session = reason = None
    totals = {"input": 0, "cached": 0, "write": 0, "output": 0}
    turns = 0
    for event in events:
        kind = event.get("type")
        if kind == "thread.started":
            session = _str(event.get("thread_id"))
        elif kind == "item.completed":
            item = event.get("item")
            if isinstance(item, dict) and item.get("type") == "agent_message":
                text = item.get("text")
                answer = text if isinstance(text, str) else answer
        elif kind == "turn.completed":
            turns += 1
            usage = event.get("usage")
            if isinstance(usage, dict):
                totals["input"] += _int(usage.get("input_tokens")) or 0
                totals["cached"] += _int(usage.get("cached_input_tokens")) or 0
                totals["write"] += _int(usage.get("cache_write_input_tokens")) or 0
                totals["output"] += _int(usage.get("output_tokens")) or 0
        elif kind in ("turn.failed", "error"):
            error = _obj(event.get("error"), event)
            reason = _str(error.get("message")) or "codex reported an error"
    return AgentResult(
        answer if turns and reason is None else None,  # a failed turn has no final answer
        _usage(
            input_tokens=max(0, totals["input"] - totals["cached"]) if turns else None,
            output_tokens=totals["output"] if turns else None,
            cache_read_tokens=totals["cached"] if turns else None,
            cache_write_tokens=totals["write"] if turns else None,
            turns=turns or None,
            agent_session_id=session,
        ),
        reason,
    )


def _opencode(events: Iterable[dict[str, Any]]) -> AgentResult:
    """``run --format json``: ``text`` parts, one ``step_finish`` per model turn (tokens
    and cost), ``error``. The answer is the text of the last message that finished with
    reason ``stop`` (verified with opencode 1.18.33, docs/harnesses/opencode.md)."""
    texts: list[tuple[object, str]] = []
    session = reason = None
    last_stop: object = None
    sums = {"input": 0, "output": 0, "read": 0, "write": 0}
    cost = 0.0
    steps = 0
    for event in events:
        kind = event.get("type")
        session = session or _str(event.get("sessionID"))
        part = _obj(event.get("part"))
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append((part.get("messageID"), part["text"]))
        elif kind == "step_finish":
            steps += 1
            if part.get("reason") == "stop":
                last_stop = part.get("messageID")
            tokens = _obj(part.get("tokens"))
            cache = _obj(tokens.get("cache"))
            sums["input"] += _int(tokens.get("input")) or 0
            sums["output"] += _int(tokens.get("output")) or 0
            sums["read"] += _int(cache.get("read")) or 0
            sums["write"] += _int(cache.get("write")) or 0
            cost += _num(part.get("cost")) or 0.0
        elif kind == "error":
            error = _obj(event.get("error"))
            data = _obj(error.get("data"))
            reason = _str(data.get("message")) or _str(error.get("name")) or "opencode error"
    answer = "".join(t for m, t in texts if m == last_stop) if last_stop is not None else None
    return AgentResult(
        answer,
        _usage(
            input_tokens=sums["input"] if steps else None,
            output_tokens=sums["output"] if steps else None,
            cache_read_tokens=sums["read"] if steps else None,
            cache_write_tokens=sums["write"] if steps else None,
            cost_usd=cost if steps else None,
            turns=steps or None,
            agent_session_id=session,
        ),
        reason,
    )


def _gemini(events: Iterable[dict[str, Any]]) -> AgentResult:
    """``--output-format stream-json``: ``init`` (session_id, model), assistant
    ``message`` deltas, ``tool_use``/``tool_result``, ``result`` (status, stats with
    per-model token counts). The answer is the assistant text after the last tool event
    (verified with gemini-cli 0.61.0, docs/harnesses/gemini.md)."""
    pieces: list[str] = []
    session = model = reason = None
    stats: dict[str, Any] = {}
    succeeded = False
    for event in events:
        kind = event.get("type")
        if kind == "init":
            session = _str(event.get("session_id"))
            model = _str(event.get("model"))
        elif kind == "message" and event.get("role") == "assistant":
            content = event.get("content")
            if isinstance(content, str):
                pieces.append(content)
        elif kind in ("tool_use", "tool_result"):
            pieces = []  # text before a tool call belongs to an earlier turn
        elif kind == "result":
            stats = _obj(event.get("stats"))
            succeeded = event.get("status") in (None, "success")
            if not succeeded:
                error = _obj(event.get("error"))
                reason = _str(error.get("message")) or "gemini reported an error"
    models = _obj(stats.get("models"))
    totals = {"input": 0, "cached": 0, "output": 0}
    for name, entry in models.items():
        per_model = _obj(entry)
        model = model if model and model != "auto" else _str(name)
        totals["input"] += _int(per_model.get("input_tokens")) or 0
        totals["cached"] += _int(per_model.get("cached")) or 0
        totals["output"] += _int(per_model.get("output_tokens")) or 0
    if not models:  # older releases: the totals at the top of stats
        totals = {
            "input": _int(stats.get("input_tokens")) or 0,
            "cached": _int(stats.get("cached")) or 0,
            "output": _int(stats.get("output_tokens")) or 0,
        }
    counted = bool(models) or bool(stats)
    return AgentResult(
        ("".join(pieces) or None) if succeeded else None,  # only what its result closed
        _usage(
            model=model,
            input_tokens=max(0, totals["input"] - totals["cached"]) if counted else None,
            output_tokens=totals["output"] if counted else None,
            cache_read_tokens=totals["cached"] if counted else None,
            agent_session_id=session,
        ),
        reason,
    )


_READERS = {"claude": _claude, "codex": _codex, "opencode": _opencode, "gemini": _gemini}


def read_result(
    harness: str, transcript: str, cli: str | None = None, model: str | None = None
) -> AgentResult | None:
    """The final answer and usage in a structured-output transcript (None: the harness
    writes plain text). ``cli`` ("claude 2.1.197") goes into the usage, and ``model``
    (the one asked for) where the CLI does not say which answered (codex, opencode)."""
    adapter = HARNESSES.get(harness)
    if adapter is None or adapter.output is None:
        return None
    result = _READERS[adapter.output](json_lines(transcript))
    if result.usage is not None:
        if cli:
            result.usage["cli"] = cli[:200]
        if model and not result.usage.get("model"):
            result.usage["model"] = model[:200]
    return result
