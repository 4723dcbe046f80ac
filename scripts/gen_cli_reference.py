"""Write docs/cli.md from the parser's own --help, so the reference cannot drift.

Run: .venv/bin/python scripts/gen_cli_reference.py   (tests/test_docs.py checks it is current)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "cli.md"
WIDTH = "100"


def render() -> str:
    os.environ["COLUMNS"] = WIDTH
    sys.path.insert(0, str(ROOT / "src"))
    from kodelyth_ecc.main import build_parser

    parser = build_parser()
    parts = [
        "# kodelyth-ecc command reference",
        "",
        "Generated from `--help` by `scripts/gen_cli_reference.py`; do not edit by hand.",
        "Each section is also `kodelyth-ecc help COMMAND`; `kodelyth-ecc completion bash|zsh|fish`",
        'prints a shell completion script (see the README\'s "Help and shell completion").',
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                parts += [
                    "",
                    f"## kodelyth-ecc {name}",
                    "",
                    "```text",
                    sub.format_help().rstrip(),
                    "```",
                ]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
