"""``kodelyth-ecc help [COMMAND]``: the help people reach for by name."""

from __future__ import annotations

import argparse

from kodelyth_ecc.main import build_parser, command_parser


def run(args: argparse.Namespace) -> int:
    # The very parser `COMMAND --help` prints (an unknown COMMAND is argparse's usage
    # error, with the closest command): the two cannot differ.
    parser = build_parser(args.topic)
    (command_parser(parser, args.topic) or parser).print_help()
    return 0
