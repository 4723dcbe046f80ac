"""Where a bundle was made: this machine's id, hashed (never a host name), which
export writes as ``meta.machine`` and replay compares to decide whether a bundle is a
stranger's (and so whether its workers are sandboxed by default)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

# systemd's and D-Bus's machine ids: stable for the life of an installation.
_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
_SALT = b"kodelyth-ecc machine\0"


def machine_id() -> str:
    """A hash of this machine's id (32 hex characters). Without a machine id (many
    containers), this user's recording key stands in: stable, random, never shared."""
    raw = b""
    for path in _MACHINE_ID_FILES:
        try:
            with open(path, "rb") as fh:
                raw = fh.read(256).strip()
        except OSError:
            continue
        if raw:
            break
    if not raw:
        from kodelyth_ecc.exchanges import machine_key

        raw = b"key\0" + machine_key()
    return hashlib.sha256(_SALT + raw).hexdigest()[:32]


def made_here(meta: Mapping[str, Any]) -> bool:
    """Whether a bundle's meta says it was made on this machine. A bundle that does not
    say (older tools, the JavaScript one, a hand-made one) is a stranger's."""
    machine = meta.get("machine")
    return isinstance(machine, str) and machine == machine_id()
