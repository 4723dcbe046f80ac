"""``kodelyth-ecc completion SHELL``, and the hidden ``__complete`` its scripts call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def run(args: argparse.Namespace) -> int:
    from kodelyth_ecc.completion import script

    sys.stdout.write(script(args.shell))
    return 0


def complete(words: Sequence[str]) -> int:
    """``__complete sessions|workers SESSION [--coordination-root DIR]``: one candidate a
    line. Called on every Tab press: nothing on stderr, exit 0 whatever happens."""
    from kodelyth_ecc.completion import candidates

    try:
        found = candidates(words)
        if found:
            sys.stdout.write("\n".join(found) + "\n")
    except Exception:  # a closed pipe, an unwritable stdout: never the user's problem
        return 0
    return 0
