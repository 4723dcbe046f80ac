"""The secret detection rules and the scanner behind ``sanitize``.

Written from the issuers' documented token formats (prefixes, lengths, alphabets),
not copied from another scanner. Speed comes from never running a rule's regex
over the whole text: the scanner looks for each rule's literal anchor (a prefix
such as ``ghp_``, or a keyword such as ``password`` in the lower-cased text) with
``bytes.find``, which runs at memory speed, and runs the rule only where an anchor
is. Every pattern is bounded and starts with a boundary check, so a hostile text
full of anchors costs a few steps per anchor, never a rescan.

Entropy and character classes are checks on a candidate (a secret-named variable's
value, a token without a fixed prefix), never a detector on their own: commit SHAs,
UUIDs and checksums are random too.

Work happens on UTF-8 bytes: anchors and rules are ASCII, ``bytes.lower`` keeps
offsets, and a text with a few non-ASCII characters is not scanned at 2 or 4 bytes
per character.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import itertools
import json
import math
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# Bumped whenever a rule changes what it matches; recorded in meta.sanitized.
RULES_VERSION = "3"
FINGERPRINT_LENGTH = 12

PLACEHOLDER_RE = re.compile(rb"\[REDACTED:[a-z0-9-]{1,64}:[0-9a-f]{12}\]")
PLACEHOLDER_TEXT_RE = re.compile(r"\[REDACTED:[a-z0-9-]{1,64}:[0-9a-f]{12}\]")

# Priorities when two matches overlap with the same extent: a provider's own format
# names the secret better than a structural rule, which beats a secret-named variable.
PROVIDER, STRUCTURAL, CONTEXT = 3, 2, 1

# (start, end, rule, priority, line prefix kept on the lines of a multi-line secret)
Candidate = tuple[int, int, str, int, bytes]


def fingerprint(secret: bytes) -> str:
    """The same secret gets the same placeholder everywhere; nothing of it survives."""
    return hashlib.sha256(secret).hexdigest()[:FINGERPRINT_LENGTH]


def placeholder(rule: str, fp: str) -> bytes:
    return b"[REDACTED:%s:%s]" % (rule.encode("ascii"), fp.encode("ascii"))


def _trie(words: list[bytes]) -> bytes:
    """A regex matching any of ``words``, shaped as a trie so that sre tries one literal
    per byte instead of every word."""
    groups: dict[bytes, list[bytes]] = {}
    ends = False
    for word in words:
        if word:
            groups.setdefault(word[:1], []).append(word[1:])
        else:
            ends = True
    branches = [re.escape(head) + _trie(rest) for head, rest in sorted(groups.items())]
    if not branches:
        return b""
    body = branches[0] if len(branches) == 1 else b"(?:" + b"|".join(branches) + b")"
    return b"(?:" + body + b")?" if ends else body


# --- checks on candidates ------------------------------------------------------------


def entropy(value: bytes) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


_CLASS_BYTES = (
    bytes(range(97, 123)),
    bytes(range(65, 91)),
    bytes(range(48, 58)),
    bytes(b for b in range(256) if not (48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122)
          and b not in b"_-."),
)  # fmt: skip
_NOT_CLASS = tuple(bytes(b for b in range(256) if b not in kept) for kept in _CLASS_BYTES)


def char_classes(value: bytes) -> int:
    """Lower, upper, digit, and symbols other than the separators ``_ - .``."""
    # Each class is what is left when every other byte is deleted (C speed).
    return sum(1 for others in _NOT_CLASS if value.translate(None, others))


_DUMMY_WORDS = (
    b"example", b"placeholder", b"changeme", b"change_me", b"change-me", b"dummy", b"redacted",
    b"your_", b"your-", b"yourtoken", b"yourkey", b"yourpass", b"xxxx", b"****", b"....",
    b"<", b">", b"${", b"{{", b"$(", b"%(", b"secret_here", b"token_here", b"key_here",
    b"insert", b"replace_me", b"replaceme", b"fake", b"sample", b"notreal", b"not_real",
    b"\xe2\x80\xa6", b"...", b"abcdefgh", b"01234567", b"12345678",
)  # fmt: skip
_LITERALS = frozenset(
    b"none null nil undefined true false yes no on off empty default required optional "
    b"secret password passwd token string str value changeit test testing admin".split()
)
_REPEAT_RUN = re.compile(rb"(.)\1{5}")
_DUMMY = re.compile(_trie(list(_DUMMY_WORDS)))


def is_dummy(value: bytes) -> bool:
    """Documentation examples and placeholders: ``EXAMPLE``, ``xxxx``, ``<your-key>``."""
    low = value.lower()
    if low in _LITERALS or low.startswith((b"{", b"%", b"$")) or _DUMMY.search(low):
        return True
    return _REPEAT_RUN.search(value) is not None


_REFERENCE = re.compile(
    rb"(?:\$[{(]?[A-Za-z_]|%[A-Za-z_][A-Za-z0-9_]*%|os\.|process\.env|env\.|getenv|environ"
    rb"|ENV\[|secrets\.|vars\.|vault:|ref\+|arn:aws:|!vault|!Ref|data\.|settings\.|config\."
    rb"|self\.|this\.|@Value|keyring|params\.|args\.|opts\.|options\.)",
    re.IGNORECASE,
)
_CODE_CHARS = re.compile(rb"[()\[\]{}\s]")
_DOTTED_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_PATH_LIKE = re.compile(rb"(?:~|\.{1,2})?/(?:[\w.@-]+/)*[\w.@-]*|[A-Za-z]:\\[\w.\\ -]*")
_FILE_NAME = re.compile(
    rb"[\w.-]+\.(?:pem|key|crt|cer|p12|pfx|json|ya?ml|toml|ini|cfg|conf|env|txt|gpg|asc|jks)",
    re.IGNORECASE,
)
_URL_VALUE = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://")
_HEX_OR_UUID = re.compile(
    rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{16,}"
)


def _random_part(value: bytes) -> bool:
    return any(
        len(part) >= 16 and char_classes(part) >= 3 and entropy(part) >= 3.5
        for part in value.split(b".")
    )


def _pathish(value: bytes) -> bool:
    """A file path, not a base64 secret that happens to contain slashes."""
    if not _PATH_LIKE.fullmatch(value):
        return False
    return all(
        len(part) < 16 or char_classes(part) < 3 or entropy(part) < 3.5
        for part in re.split(rb"[/\\]", value)
    )


_LETTERS_ONLY = re.compile(rb"[A-Za-z_.\-]+")


def _wordy(value: bytes) -> bool:
    """An identifier made of words (``MultiDomainBasicAuth``, ``_PasswordType``): random
    letters split into many short pieces instead."""
    if not _LETTERS_ONLY.fullmatch(value):
        return False
    return all(len(part) >= 3 for part in _SPLIT_NAME.findall(value))


def looks_random(value: bytes) -> bool:
    """Whether a secret-named variable's value is a secret rather than a reference to
    one (an environment lookup, a path, a placeholder, code). Remembered for recent
    values: a text repeating one assignment pays for it once."""
    known = _RANDOM_SEEN.get(value)
    if known is None:
        if len(_RANDOM_SEEN) > 4096:
            _RANDOM_SEEN.clear()
        known = _RANDOM_SEEN[value] = _looks_random(value)
    return known


_RANDOM_SEEN: dict[bytes, bool] = {}


def _looks_random(value: bytes) -> bool:
    n = len(value)
    if n < 8 or n > 512:
        return False
    if _CODE_CHARS.search(value) or _REFERENCE.match(value) or is_dummy(value):
        return False
    if _DOTTED_NAME.fullmatch(value) and not _random_part(value):
        return False  # `settings.API_KEY`, not Vault's `s.<24 random characters>`
    if _URL_VALUE.match(value) or _FILE_NAME.fullmatch(value):
        return False
    if _pathish(value) or _wordy(value):
        return False
    bits = entropy(value)
    if _HEX_OR_UUID.fullmatch(value):
        # Hex and UUIDs are tokens often enough (Heroku, Datadog, Twilio) when the name
        # says secret; a name saying sha, hash or id was rejected before this.
        return bits >= 3.0
    classes = char_classes(value)
    if classes >= 3:
        return bits >= 2.5
    if classes == 2:
        return n >= 12 and bits >= 3.0
    return n >= 24 and bits >= 3.7


def _mixed(body: bytes) -> bool:
    """A random token body, not a word or an identifier."""
    return char_classes(body) >= 2 and entropy(body) >= 3.0 and not is_dummy(body)


def _not_dummy(secret: bytes) -> bool:
    return not is_dummy(secret)


def _b64decode(text: bytes) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _jwt_header_ok(token: bytes) -> bool:
    header = _b64decode(token.split(b".", 1)[0])
    if header is None or not header.rstrip().endswith(b"}"):
        return False
    try:
        data = json.loads(header)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "alg" in data


def _discord_bot_ok(token: bytes) -> bool:
    user_id = _b64decode(token.split(b".", 1)[0])
    return user_id is not None and user_id.isdigit() and 15 <= len(user_id) <= 21


def _basic_auth_ok(value: bytes) -> bool:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    user, sep, password = decoded.partition(b":")
    return bool(sep and user and password) and not is_dummy(password)


def _bearer_ok(value: bytes) -> bool:
    return len(value) >= 16 and looks_random(value)


def _credential(secret: bytes) -> bool:
    """The key, signature or password inside a connection string is real: not a
    placeholder or a reference to a variable."""
    return not is_dummy(secret) and not _REFERENCE.match(secret)


_JDBC_PASSWORD = re.compile(
    rb"[;?&:](?:password|pwd)=([^;&]{1,256})|jdbc:oracle:[a-z]{1,10}:[^/@:]{1,64}/([^@]{1,128})@",
    re.IGNORECASE,
)


def _jdbc_password(url: bytes) -> bool:
    m = _JDBC_PASSWORD.search(url)
    return m is not None and _credential(m.group(1) or m.group(2))


# --- rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A regex run where one of its anchors is found.

    Three kinds of anchor: a token's literal start (``ghp_``), found where a token can
    start; a keyword of the lower-cased text (``lower``); or text inside a token
    (``back``: the match starts that many characters before the anchor, each tried;
    fixed offsets, so a text dense with anchors costs one regex step each, not a walk
    back). ``window`` rules search around a context keyword instead. ``group`` is the
    part that is secret."""

    id: str
    pattern: LazyPattern
    anchors: tuple[bytes, ...]
    lower: bool = False
    back: tuple[int, ...] = ()
    window: int = 0
    group: int | str = 0
    check: Callable[[bytes], bool] | None = _not_dummy
    priority: int = PROVIDER
    # For keyword rules: text that must follow the keyword within 24 bytes (lower-cased),
    # checked with ``find`` before the regex runs.
    require: bytes = b""
    # Redact the whole credential the match sits in (a connection string, a SAS URL,
    # a JDBC URL): its run of non-blank characters, not only the key inside it.
    whole_run: bool = False
    # For ``whole_run`` rules: a check on the run (``check`` is on the match).
    run_check: Callable[[bytes], bool] | None = None


B = rb"(?<![A-Za-z0-9_\-])"  # token boundary before
E = rb"(?![A-Za-z0-9_\-])"  # and after


class LazyPattern:
    """A rule's regex, compiled the first time an anchor of the rule is seen: a bundle
    meets few of them, and compiling all ~150 cost ~80 ms of every start-up."""

    __slots__ = ("_compiled", "_flags", "_source")

    def __init__(self, source: bytes, flags: int = 0) -> None:
        self._source = source
        self._flags = flags
        self._compiled: re.Pattern[bytes] | None = None

    @property
    def compiled(self) -> re.Pattern[bytes]:
        if self._compiled is None:
            self._compiled = re.compile(self._source, self._flags)
        return self._compiled

    def match(self, data: bytes, pos: int = 0, endpos: int = sys.maxsize) -> re.Match[bytes] | None:
        return self.compiled.match(data, pos, endpos)

    def finditer(
        self, data: bytes, pos: int = 0, endpos: int = sys.maxsize
    ) -> Iterator[re.Match[bytes]]:
        return self.compiled.finditer(data, pos, endpos)


def _rx(pattern: bytes, flags: int = 0) -> LazyPattern:
    return LazyPattern(pattern, flags)


def _prefix_rule(
    rule_id: str,
    anchors: tuple[bytes, ...],
    body: bytes,
    *,
    check: Callable[[bytes], bool] | None = _not_dummy,
    end: bytes = E,
) -> Rule:
    alternatives = b"|".join(re.escape(a) for a in anchors)
    return Rule(rule_id, _rx(B + b"(?:" + alternatives + b")" + body + end), anchors, check=check)


def _body_check(prefix_len: int) -> Callable[[bytes], bool]:
    """``_mixed`` on what follows a token's prefix (for prefixes that are also words)."""
    return lambda secret: _mixed(secret[prefix_len:])


RULES: tuple[Rule, ...] = (
    # Cloud providers
    _prefix_rule("aws-access-key-id", (b"AKIA", b"ASIA", b"ABIA", b"ACCA"), rb"[A-Z0-9]{16}"),
    _prefix_rule(
        "aws-session-token",
        (b"IQoJb3JpZ2luX2Vj", b"FwoGZXIvYXdz", b"FQoGZXIvYXdz"),
        rb"[A-Za-z0-9/+=]{80,4000}",
        end=rb"(?![A-Za-z0-9/+=])",
        check=None,  # real session tokens hold runs like //////////
    ),
    Rule(
        "aws-secret-access-key",
        _rx(
            rb"secret[ _-]?access[ _-]?key(?:[ \t]*\[[^\]\n]{0,40}\])?[\"']?[ \t]*[:=]{1,2}[ \t]*"
            rb"[\"']?(?P<s>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
            re.IGNORECASE,
        ),
        (b"secret",),
        lower=True,
        group="s",
        require=b"access",
    ),
    _prefix_rule(
        "aws-mws-auth-token", (b"amzn.mws.",), rb"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}"
    ),
    _prefix_rule("alibaba-access-key-id", (b"LTAI",), rb"[A-Za-z0-9]{12,20}", check=_body_check(4)),
    _prefix_rule("gcp-api-key", (b"AIza",), rb"[0-9A-Za-z_\-]{35}"),
    _prefix_rule("gcp-oauth-client-secret", (b"GOCSPX-",), rb"[0-9A-Za-z_\-]{24,40}"),
    _prefix_rule("gcp-oauth-access-token", (b"ya29.",), rb"[0-9A-Za-z_\-.]{30,2048}"),
    _prefix_rule("gcp-oauth-refresh-token", (b"1//0",), rb"[0-9A-Za-z_\-]{40,512}"),
    Rule(
        "firebase-cloud-messaging-key",
        _rx(B + rb"AAAA[A-Za-z0-9_\-]{7}:APA91b[A-Za-z0-9_\-]{100,400}" + E),
        (b":APA91b",),
        back=(11,),
    ),
    Rule(
        "azure-storage-account-key",
        _rx(
            rb"(?:AccountKey|SharedAccessKey|PrimaryKey|SecondaryKey)=(?P<s>[A-Za-z0-9+/]{30,100}={0,2})"
        ),
        (b"AccountKey=", b"SharedAccessKey=", b"PrimaryKey=", b"SecondaryKey="),
        group="s",
        whole_run=True,
    ),
    Rule(
        "azure-sas-signature",
        _rx(rb"(?<=[?&;\s\"'])sig=(?P<s>(?:[A-Za-z0-9+/_\-]|%2[BbFf]){30,120}(?:=|%3[Dd]){0,2})"),
        (b"sig=",),
        group="s",
        whole_run=True,
    ),
    Rule(
        "azure-ad-client-secret",
        _rx(
            rb"(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.\-]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34}(?![A-Za-z0-9_~.\-])"
        ),
        (b"Q~",),
        back=(4,),
        check=_mixed,
    ),
    Rule(
        "azure-devops-pat",
        _rx(B + rb"[A-Za-z0-9]{76}AZDO[A-Za-z0-9]{4}" + E),
        (b"AZDO",),
        back=(76,),
    ),
    # Version control and CI
    _prefix_rule("github-pat", (b"ghp_",), rb"[A-Za-z0-9]{36,251}"),
    _prefix_rule("github-oauth-token", (b"gho_",), rb"[A-Za-z0-9]{36,251}"),
    _prefix_rule("github-app-token", (b"ghu_", b"ghs_"), rb"[A-Za-z0-9]{36,251}"),
    _prefix_rule("github-refresh-token", (b"ghr_",), rb"[A-Za-z0-9]{36,251}"),
    _prefix_rule("github-fine-grained-pat", (b"github_pat_",), rb"[A-Za-z0-9_]{50,255}"),
    _prefix_rule(
        "gitlab-token",
        (
            b"glpat-",
            b"gldt-",
            b"glrt-",
            b"glrtr-",
            b"glptt-",
            b"glsoat-",
            b"glcbt-",
            b"glimt-",
            b"glagent-",
            b"gloas-",
            b"glffct-",
            b"glft-",
            b"glwt-",
            b"glnst-",
        ),
        rb"[A-Za-z0-9_\-.]{20,300}(?<!\.)",
        check=_body_check(5),
    ),
    _prefix_rule("gitlab-runner-registration-token", (b"GR1348941",), rb"[A-Za-z0-9_\-]{20,64}"),
    _prefix_rule("bitbucket-app-password", (b"ATBB",), rb"[A-Za-z0-9_=.\-]{28,100}"),
    _prefix_rule(
        "atlassian-api-token", (b"ATATT3", b"ATCTT3", b"ATOA"), rb"[A-Za-z0-9_=\-]{60,400}"
    ),
    _prefix_rule("circleci-token", (b"CCIPAT_", b"CCIPRJ_"), rb"[A-Za-z0-9]{16,40}_[a-f0-9]{40}"),
    _prefix_rule("buildkite-token", (b"bkua_",), rb"[a-f0-9]{40}"),
    Rule(
        "terraform-cloud-token",
        _rx(B + rb"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=\-]{60,90}" + E),
        (b".atlasv1.",),
        back=(14,),
    ),
    _prefix_rule("pulumi-token", (b"pul-",), rb"[a-f0-9]{40}"),
    # Chat and webhooks
    _prefix_rule("slack-token", (b"xox",), rb"(?:e\.xox)?[abposercd]-[A-Za-z0-9%\-]{10,400}"),
    _prefix_rule("slack-app-token", (b"xapp-",), rb"\d-[A-Z0-9]{6,20}-\d{6,20}-[a-z0-9]{20,100}"),
    Rule(
        "slack-webhook",
        _rx(
            rb"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+\-]{20,200}"
        ),
        (b"https://hooks.slack.com/", b"http://hooks.slack.com/", b"hooks.slack.com/"),
    ),
    Rule(
        "discord-webhook",
        _rx(
            rb"(?:https?://)?(?:ptb\.|canary\.)?discord(?:app)?\.com/api/(?:v\d{1,2}/)?webhooks/"
            rb"\d{5,30}/[A-Za-z0-9_\-]{40,100}"
        ),
        (
            b"https://discord.com/api/",
            b"https://discordapp.com/api/",
            b"https://ptb.discord",
            b"https://canary.discord",
            b"discord.com/api/",
            b"discordapp.com/api/",
        ),
    ),
    Rule(
        "discord-bot-token",
        _rx(B + rb"[MNO][A-Za-z0-9_\-]{23,27}\.[A-Za-z0-9_\-]{6,7}\.[A-Za-z0-9_\-]{27,40}" + E),
        (b"discord",),
        lower=True,
        window=400,
        check=_discord_bot_ok,
    ),
    Rule(
        "telegram-bot-token",
        _rx(rb"(?<![0-9])[0-9]{8,10}:AA[A-Za-z0-9_\-]{33}" + E),
        (b":AA",),
        back=(10, 9, 8),
    ),
    Rule(
        "teams-webhook",
        _rx(
            rb"https://[A-Za-z0-9\-]{1,64}\.webhook\.office\.com/webhookb2/[A-Za-z0-9@\-]{20,120}"
            rb"/IncomingWebhook/[A-Za-z0-9]{20,64}/[A-Za-z0-9\-]{20,64}(?:/[A-Za-z0-9_\-]{10,64})?"
        ),
        (b"https://",),
    ),
    Rule(
        "teams-webhook",
        _rx(
            rb"https://outlook\.office(?:365)?\.com/webhook/[A-Za-z0-9@\-]{20,120}"
            rb"/IncomingWebhook/[A-Za-z0-9]{20,64}/[A-Za-z0-9\-]{20,64}"
        ),
        (b"https://outlook.office",),
    ),
    _prefix_rule("twilio-api-key", (b"SK",), rb"[0-9a-fA-F]{32}"),
    _prefix_rule("twilio-account-sid", (b"AC",), rb"[0-9a-f]{32}"),
    # Mail and payments
    _prefix_rule("sendgrid-api-key", (b"SG.",), rb"[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{30,50}"),
    _prefix_rule("mailgun-api-key", (b"key-",), rb"[0-9a-f]{32}"),
    Rule(
        "mailchimp-api-key",
        _rx(B + rb"[0-9a-f]{32}-us[0-9]{1,2}" + E),
        (b"-us",),
        back=(32,),
    ),
    _prefix_rule("stripe-secret-key", (b"sk_live_", b"sk_test_"), rb"[0-9A-Za-z]{10,247}"),
    _prefix_rule("stripe-restricted-key", (b"rk_live_", b"rk_test_"), rb"[0-9A-Za-z]{10,247}"),
    _prefix_rule("stripe-webhook-secret", (b"whsec_",), rb"[A-Za-z0-9+/=]{24,100}"),
    _prefix_rule("square-token", (b"sq0atp-", b"sq0csp-", b"sq0idp-"), rb"[0-9A-Za-z_\-]{22,60}"),
    _prefix_rule("square-access-token", (b"EAAA",), rb"[A-Za-z0-9_\-]{60}", check=_body_check(4)),
    _prefix_rule("facebook-access-token", (b"EAA",), rb"[A-Za-z0-9]{90,400}", check=_body_check(3)),
    _prefix_rule(
        "paypal-braintree-access-token",
        (b"access_token$",),
        rb"(?:production|sandbox)\$[0-9a-z]{16}\$[0-9a-f]{32}",
    ),
    _prefix_rule(
        "shopify-token", (b"shpat_", b"shpss_", b"shpca_", b"shppa_"), rb"[a-fA-F0-9]{32}"
    ),
    _prefix_rule("shippo-token", (b"shippo_live_", b"shippo_test_"), rb"[a-f0-9]{40}"),
    # AI providers
    _prefix_rule(
        "anthropic-api-key", (b"sk-ant-",), rb"[a-z]{2,12}[0-9]{0,3}-[A-Za-z0-9_\-]{32,300}"
    ),
    _prefix_rule(
        "openai-api-key",
        (b"sk-proj-", b"sk-svcacct-", b"sk-admin-", b"sk-None-"),
        rb"[A-Za-z0-9_\-]{20,300}",
    ),
    _prefix_rule("openai-api-key", (b"sk-",), rb"[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"),
    _prefix_rule("openrouter-api-key", (b"sk-or-v1-",), rb"[a-f0-9]{64}"),
    _prefix_rule("sk-api-key", (b"sk-",), rb"[A-Za-z0-9_\-]{32,300}", check=_body_check(3)),
    _prefix_rule("huggingface-token", (b"hf_", b"api_org_"), rb"[A-Za-z0-9]{30,60}", check=_mixed),
    _prefix_rule("groq-api-key", (b"gsk_",), rb"[A-Za-z0-9]{40,64}"),
    _prefix_rule("replicate-api-token", (b"r8_",), rb"[A-Za-z0-9]{30,50}", check=_mixed),
    _prefix_rule("perplexity-api-key", (b"pplx-",), rb"[A-Za-z0-9]{40,64}"),
    _prefix_rule("xai-api-key", (b"xai-",), rb"[A-Za-z0-9]{60,100}", check=_body_check(4)),
    _prefix_rule("langsmith-api-key", (b"lsv2_pt_", b"lsv2_sk_"), rb"[a-f0-9]{32}_[a-f0-9]{10}"),
    _prefix_rule("pinecone-api-key", (b"pcsk_",), rb"[A-Za-z0-9_]{40,100}"),
    _prefix_rule("tavily-api-key", (b"tvly-",), rb"(?:dev-|prod-)?[A-Za-z0-9]{28,64}"),
    # Package registries
    _prefix_rule("npm-token", (b"npm_",), rb"[A-Za-z0-9]{36}"),
    _prefix_rule("pypi-token", (b"pypi-Ag",), rb"[A-Za-z0-9_\-]{50,400}"),
    _prefix_rule("rubygems-api-key", (b"rubygems_",), rb"[a-f0-9]{48}"),
    _prefix_rule("nuget-api-key", (b"oy2",), rb"[a-z0-9]{43}", check=_body_check(3)),
    _prefix_rule("docker-hub-token", (b"dckr_pat_", b"dckr_oat_"), rb"[A-Za-z0-9_\-]{20,100}"),
    # Platforms and developer tools
    _prefix_rule("heroku-api-key", (b"HRKU-",), rb"[A-Za-z0-9_\-]{40,100}"),
    _prefix_rule("digitalocean-token", (b"dop_v1_", b"doo_v1_", b"dor_v1_"), rb"[a-f0-9]{64}"),
    _prefix_rule("vault-token", (b"hvs.", b"hvb.", b"hvr."), rb"[A-Za-z0-9_\-]{24,400}"),
    _prefix_rule(
        "doppler-token",
        (b"dp.st.", b"dp.sa.", b"dp.ct.", b"dp.pt.", b"dp.scim.", b"dp.audit."),
        rb"(?:[a-z0-9_\-]{1,35}\.)?[A-Za-z0-9]{40,44}",
    ),
    _prefix_rule("linear-api-key", (b"lin_api_", b"lin_oauth_"), rb"[A-Za-z0-9]{40,64}"),
    _prefix_rule("notion-token", (b"secret_",), rb"[A-Za-z0-9]{43}", check=_body_check(7)),
    _prefix_rule("notion-token", (b"ntn_",), rb"[A-Za-z0-9]{40,50}"),
    _prefix_rule("postman-api-key", (b"PMAK-",), rb"[a-f0-9]{24}-[a-f0-9]{34}"),
    _prefix_rule("grafana-token", (b"glc_",), rb"[A-Za-z0-9+/]{32,400}={0,2}"),
    _prefix_rule("grafana-service-account-token", (b"glsa_",), rb"[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"),
    _prefix_rule(
        "new-relic-key",
        (b"NRAK-", b"NRAA-", b"NRII-", b"NRIQ-", b"NRRA-", b"NRSP-", b"NRJS-"),
        rb"[A-Za-z0-9_\-]{19,40}",
    ),
    _prefix_rule("sentry-token", (b"sntrys_",), rb"[A-Za-z0-9+/=_\-]{40,400}"),
    _prefix_rule("sentry-token", (b"sntryu_",), rb"[a-f0-9]{64}"),
    _prefix_rule("databricks-token", (b"dapi",), rb"[a-f0-9]{32}(?:-[0-9])?"),
    _prefix_rule("dropbox-token", (b"sl.",), rb"(?:u\.)?[A-Za-z0-9_\-]{130,1500}"),
    _prefix_rule(
        "flyio-token",
        (b"fo1_", b"fm1a_", b"fm1r_", b"fm2_"),
        rb"[A-Za-z0-9+/=_\-]{40,2000}(?:,(?:fm1[ar]|fm2|fo1)_[A-Za-z0-9+/=_\-]{40,2000}){0,8}",
    ),
    _prefix_rule("netlify-token", (b"nfp_",), rb"[A-Za-z0-9]{36,40}"),
    _prefix_rule(
        "vercel-token", (b"vcp_", b"vci_", b"vca_", b"vcr_", b"vck_"), rb"[A-Za-z0-9]{40,64}"
    ),
    _prefix_rule("supabase-token", (b"sbp_",), rb"[a-f0-9]{40}"),
    _prefix_rule("supabase-token", (b"sb_secret_",), rb"[A-Za-z0-9_\-]{20,64}"),
    _prefix_rule(
        "planetscale-token",
        (b"pscale_tkn_", b"pscale_pw_", b"pscale_oauth_"),
        rb"[A-Za-z0-9_.\-]{32,64}",
    ),
    _prefix_rule("contentful-token", (b"CFPAT-",), rb"[A-Za-z0-9_\-]{43}"),
    _prefix_rule("age-secret-key", (b"AGE-SECRET-KEY-1",), rb"[0-9A-Z]{58}"),
    # Azure "identifiable" keys: an 88-character key with the service's signature at
    # a fixed offset.
    Rule(
        "azure-identifiable-key",
        _rx(B + rb"[A-Za-z0-9+/]{76}(?:\+ASt|ACDb)[A-Za-z0-9+/]{6}==(?![A-Za-z0-9+/=_\-])"),
        # Storage and Cosmos DB account keys (Service Bus and Function keys come in
        # connection strings and headers, caught there). One text search per
        # signature: each costs a pass over the text, so only these.
        (b"+ASt", b"ACDb"),
        back=(76,),
        check=_mixed,
    ),
    _prefix_rule(
        "sonarqube-token", (b"squ_", b"sqp_", b"sqa_"), rb"[a-f0-9]{40}", check=_body_check(4)
    ),
    _prefix_rule(
        "figma-token",
        (b"figd_", b"figu_", b"figur_"),
        rb"[A-Za-z0-9_\-]{38,128}",
        check=_body_check(5),
    ),
    _prefix_rule("jfrog-api-key", (b"AKCp",), rb"[A-Za-z0-9]{64,80}", check=_body_check(4)),
    _prefix_rule("jfrog-reference-token", (b"cmVmdGtuOjAxOj",), rb"[A-Za-z0-9+/]{30,200}={0,2}"),
    _prefix_rule(
        "tailscale-key",
        (b"tskey-auth-", b"tskey-api-", b"tskey-client-", b"tskey-scim-", b"tskey-webhook-"),
        rb"[A-Za-z0-9]{6,32}-[A-Za-z0-9]{20,64}",
    ),
    _prefix_rule("sourcegraph-token", (b"sgp_",), rb"(?:[a-f0-9]{16}_|local_)?[a-f0-9]{40}"),
    _prefix_rule("render-api-key", (b"rnd_",), rb"[A-Za-z0-9]{32}", check=_body_check(4)),
    _prefix_rule("neon-api-key", (b"napi_",), rb"[a-z0-9]{64}", check=_body_check(5)),
    _prefix_rule(
        "intercom-token",
        (b"dG9rOj",),
        rb"[A-Za-z0-9+/_\-]{40,120}={0,2}",
        end=rb"(?![A-Za-z0-9_\-+/=])",
    ),
    _prefix_rule(
        "onepassword-token",
        (b"ops_eyJ",),
        rb"[A-Za-z0-9+/_\-]{100,2000}={0,2}",
        end=rb"(?![A-Za-z0-9_\-+/=])",
    ),
    _prefix_rule(
        "launchdarkly-key",
        (b"sdk-", b"api-", b"mob-"),
        rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    ),
    _prefix_rule("tencent-secret-id", (b"AKID",), rb"[A-Za-z0-9]{32}", check=_body_check(4)),
    _prefix_rule(
        "mercadopago-access-token",
        (b"APP_USR-", b"TEST-"),
        rb"[0-9]{13,19}-[0-9]{6}-[a-f0-9]{32}-[0-9]{6,12}",
    ),
    Rule(
        "salesforce-access-token",
        _rx(B + rb"00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{80,200}" + E),
        (b"00D",),
        back=(0,),
        check=_body_check(3),
    ),
    _prefix_rule("elevenlabs-api-key", (b"sk_",), rb"[a-f0-9]{48}", check=_body_check(3)),
    _prefix_rule("cerebras-api-key", (b"csk-",), rb"[a-z0-9]{40,64}", check=_body_check(4)),
    _prefix_rule("together-api-key", (b"tgp_v1_",), rb"[A-Za-z0-9_\-]{40,64}"),
    _prefix_rule("fireworks-api-key", (b"fw_",), rb"[A-Za-z0-9]{24,64}", check=_body_check(3)),
    _prefix_rule(
        "resend-api-key", (b"re_",), rb"[A-Za-z0-9]{8}_[A-Za-z0-9]{24}", check=_body_check(3)
    ),
    _prefix_rule(
        "grafana-api-key",
        (b"eyJrIjoi",),
        rb"[A-Za-z0-9+/]{40,400}={0,2}",
        end=rb"(?![A-Za-z0-9_\-+/=])",
    ),
    _prefix_rule(
        "django-secret-key",
        (b"django-insecure-",),
        rb"[a-z0-9!@#$%^&*(\-_=+)]{40,60}",
        end=rb"(?![a-z0-9!@#$%^&*(\-_=+)])",
    ),
    Rule(
        "discord-bot-token",
        _rx(
            B
            # The base64 of a user id's first digit, then the rest of the id, a
            # timestamp and an HMAC.
            + rb"(?:MT|Mj|Mz|ND|NT|Nj|Nz|OD|OT)[A-Za-z0-9_\-]{21,25}"
            + rb"\.[A-Za-z0-9_\-]{6,7}\.[A-Za-z0-9_\-]{27,40}"
            + E
        ),
        (b"MT", b"Mj", b"Mz", b"ND", b"NT", b"Nj", b"Nz", b"OD", b"OT"),
        check=_discord_bot_ok,
    ),
    Rule(
        "jdbc-credentials",
        _rx(rb"jdbc:[a-z][a-z0-9]{1,20}:"),
        (b"jdbc:",),
        check=None,
        whole_run=True,
        run_check=_jdbc_password,
    ),
    _prefix_rule("airtable-token", (b"pat",), rb"[A-Za-z0-9]{14}\.[a-f0-9]{64}"),
    Rule(
        "new-relic-key",
        _rx(B + rb"[a-fA-F0-9]{36}NRAL" + E),
        (b"NRAL",),
        back=(36,),
    ),
    _prefix_rule(
        "harness-token", (b"pat.", b"sat."), rb"[A-Za-z0-9_\-]{22}\.[0-9a-f]{24}\.[A-Za-z0-9]{20}"
    ),
    _prefix_rule(
        "mapbox-secret-token", (b"sk.eyJ",), rb"[A-Za-z0-9_\-]{20,400}\.[A-Za-z0-9_\-]{20,100}"
    ),
    _prefix_rule(
        "twitter-bearer-token",
        (b"AAAAAAAAAAAAAAAAAAAA",),
        rb"A{0,6}[A-Za-z0-9%]{50,300}",
        end=rb"(?![A-Za-z0-9_\-+/=%])",
        check=lambda secret: _mixed(secret.lstrip(b"A")),
    ),
    _prefix_rule("adafruit-io-key", (b"aio_",), rb"[A-Za-z0-9]{28}", check=_body_check(4)),
    _prefix_rule(
        "dynatrace-token", (b"dt0c01.", b"dt0s01.", b"dt0s02."), rb"[A-Z0-9]{24}\.[A-Z0-9]{64}"
    ),
    _prefix_rule("easypost-api-key", (b"EZAK", b"EZTK"), rb"[A-Za-z0-9]{54}"),
    _prefix_rule(
        "flutterwave-key",
        (b"FLWSECK-", b"FLWSECK_TEST-", b"FLWPUBK-", b"FLWPUBK_TEST-"),
        rb"[a-fA-F0-9]{12,32}-X",
    ),
    _prefix_rule("prefect-api-key", (b"pnu_",), rb"[A-Za-z0-9]{36}"),
    _prefix_rule("clojars-token", (b"CLOJARS_",), rb"[a-z0-9]{60}"),
    _prefix_rule("readme-api-key", (b"rdme_",), rb"[a-z0-9]{70}"),
    _prefix_rule("scalingo-token", (b"tk-us-",), rb"[A-Za-z0-9_\-]{48}"),
    _prefix_rule("frameio-token", (b"fio-u-",), rb"[A-Za-z0-9_\-=]{64}"),
    _prefix_rule("infracost-api-key", (b"ico-",), rb"[A-Za-z0-9]{32}", check=_body_check(4)),
    _prefix_rule(
        "hubspot-token", (b"pat-na1-", b"pat-eu1-"), rb"[a-f0-9]{8}-(?:[a-f0-9]{4}-){3}[a-f0-9]{12}"
    ),
    _prefix_rule("brevo-api-key", (b"xkeysib-", b"xsmtpsib-"), rb"[a-f0-9]{64}-[A-Za-z0-9]{16}"),
    _prefix_rule("typeform-token", (b"tfp_",), rb"[A-Za-z0-9_\-.]{40,64}", check=_body_check(4)),
    _prefix_rule("openshift-token", (b"sha256~",), rb"[A-Za-z0-9_\-]{43}", check=_body_check(7)),
    _prefix_rule(
        "plaid-access-token",
        (b"access-sandbox-", b"access-development-", b"access-production-"),
        rb"[a-f0-9]{8}-(?:[a-f0-9]{4}-){3}[a-f0-9]{12}",
    ),
    _prefix_rule("duffel-token", (b"duffel_test_", b"duffel_live_"), rb"[A-Za-z0-9_\-=]{43}"),
    _prefix_rule(
        "defined-networking-key", (b"dnkey-",), rb"[A-Za-z0-9=_\-]{26}-[A-Za-z0-9=_\-]{52}"
    ),
    _prefix_rule("cloudflare-origin-ca-key", (b"v1.0-",), rb"[a-f0-9]{24}-[a-f0-9]{146}"),
    _prefix_rule("adobe-client-secret", (b"p8e-",), rb"[A-Za-z0-9]{32}", check=_body_check(4)),
    _prefix_rule("sumologic-access-id", (b"sumo_",), rb"[A-Za-z0-9]{30,64}", check=_body_check(5)),
    Rule(
        "sentry-dsn",
        _rx(
            rb"https?://(?P<s>[0-9a-f]{32})(?::[0-9a-f]{32})?@[A-Za-z0-9.\-]{1,253}"
            rb"(?::[0-9]{1,5})?/(?:[A-Za-z0-9_\-]{1,64}/)?[0-9]{1,12}(?![0-9])"
        ),
        (b"https://", b"http://"),
        group="s",
    ),
    # Structure: keys, JWTs, HTTP credentials
    Rule(
        "jwt",
        _rx(B + rb"eyJ[A-Za-z0-9_\-]{5,2000}\.[A-Za-z0-9_\-]{2,8000}\.[A-Za-z0-9_\-]{0,2000}" + E),
        (b"eyJ",),
        check=_jwt_header_ok,
        priority=STRUCTURAL,
    ),
    Rule(
        "http-basic-auth",
        _rx(
            rb"authorization[\"']?[ \t]*[:=][ \t]*[\"']?basic[ \t]+"
            rb"(?P<s>[A-Za-z0-9+/]{8,1000}={0,2})",
            re.IGNORECASE,
        ),
        (b"auth",),
        lower=True,
        group="s",
        require=b"authorization",
        check=_basic_auth_ok,
        priority=STRUCTURAL,
    ),
    Rule(
        "http-bearer-token",
        _rx(
            rb"authorization[\"']?[ \t]*[:=][ \t]*[\"']?"
            rb"(?:(?:bearer|token|bot|ssws|apikey|key)[ \t]+)?"
            rb"(?P<s>[A-Za-z0-9._~+/\-]{16,4000}(?:[:=]{1,2}[A-Za-z0-9._~+/\-]{1,4000}){0,4}={0,2})",
            re.IGNORECASE,
        ),
        (b"auth",),
        lower=True,
        group="s",
        require=b"authorization",
        check=_bearer_ok,
        priority=STRUCTURAL,
    ),
    Rule(
        "http-bearer-token",
        _rx(
            rb"(?<![A-Za-z0-9])bearer[ \t]+"
            rb"(?P<s>[A-Za-z0-9._~+/\-]{16,4000}(?:[:=]{1,2}[A-Za-z0-9._~+/\-]{1,4000}){0,4}={0,2})",
            re.IGNORECASE,
        ),
        (b"bearer",),
        lower=True,
        group="s",
        check=_bearer_ok,
        priority=STRUCTURAL,
    ),
    Rule(
        "netrc-password",
        _rx(
            rb"(?<![A-Za-z0-9])machine[ \t]+\S{1,253}[ \t\n]+(?:login[ \t]+\S{1,256}[ \t\n]+)?"
            rb"password[ \t]+(?P<s>[^\s]{1,256})",
        ),
        (b"machine",),
        lower=True,
        group="s",
        check=_not_dummy,
        priority=STRUCTURAL,
    ),
)


# --- multi-rule handlers -------------------------------------------------------------

_PRIVATE_BEGIN = re.compile(rb"-----BEGIN ((?:[A-Z0-9]{1,12} ){0,3})PRIVATE KEY( BLOCK)?-----")
_PRIVATE_END = re.compile(rb"-----END (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_PEM_BODY_LINES = re.compile(
    rb"(?:(?:\r?\n|(?:\\r)?\\n)[ \t+>#*|\-]*(?:[A-Za-z0-9+/=]{16,}|[A-Za-z-]{2,30}: [^\n]{0,200}))*"
)
_PREFIX_CHARS = re.compile(rb"[ \t+\->#*|/]*")
MAX_PRIVATE_KEY = 64 * 1024
MIN_KEY_MATERIAL = 40  # base64 characters; the smallest real key has about 100
_NOT_BASE64 = bytes(
    b
    for b in range(256)
    if b not in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)
MAX_PUTTY = 16000
_PUTTY_HEAD = re.compile(rb"PuTTY-User-Key-File-[0-9]: ")
_PUTTY_MAC = re.compile(rb"Private-MAC: [0-9a-fA-F]{20,128}")

_URL = re.compile(
    rb"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{0,30}://"
    rb"(?P<user>[^\s:/?#@\"'`<>\[\]\\]{0,256}):(?P<pw>[^\s/?#@\"'`<>\\]{1,256})@"
    rb"(?:[A-Za-z0-9._~%\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
    rb"(?:[/?#][^\s\"'`<>\\]{0,2000})?"
)
_URL_SCHEME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-")
_URL_TRAILING = b".,;:!?)]}*"
_URL_DEFAULTS = frozenset(
    b"password pass passwd pwd secret pw changeme xxx xxxx *** **** ... postgres mysql root "
    b"admin guest user test example".split()
)


def _private_key_at(
    data: bytes, low_hit: int, state: dict[str, list[int]], out: list[Candidate]
) -> None:
    """A ``-----BEGIN ... PRIVATE KEY-----`` block around the keyword ``private`` at
    ``low_hit``: up to its END line, or (cut short) over the base64 lines that follow."""
    begin = data.rfind(b"-----BEGIN ", max(0, low_hit - 48), low_hit)
    if begin < 0:
        return
    m = _PRIVATE_BEGIN.match(data, begin)
    if m is None:
        return
    ends = state.get("ends")
    if ends is None:  # built once per text: a hostile text of BEGINs costs no rescans
        ends = state["ends"] = [e.start() for e in re.finditer(rb"-----END ", data)]
    index = bisect.bisect_right(ends, m.end())
    end_match = None
    if index < len(ends) and ends[index] - begin <= MAX_PRIVATE_KEY:
        end_match = _PRIVATE_END.match(data, ends[index])
    if end_match:
        stop, body_end = end_match.end(), end_match.start()
    else:
        body = _PEM_BODY_LINES.match(data, m.end())
        stop = body_end = body.end() if body else m.end()
    # Key material, not a placeholder (`...`, `MIIE...(redacted)`) or a lone BEGIN line.
    if len(data[m.end() : body_end].translate(None, _NOT_BASE64)) < MIN_KEY_MATERIAL:
        return
    out.append((begin, stop, "private-key", STRUCTURAL, _line_prefix(data, begin)))


def _putty_key_at(
    data: bytes, low_hit: int, state: dict[str, list[int]], out: list[Candidate]
) -> None:
    """A PuTTY key file, found by its ``Private-Lines:`` header: from the nearest file
    header before it to the first ``Private-MAC:`` after it. Both lists are built once
    per text and bisected, so a text of headers costs no rescans."""
    heads = state.get("putty")
    if heads is None:
        heads = state["putty"] = [h.start() for h in re.finditer(rb"PuTTY-User-Key-File-", data)]
        state["mac"] = [h.start() for h in re.finditer(rb"Private-MAC: ", data)]
        state["putty_done"] = [-1]
    macs, done = state["mac"], state["putty_done"]
    i = bisect.bisect_right(heads, low_hit) - 1
    if i < 0 or heads[i] < low_hit - MAX_PUTTY or heads[i] == done[0]:
        return
    j = bisect.bisect_left(macs, low_hit)
    if j == len(macs) or macs[j] - heads[i] > MAX_PUTTY:
        return
    m = _PUTTY_MAC.match(data, macs[j])
    if m and _PUTTY_HEAD.match(data, heads[i]):
        start = done[0] = heads[i]
        out.append((start, m.end(), "putty-private-key", STRUCTURAL, _line_prefix(data, start)))


def _line_prefix(data: bytes, start: int) -> bytes:
    """What precedes a multi-line secret on its first line, when it is only a diff
    sign, indentation or a comment marker: kept on the redacted lines that follow."""
    head = data[data.rfind(b"\n", 0, start) + 1 : start]
    return head if _PREFIX_CHARS.fullmatch(head) else b""


def _url_credentials(data: bytes, out: list[Candidate]) -> None:
    hit = data.find(b"://")
    while hit >= 0:
        start = hit
        floor = max(0, hit - 31)
        while start > floor and data[start - 1] in _URL_SCHEME_CHARS:
            start -= 1
        m = _URL.match(data, start) if start < hit else None
        if m:
            user, password = m.group("user"), m.group("pw")
            if (
                password != user
                and password.lower() not in _URL_DEFAULTS
                and not is_dummy(password)
                and not _REFERENCE.match(password)
            ):
                end = m.end()
                while end > m.end("pw") + 2 and data[end - 1] in _URL_TRAILING:
                    end -= 1
                out.append((m.start(), end, "url-credentials", STRUCTURAL, b""))
            hit = data.find(b"://", max(hit + 3, m.end("pw")))
        else:
            hit = data.find(b"://", hit + 3)


# Kubernetes Secret manifests: every value under ``data:`` (base64) or ``stringData:``
# is secret whatever its key is called (``DATABASE_URL``, ``tls.key``,
# ``.dockerconfigjson``). Found by the ``kind: Secret`` line, in YAML or JSON; the
# manifest is the YAML document around it (``---`` separated), at most MAX_MANIFEST.
_K8S_KIND = re.compile(rb"[\"']?kind[\"']?[ \t]*:[ \t]*[\"']?Secret\Z")
_K8S_YAML_BLOCK = re.compile(rb"^([ \t]*)(data|stringData):[ \t]*\r?$", re.MULTILINE)
_K8S_YAML_ENTRY = re.compile(
    rb"([ \t]+)[\"']?[A-Za-z0-9_.\-]{1,253}[\"']?:[ \t]+"
    rb"(?:\"(?P<dq>[^\"\r\n]{1,65536})\"|'(?P<sq>[^'\r\n]{1,65536})'|(?P<uq>[^\s#][^\r\n]{0,65535}?))"
    rb"[ \t]*\r?$",
    re.MULTILINE,
)
_K8S_JSON_BLOCK = re.compile(rb"\"(data|stringData)\"[ \t]*:[ \t]*\{")
_K8S_JSON_ENTRY = re.compile(
    rb"\s*\"[A-Za-z0-9_.\-]{1,253}\"\s*:\s*\"(?P<dq>[^\"\\]{1,65536})\"\s*,?"
)
MAX_MANIFEST = 64 * 1024


def _kubernetes_secrets(data: bytes, out: list[Candidate]) -> None:
    hit = data.find(b"Secret")
    done = -1
    while hit >= 0:
        end = hit + 6
        if (
            hit > done
            and not data[end : end + 1].isalnum()
            and _K8S_KIND.search(data, max(0, hit - 24), end)
        ):
            lo = data.rfind(b"\n---", max(0, hit - MAX_MANIFEST), hit)
            lo = lo + 4 if lo >= 0 else max(0, hit - MAX_MANIFEST)
            hi = data.find(b"\n---", end, end + MAX_MANIFEST)
            hi = hi if hi >= 0 else min(len(data), end + MAX_MANIFEST)
            _manifest_values(data, lo, hi, out)
            done = hi
        hit = data.find(b"Secret", end)


def _manifest_values(data: bytes, lo: int, hi: int, out: list[Candidate]) -> None:
    for block in _K8S_YAML_BLOCK.finditer(data, lo, hi):
        indent = len(block.group(1))
        at = block.end() + 1
        while at < hi:
            m = _K8S_YAML_ENTRY.match(data, at, hi)
            if m is None or len(m.group(1).expandtabs()) <= indent:
                break
            _manifest_value(data, m, block.group(2) == b"data", out)
            at = m.end() + 1
    for block in _K8S_JSON_BLOCK.finditer(data, lo, hi):
        at = block.end()
        while True:
            m = _K8S_JSON_ENTRY.match(data, at, hi)
            if m is None:
                break
            _manifest_value(data, m, block.group(1) == b"data", out)
            at = m.end()


def _manifest_value(data: bytes, m: re.Match[bytes], encoded: bool, out: list[Candidate]) -> None:
    group = m.lastgroup
    if group is None:
        return
    start, end = m.span(group)
    value = data[start:end]
    if encoded:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return
        low = decoded.lower()
        # Certificates and public keys ride along in Secrets (``tls.crt``, ``ca.crt``).
        public = low.startswith(b"-----begin ") and b"private" not in low[:64]
        secret = not public and (
            len(decoded) >= 64
            or (len(decoded) >= 8 and not is_dummy(decoded) and not _REFERENCE.match(decoded))
        )
    else:
        secret = looks_random(value)
    if secret:
        out.append((start, end, "kubernetes-secret", STRUCTURAL, b""))


# Passwords given to a command as a short flag: `mysql -pSECRET`, `mysql -p'SECRET'`,
# `sshpass -p SECRET`, `docker login -p SECRET`, `redis-cli -a SECRET`, `curl -u user:SECRET`.
# (`--password=...` is a secret-named flag, found with the variables.) A command's
# flags are read up to the end of its command (newline, `|`, `;`, `&`), at most once.
_CLI_COMMANDS = (b"mysql", b"mariadb", b"sshpass", b"login", b"redis-cli", b"curl")
_CLI_ARGS = re.compile(
    rb"(?:[ \t]+(?:'[^'\n]{0,256}'|\"[^\"\n]{0,256}\"|[^\s|;&'\"]{1,512}){1,8}){1,32}"
)
_CLI_WORD = re.compile(rb"(?:[^\s'\"]+|'[^'\n]*'|\"[^\"\n]*\")+")
MAX_CLI_ARGS = 32
_LOGIN_TOOL = re.compile(rb"(?:docker|podman|nerdctl|helm|oras|buildah|skopeo|registry)[ \t]+\Z")


def _cli_passwords(data: bytes, low: bytes, out: list[Candidate]) -> None:
    for command in _CLI_COMMANDS:
        hit = low.find(command)
        done = -1
        while hit >= 0:
            end = hit + len(command)
            if (
                hit >= done
                and (hit == 0 or data[hit - 1] in b" \t\n/(`$'\"=;&|")
                and (command != b"login" or _LOGIN_TOOL.search(data, max(0, hit - 48), hit))
            ):
                args = _CLI_ARGS.match(data, end + _command_tail(data, end))
                if args:
                    done = args.end()
                    _cli_flags(data, command, args.start(), args.end(), out)
            hit = low.find(command, end)


def _command_tail(data: bytes, end: int) -> int:
    """``mysqldump``, ``mariadb-dump``: the rest of the command's name."""
    n = 0
    while n < 16 and end + n < len(data) and data[end + n] in _NAME_TAIL:
        n += 1
    return n


_NAME_TAIL = frozenset(b"abcdefghijklmnopqrstuvwxyz-")


def _cli_flags(data: bytes, command: bytes, lo: int, hi: int, out: list[Candidate]) -> None:
    words = list(itertools.islice(_CLI_WORD.finditer(data, lo, hi), MAX_CLI_ARGS))
    for i, word in enumerate(words):
        text = word.group()
        value: tuple[int, int] | None = None
        nxt = words[i + 1] if i + 1 < len(words) else None
        if command in (b"mysql", b"mariadb"):
            if text.startswith(b"-p") and len(text) > 2 and not text.startswith(b"-p="):
                # -pSECRET or -p'SECRET' (the quotes are the shell's)
                value = _unquoted(data, word.start() + 2, word.end())
        elif text in ((b"-p", b"--password") if command != b"redis-cli" else (b"-a", b"--pass")):
            if nxt is not None:
                value = _unquoted(data, nxt.start(), nxt.end())
        elif command == b"curl" and text in (b"-u", b"--user", b"--proxy-user", b"-U"):
            if nxt is not None:
                value = _after_colon(data, _unquoted(data, nxt.start(), nxt.end()))
        elif command == b"curl" and text.startswith(b"-u") and len(text) > 2:
            value = _after_colon(data, _unquoted(data, word.start() + 2, word.end()))
        if value is None:
            continue
        secret = data[value[0] : value[1]]
        if (
            len(secret) >= 6
            and not is_dummy(secret)
            and not _REFERENCE.match(secret)
            and b"$" not in secret
            and b"`" not in secret
        ):
            out.append((value[0], value[1], "cli-password", STRUCTURAL, b""))


def _unquoted(data: bytes, start: int, end: int) -> tuple[int, int]:
    if end - start >= 2 and data[start] in b"'\"" and data[end - 1] == data[start]:
        return start + 1, end - 1
    return start, end


def _after_colon(data: bytes, span: tuple[int, int] | None) -> tuple[int, int] | None:
    if span is None:
        return None
    colon = data.find(b":", span[0], span[1])
    return (colon + 1, span[1]) if colon >= 0 else None


# --- secret-named variables ----------------------------------------------------------

_KEYWORDS = (
    b"pass", b"pwd", b"secret", b"token", b"key", b"auth", b"cred", b"private", b"_pat"
)  # fmt: skip
_IDENT_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_IDENT_TAIL = re.compile(rb"[A-Za-z0-9_.\-]{0,64}")
_SPLIT_NAME = re.compile(rb"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_PASSWORD_PARTS = frozenset({b"password", b"passwd", b"passwort", b"passphrase", b"pwd"})
_SECRET_PARTS = frozenset(
    {b"secret", b"token", b"credential", b"credentials", b"creds", b"apikey", b"secretkey",
     b"accesskey", b"privatekey", b"authtoken", b"accesstoken", b"refreshtoken", b"clientsecret",
     b"apitoken", b"apisecret", b"passkey", b"masterkey", b"signingkey", b"identitytoken",
     b"registrytoken", b"sessiontoken", b"securitytoken", b"bearertoken", b"pat"}
)  # fmt: skip
_KEY_QUALIFIERS = frozenset(
    {b"api", b"access", b"secret", b"private", b"signing", b"encryption", b"encrypt", b"master",
     b"session", b"app", b"account", b"shared", b"hmac", b"auth", b"client", b"service",
     b"admin", b"deploy", b"write", b"ingest", b"management", b"license", b"subscription",
     b"consumer", b"webhook", b"jwt", b"cipher", b"crypt", b"aes", b"storage", b"sas", b"sk",
     b"application", b"integration", b"routing", b"function", b"functions", b"cosmos",
     b"cosmosdb", b"servicebus", b"eventhub"}
)  # fmt: skip
_NOT_SECRET_LAST = frozenset(
    b"id ids name names file files path paths dir url uri uris endpoint endpoints host hosts "
    b"type types length len size count env var vars variable field fields header headers prefix "
    b"suffix format mode policy provider providers method methods scope scopes expiry expires "
    b"expiration ttl timeout time at date hash hashed sha digest checksum hint label labels "
    b"regex pattern version enabled required min max rule rules config kind source store manager "
    b"location ref refs arn param params class helper cmd command loc limit limits usage used "
    b"index idx fingerprint public pub md txt json yaml yml toml ini cfg conf log py js ts sh rb "
    b"go rs java pem crt csr der cer rotation rotated schema spec test tests mock stub check "
    b"valid validation validator error errors input placeholder example description desc help "
    b"doc docs message msg confirm confirmation strength meter lifetime age rate".split()
)
_NOT_SECRET_PARTS = frozenset(
    {b"public", b"publishable", b"pub", b"next", b"page", b"pagination", b"cursor", b"continuation",
     b"csrf", b"xsrf", b"max", b"num", b"total", b"prompt", b"completion", b"input", b"output",
     b"cache", b"sort", b"primary", b"foreign", b"partition", b"idempotency", b"dedup", b"lookup",
     b"sha", b"hash", b"checksum", b"digest", b"no", b"without", b"bypass"}
)  # fmt: skip
_AZURE_KEY_WORDS = frozenset(
    {b"azure", b"cosmos", b"cosmosdb", b"storage", b"account", b"servicebus", b"eventhub"}
)
_PROVIDER_CONTEXT = (
    b"twilio", b"heroku", b"cohere", b"mistral", b"travis", b"circleci", b"circle", b"datadog",
    b"cloudflare", b"okta", b"algolia", b"mailgun", b"azure", b"bitbucket", b"jira", b"confluence",
    b"atlassian", b"sentry", b"vercel", b"netlify", b"snyk", b"sonar", b"openai", b"anthropic",
    b"gemini", b"together", b"fireworks", b"deepseek", b"voyage", b"jina", b"assemblyai",
    b"elevenlabs", b"pusher", b"firebase", b"supabase", b"auth0", b"segment", b"mixpanel",
    b"amplitude", b"pagerduty", b"opsgenie", b"discord", b"telegram", b"slack", b"github",
    b"gitlab",
)  # fmt: skip
_ASSIGN = re.compile(
    rb"(?:\\?[\"'])?"
    # A name/value pair: `- name: API_KEY` + `value: ...` (Kubernetes, Compose),
    # `key="ApiKey" value="..."` (.NET config), `{"name": "API_KEY", "value": "..."}`.
    rb"(?:,?[ \t]{0,8}(?:\r?\n[ \t]{0,32})?-?[ \t]{0,8}\\?[\"']?value\\?[\"']?)?"
    rb"[ \t]*(?::=|=>|==|=|:)[ \t]*(?:[bBrRuUfF]{1,2}(?=[\"']))?(?:"
    rb"\\?\"(?P<dq>[^\"\\\r\n]{1,512})\\?\""
    rb"|\\?'(?P<sq>[^'\\\r\n]{1,512})\\?'"
    rb"|`(?P<bq>[^`\\\r\n]{1,512})`"
    # `&` ends an unquoted value only before a query parameter (`&name=`).
    rb"|(?P<uq>[^\s\"'`;,&<>\\]{1,512}"
    rb"(?:&(?![A-Za-z_][A-Za-z0-9_]{0,32}=)[^\s\"'`;,&<>\\]{0,512}){0,8}))"
)
_FLAG_VALUE = re.compile(
    rb"(?:=|[ \t]+)(?:\"(?P<dq>[^\"\r\n]{1,512})\"|'(?P<sq>[^'\r\n]{1,512})'"
    rb"|(?P<uq>[^\s\"'`;,&<>]{1,512}))"
)
_XML_VALUE = re.compile(rb">(?P<uq>[^<\s]{1,512})</")
_ARN_BEFORE = re.compile(rb"(?<![A-Za-z0-9])arn:[a-z0-9-]{1,32}:[^\s\"'`]{0,220}:\Z")
_QUALIFIER_BEFORE = re.compile(rb"([A-Za-z]{2,20})[ \t]$")


def _azure_resource_key(parts: list[bytes]) -> bool:
    """An Azure resource's primary/secondary key is its access key; elsewhere a
    primary key is a database column."""
    return (
        parts[-1] == b"key"
        and bool(_AZURE_KEY_WORDS.intersection(parts))
        and all(p not in _NOT_SECRET_PARTS or p in (b"primary", b"secondary") for p in parts)
    )


def classify_name(name: bytes, word_before: bytes = b"") -> str | None:
    """The rule a variable of this name triggers when its value looks random, or None
    when the name does not say secret (``cache_key``, ``token_count``, ``author``)."""
    parts = [p.lower() for p in _SPLIT_NAME.findall(name)]
    if not parts:
        return None
    if word_before:
        parts.insert(0, word_before.lower())
    last = parts[-1]
    if (last in _NOT_SECRET_LAST or any(p in _NOT_SECRET_PARTS for p in parts)) and not (
        _azure_resource_key(parts)
    ):
        return None
    joined = b"".join(parts)
    secret = False
    if any(p in _PASSWORD_PARTS for p in parts) or last == b"pass" or joined.endswith(b"password"):
        kind = "password-assignment"
        secret = True
    else:
        kind = "secret-assignment"
        if (
            any(p in _SECRET_PARTS for p in parts)
            or last == b"auth"
            or any(
                s in joined
                for s in (b"apikey", b"secretkey", b"accesskey", b"privatekey", b"authtoken")
            )
        ):
            secret = True
        elif b"key" in parts:
            at = parts.index(b"key")
            secret = any(p in _KEY_QUALIFIERS for p in parts[:at])
    if not secret:
        return None
    if b"aws" in parts or (b"secret" in parts and b"access" in parts):
        return "aws-secret-access-key" if kind == "secret-assignment" else kind
    for provider in _PROVIDER_CONTEXT:
        if provider in parts:
            return f"{provider.decode()}-credential"
    return kind


def _assignment_at(
    data: bytes, ident: bytes, hit: int, end: int, *, flag: bool, out: list[Candidate]
) -> None:
    """A secret-named variable (its name ends at ``end``, the keyword at ``hit`` is in
    it) and its value, if random. ``ident`` is ``data`` with name characters as ``a``;
    ``flag``: no separator follows the name, so only ``--name value`` can match.
    Cheapest tests first: most keywords in code are not followed by a literal value."""
    floor = hit - 64 if hit > 64 else 0
    start = max(ident.rfind(b" ", floor, hit) + 1, floor)
    if flag and data.rfind(b"--", start, hit) < 0:
        return
    # The name first (its rule is remembered): most names with a keyword in them do
    # not say secret (`max_tokens`, `cache_key`), and then the value is never read.
    name_start = start
    while name_start < end and data[name_start] in b"-.":
        name_start += 1
    # The last dotted part: `spring.datasource.password`, `docs.DB_PASSWORD` (a sentence
    # ending right before the name) and `password.txt` are named by it.
    dot = data.rfind(b".", name_start, end)
    name = data[dot + 1 if dot >= 0 else name_start : end]
    before = b""
    if name.lower() in (b"key", b"token", b"secret") and start > 0:
        q = _QUALIFIER_BEFORE.search(data, max(0, start - 22), start)
        before = q.group(1) if q else b""
    key = name + b" " + before
    rule = _CLASSIFIED.get(key, "?")
    if rule == "?":
        if len(_CLASSIFIED) > 4096:
            _CLASSIFIED.clear()
        rule = _CLASSIFIED[key] = classify_name(name, before)
    if rule is None:
        return
    if flag:
        m = _FLAG_VALUE.match(data, end)
    elif data[end : end + 1] == b">" and data[start - 1 : start] == b"<":
        m = _XML_VALUE.match(data, end)
    else:
        m = _ASSIGN.match(data, end)
    if m is None or m.lastgroup is None:
        return
    v_start, v_end = m.span(m.lastgroup)
    if m.lastgroup == "uq":
        while v_end > v_start and data[v_end - 1] in b".)]}:":
            v_end -= 1
        if data.startswith(b"...", v_end):  # `KEY=sk-ant-api03-...`: a placeholder
            return
    if v_end - v_start < 8:
        return
    if data[start - 1 : start] == b":" and _ARN_BEFORE.search(data, max(0, start - 256), start):
        return  # `arn:aws:secretsmanager:...:secret:name`: a resource name
    value = data[v_start:v_end]
    if rule == "aws-secret-access-key" and not _AWS_SECRET.fullmatch(value):
        rule = "secret-assignment"
    if looks_random(value):
        out.append((v_start, v_end, rule, CONTEXT, b""))


_CLASSIFIED: dict[bytes, str | None] = {}
_AWS_SECRET = re.compile(rb"[A-Za-z0-9/+]{40}")


# --- the scanner ---------------------------------------------------------------------

# Characters a token is made of (runs of them are where tokens are looked for), and
# those of them that may precede a token's start inside a run (``KEY=ghp_...``).
_TOKENISH = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/=.$:~%"
_RUN_TABLE = bytes(0x61 if i in _TOKENISH else 0x20 for i in range(256))
MIN_RUN = 16  # no token rule matches fewer characters
_RUN_NEEDLE = b"a" * MIN_RUN
# The keywords looked for in the lower-cased text: secret-named variables, and the
# rules with a ``lower`` anchor (which must be one of these).
_LOWER_KEYWORDS = (*_KEYWORDS, b"bearer", b"machine", b"discord")


def _index_rules() -> tuple[
    dict[bytes, tuple[tuple[bytes, tuple[Rule, ...]], ...]],
    tuple[tuple[bytes, tuple[Rule, ...]], ...],
    dict[bytes, tuple[Rule, ...]],
]:
    starts: dict[bytes, dict[bytes, list[Rule]]] = {}
    inner: dict[bytes, list[Rule]] = {}
    lowered: dict[bytes, list[Rule]] = {}
    for rule in RULES:
        for anchor in rule.anchors:
            if rule.lower:
                if anchor not in _LOWER_KEYWORDS:
                    raise AssertionError(f"rule {rule.id}: {anchor!r} is not a keyword")
                lowered.setdefault(anchor, []).append(rule)
            elif rule.back:
                inner.setdefault(anchor, []).append(rule)
            else:
                by_anchor = starts.setdefault(anchor[:2], {})
                by_anchor.setdefault(anchor, []).append(rule)
    return (
        {k: tuple((a, tuple(r)) for a, r in v.items()) for k, v in starts.items()},
        tuple((a, tuple(r)) for a, r in inner.items()),
        {k: tuple(v) for k, v in lowered.items()},
    )


_BY_START, _INNER_ANCHORS, _BY_KEYWORD = _index_rules()
_INNER_RULES = dict(_INNER_ANCHORS)


_START_ANCHORS = sorted({a for group in _BY_START.values() for a, _ in group})
_ANCHOR_AT = re.compile(_trie(_START_ANCHORS))
# Anywhere in the text, a separator followed by a token anchor (``KEY=ghp_...``): sre
# skips quickly to the separators (one alternation would make it try every byte).
_AFTER_SEPARATOR = re.compile(rb"[+/=.$:~%](?=" + _trie(_START_ANCHORS) + b")")


def _apply(
    rule: Rule, data: bytes, hit: int, out: list[Candidate], scanned: dict[str, int] | None = None
) -> None:
    if rule.window:
        lo, hi = max(0, hit - rule.window), hit + rule.window
        if scanned is not None:
            # Windows of nearby keywords overlap: scan only what the last one did not
            # (less a token's length, for a token its window cut short).
            lo = max(lo, scanned.get(rule.id, 0) - WINDOW_OVERLAP)
            scanned[rule.id] = hi
        for near in rule.pattern.finditer(data, lo, hi):
            full = rule.pattern.match(data, near.start())  # not cut short by the window
            if full:
                _accept(rule, full, out)
        return
    if rule.back:
        for offset in rule.back:
            if hit >= offset:
                m = rule.pattern.match(data, hit - offset)
                if m:
                    _accept(rule, m, out)
                    return
        return
    m = rule.pattern.match(data, hit)
    if m:
        _accept(rule, m, out)


WINDOW_OVERLAP = 128


def _accept(rule: Rule, m: re.Match[bytes], out: list[Candidate]) -> None:
    start, end = m.span(rule.group)
    if end <= start:
        return
    if rule.check is not None and not rule.check(m.group(rule.group)):
        return
    if rule.id == "flyio-token" and m.string.endswith(_FLY_SCHEME, 0, start):
        start -= len(_FLY_SCHEME)  # `Authorization: FlyV1 fm2_...`: the scheme is part of it
    if rule.whole_run:
        run = _whole_run(m.string, start, end)
        if run is None:
            return
        start, end = run
        if rule.run_check is not None and not rule.run_check(m.string[start:end]):
            return
    out.append((start, end, rule.id, rule.priority, b""))


_FLY_SCHEME = b"FlyV1 "


# What ends a connection string or URL in a text: blanks, quotes, brackets.
_RUN_MAP = bytes(0x20 if i in b" \t\r\n\"'`<>\\()[]{}" else 0x61 for i in range(256))
_RUN_TRIM = b".,:!?*"
MAX_RUN = 4096
# `AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=...`: the variable's name
# (upper case or with separators, unlike the connection string's own PascalCase keys)
# is kept.
_RUN_NAME = re.compile(
    rb"(?:[A-Z0-9_]{1,64}|[A-Za-z0-9]{0,32}[_.\-][A-Za-z0-9_.\-]{0,32})[=:]"
    rb"(?=[A-Za-z]{1,32}=|[a-z]{2,10}://|jdbc:|\?)"
)
_SAS_PREFIX = b"SharedAccessSignature "
_RUNS = threading.local()


def _whole_run(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The run of non-blank characters around ``data[start:end]`` (at most MAX_RUN
    either side), or None when it was already found. The text's map of blanks is
    made once per scan, and each run is walked once (C speed), so a text dense with
    keys costs no rescans."""
    state = _RUNS.state
    if state[0] is None:
        state[0] = data.translate(_RUN_MAP)
    runs: bytes = state[0]
    if state[1] <= start < state[2]:
        return None  # inside the run found last
    lo = runs.rfind(b" ", max(0, start - MAX_RUN), start) + 1
    lo = max(lo, start - MAX_RUN, 0)
    hi = runs.find(b" ", end, end + MAX_RUN)
    hi = hi if hi >= 0 else min(len(data), end + MAX_RUN)
    state[1], state[2] = lo, hi
    while hi > end and data[hi - 1] in _RUN_TRIM:
        hi -= 1
    name = _RUN_NAME.match(data, lo, hi)
    if name:
        lo = name.end()
    elif data.startswith(_SAS_PREFIX, lo - len(_SAS_PREFIX)):
        lo -= len(_SAS_PREFIX)
    return lo, hi


def _token_start(data: bytes, at: int, out: list[Candidate]) -> None:
    group = _BY_START.get(data[at : at + 2])
    if group:
        for anchor, rules in group:
            if data.startswith(anchor, at):
                for rule in rules:
                    _apply(rule, data, at, out)


def _tokens(data: bytes, out: list[Candidate]) -> None:
    """Token rules, run only where a token can start: at the start of a run of at least
    ``MIN_RUN`` token characters (found with ``translate`` and ``find``, at memory
    speed), and after ``=``, ``/``, ``.``, ... when a token anchor follows."""
    runs = data.translate(_RUN_TABLE)
    # The leftmost MIN_RUN token characters after the previous run: a run's start.
    start = runs.find(_RUN_NEEDLE)
    anchor_at = _ANCHOR_AT.match
    while start >= 0:
        if anchor_at(data, start):
            _token_start(data, start, out)
        end = runs.find(b" ", start)
        if end < 0:
            break
        start = runs.find(_RUN_NEEDLE, end)
    for m in _AFTER_SEPARATOR.finditer(data):
        _token_start(data, m.end(), out)
    for anchor, rules in _INNER_ANCHORS:
        hit = data.find(anchor)
        while hit >= 0:
            for rule in rules:
                _apply(rule, data, hit, out)
            hit = data.find(anchor, hit + 1)


_IDENT_TABLE = bytes(0x61 if i in _IDENT_CHARS else 0x20 for i in range(256))
_AFTER_NAME = frozenset(b"=:>\"'\\\r\n")


def _keywords(data: bytes, low: bytes, out: list[Candidate]) -> None:
    ident = b""
    size = len(data)
    seen: set[int] = set()
    state: dict[str, list[int]] = {}
    scanned: dict[str, int] = {}
    for keyword in _LOWER_KEYWORDS:
        rules = _BY_KEYWORD.get(keyword, ())
        generic = keyword in _KEYWORDS
        hit = low.find(keyword)
        end = -1
        while hit >= 0:
            if generic:
                # Cheap tests first: the name's end, then what follows it. Hits come
                # in order: one inside the name found last has that name's end (a
                # long run of name characters is walked once, not once per hit).
                if not ident:
                    ident = data.translate(_IDENT_TABLE)
                if hit >= end:
                    end = ident.find(b" ", hit)
                    if end < 0:
                        end = size
                if end not in seen:
                    seen.add(end)
                    after = data[end] if end < size else 0
                    if after in _AFTER_NAME:
                        _assignment_at(data, ident, hit, end, flag=False, out=out)
                    elif after in (0x20, 0x09):
                        if data[end : end + 8].lstrip(b" \t")[:1] in (b"=", b":"):
                            _assignment_at(data, ident, hit, end, flag=False, out=out)
                        elif data.rfind(b"--", max(0, hit - 40), hit) >= 0:
                            _assignment_at(data, ident, hit, end, flag=True, out=out)
            for rule in rules:
                if not rule.require or low.find(rule.require, hit, hit + 24) >= 0:
                    _apply(rule, data, hit, out, scanned)
            if keyword == b"private":
                if low.startswith(b"private key", hit):
                    _private_key_at(data, hit, state, out)
                elif low.startswith(b"private-lines:", hit):
                    _putty_key_at(data, hit, state, out)
            hit = low.find(keyword, hit + len(keyword))


def candidates(data: bytes) -> list[Candidate]:
    """Every match of every rule, overlapping ones included."""
    out: list[Candidate] = []
    low = data.lower()
    _RUNS.state = [None, -1, -1]  # for _whole_run: the text's map of runs, the last run
    _tokens(data, out)
    _keywords(data, low, out)
    _url_credentials(data, out)
    _cli_passwords(data, low, out)
    _kubernetes_secrets(data, out)
    return out


def find_secrets(data: bytes) -> list[Candidate]:
    """Non-overlapping secrets in ``data``, in order. Overlapping matches merge into one
    span covering both (nothing of either survives), named by the longer match, or by
    the more specific rule when they are as long. Text already redacted (a
    ``[REDACTED:...]`` placeholder) is never matched again."""
    found = candidates(data)
    if not found:
        return []
    if b"[REDACTED:" in data:
        placeholders = [m.span() for m in PLACEHOLDER_RE.finditer(data)]
        starts = [s for s, _ in placeholders]

        def redacted(c: Candidate) -> bool:
            i = bisect.bisect_right(starts, c[1] - 1) - 1
            return i >= 0 and placeholders[i][1] > c[0]

        found = [c for c in found if not redacted(c)]
    found.sort(key=lambda c: (c[0], -c[1], -c[3]))
    merged: list[Candidate] = []
    for cand in found:
        if merged and cand[0] < merged[-1][1]:
            prev = merged[-1]
            prev_len, cand_len = prev[1] - prev[0], cand[1] - cand[0]
            best = prev if (prev_len, prev[3]) >= (cand_len, cand[3]) else cand
            merged[-1] = (prev[0], max(prev[1], cand[1]), best[2], best[3], prev[4] or cand[4])
        else:
            merged.append(cand)
    return merged


# --- copies ----------------------------------------------------------------------------

# A secret found by its context (an assignment, a URL) is looked for everywhere else in
# the bundle, bare. Shorter values are not: a weak password such as ``hunter2`` would
# erase every copy of a common word.
MIN_COPY_LENGTH = 8
MAX_COPY_LENGTH = MAX_PRIVATE_KEY
_EMBEDDED = re.compile(
    rb"(?:^|[;?&:\s\"'])(?:password|pwd|accountkey|sharedaccesskey|primarykey|secondarykey|sig)"
    rb"=([^;&\s\"'<>]{1,512})",
    re.IGNORECASE,
)


def copy_values(secret: bytes, rule: str) -> list[bytes]:
    """What to look for elsewhere once ``secret`` is found: the secret itself and the
    password or key inside it when the rule redacts a whole credential (a URL's
    password, a connection string's ``Password=``/``AccountKey=``, a Basic header's
    decoded password), each as written and percent-decoded. Only values worth it:
    at least ``MIN_COPY_LENGTH`` characters, not a placeholder, not a plain word."""
    values = [secret]
    url = _URL.search(secret)
    if url:
        values.append(url.group("pw"))
    values += [m.group(1) for m in _EMBEDDED.finditer(secret)]
    if rule == "http-basic-auth":
        try:
            decoded = base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        values.append(decoded.partition(b":")[2])
    more = []
    for value in values[1:]:
        if b"%" in value:
            from urllib.parse import unquote_to_bytes

            more.append(unquote_to_bytes(value))
    parts = [v for v in dict.fromkeys([*values[1:], *more]) if v != secret and _credential(v)]
    return [v for v in (secret, *parts) if worth_copying(v)]


def worth_copying(value: bytes) -> bool:
    """Long and random enough that replacing each copy cannot hit ordinary text: two
    character classes at least (``production`` and ``12345678`` are left alone), or a
    long high-entropy run."""
    n = len(value)
    if n < MIN_COPY_LENGTH or n > MAX_COPY_LENGTH or b"[REDACTED:" in value:
        return False
    return char_classes(value) >= 2 or (n >= 24 and entropy(value) >= 3.7)


def rule_ids() -> list[str]:
    """Every rule name a finding can carry, for documentation and tests."""
    names = {r.id for r in RULES}
    names |= {"private-key", "putty-private-key", "url-credentials", "password-assignment"}
    names |= {"cli-password", "kubernetes-secret"}
    names |= {"secret-assignment", "aws-secret-access-key"}
    names |= {f"{p.decode()}-credential" for p in _PROVIDER_CONTEXT}
    return sorted(names)
