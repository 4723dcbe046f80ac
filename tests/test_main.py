"""The entry point builds only the chosen command's parser (every other command's
options cost start-up time), yet help and errors still know every command."""

from __future__ import annotations

import argparse

from kodelyth_ecc.main import COMMANDS, build_parser
from tests.conftest import Sandbox


def _choices(parser: argparse.ArgumentParser) -> set[str]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_a_chosen_command_alone_is_built() -> None:
    assert _choices(build_parser("replay")) == {"replay"}
    assert _choices(build_parser()) == set(COMMANDS)


def test_help_before_a_command_lists_every_command(sandbox: Sandbox) -> None:
    for argv in (["--help"], ["-h", "swarm"]):
        result = sandbox.cli(*argv)
        assert result.code == 0, result
        for name in COMMANDS:
            assert f"    {name}" in result.stdout, (argv, name)


def test_an_unknown_command_is_named_with_the_choices(sandbox: Sandbox) -> None:
    result = sandbox.cli("swram", "--task", "x")
    assert result.code == 2
    assert "invalid choice: 'swram'" in result.stderr
    assert "'swarm'" in result.stderr and "'compare'" in result.stderr


def test_each_command_parses_its_own_options(sandbox: Sandbox) -> None:
    for name in COMMANDS:
        result = sandbox.cli(name, "--help")
        assert result.code == 0, (name, result)
        assert result.stdout.startswith(f"usage: kodelyth-ecc {name} "), name
