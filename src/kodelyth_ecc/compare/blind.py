"""``--blind``: the runs in a random order, with a key saying which is which, and what
would tell them apart redacted from every text shown."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Sequence

from kodelyth_ecc.compare.runs import Run

BLIND_KEY_SCHEMA = "kodelyth.compare-blind-key/v1"
_REDACTED = "[redacted]"
# Shorter names are redacted from texts in --blind as whole words only: "api" inside
# "rapid" stays, "api" on its own goes.
_MIN_REDACTED_CHARS = 4


def blind_order(
    first: Run, second: Run, rng: random.Random | None = None
) -> tuple[Run, Run, dict[str, object]]:
    """The two runs in a random order, and the key saying which is which."""
    chooser = rng or random.SystemRandom()
    ordered = (first, second) if chooser.random() < 0.5 else (second, first)
    key: dict[str, object] = {
        "schema": BLIND_KEY_SCHEMA,
        "runs": {
            label: {
                "source": run.source,
                "kind": run.kind,
                "session": run.bundle.session,
                "sha256": run.sha256,
                "as_given": "A" if run is first else "B",
            }
            for label, run in zip(("Run 1", "Run 2"), ordered, strict=True)
        },
    }
    return ordered[0], ordered[1], key


def redactor(runs: Sequence[Run]) -> Callable[[str], str]:
    """--blind: session names, source paths and bundle digests taken out of every text
    shown (names shorter than _MIN_REDACTED_CHARS as whole words only)."""
    secrets: set[str] = set()
    for run in runs:
        secrets.add(run.bundle.session)
        secrets.add(run.source)
        if run.sha256:
            secrets.add(run.sha256)
        if run.kind == "bundle":
            secrets.add(os.path.abspath(run.source))
            secrets.add(os.path.basename(run.source))
        replay_of = run.bundle.meta.get("replay_of") or {}
        for field in ("session", "bundle_sha256"):
            if isinstance(replay_of.get(field), str):
                secrets.add(replay_of[field])
    ordered = sorted((s for s in secrets if len(s) >= _MIN_REDACTED_CHARS), key=len, reverse=True)
    # A word: not inside a longer name (names are letters, digits, '.', '_' and '-').
    words = [
        (secret, re.compile(rf"(?<![\w.-]){re.escape(secret)}(?![\w.-])"))
        for secret in sorted(secrets, key=len, reverse=True)
        if 0 < len(secret) < _MIN_REDACTED_CHARS
    ]

    def redact(text: str) -> str:
        for secret in ordered:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        for secret, pattern in words:
            if secret in text:
                text = pattern.sub(_REDACTED, text)
        return text

    return redact


def keep(text: str) -> str:
    return text
