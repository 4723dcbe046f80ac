"""A CLI that helps: `help [COMMAND]`, "did you mean" for commands, flags and choices,
usage errors that name the command's own --help, examples at the end of every --help
(each one parsed by the real parser, so none can rot) and help for every positional."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from kodelyth_ecc.main import COMMANDS, PROG, build_parser, command_parser, main
from tests.conftest import Sandbox
from tests.support import Result


def _one_line_usage_error(result: Result, command: str | None) -> str:
    assert result.code == 2, result
    assert "Traceback" not in result.stderr, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result
    prog = f"{PROG} {command}" if command else PROG
    assert lines[0].startswith(f"{prog}: error: "), result
    assert lines[0].endswith(f"(see `{prog} --help`)"), result
    return lines[0]


def _help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What `kodelyth-ecc ARGV` prints (in this process: one parse per command is quick)."""
    try:
        code = main(argv)
    except SystemExit as exc:  # --help exits from inside argparse
        code = exc.code  # type: ignore[assignment]
    out = capsys.readouterr()
    assert code == 0 and not out.err, (argv, code, out.err)
    return out.out


# --------------------------------------------------------------------------- help


def test_help_alone_is_the_top_level_help(sandbox: Sandbox) -> None:
    result = sandbox.cli("help")
    assert result.code == 0, result
    assert result.stdout == sandbox.cli("--help").stdout
    for name in COMMANDS:
        assert f"    {name}" in result.stdout, name


def test_help_command_prints_that_commands_own_help(sandbox: Sandbox) -> None:
    result = sandbox.cli("help", "swarm")
    assert result.code == 0, result
    assert result.stdout == sandbox.cli("swarm", "--help").stdout
    assert result.stdout.startswith("usage: kodelyth-ecc swarm ")


def test_help_is_each_commands_help(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    for name in COMMANDS:
        assert _help_of(["help", name], capsys) == _help_of([name, "--help"], capsys), name


def test_help_of_an_unknown_command_is_a_usage_error(sandbox: Sandbox) -> None:
    line = _one_line_usage_error(sandbox.cli("help", "nope"), "help")
    assert "invalid choice: 'nope'" in line and "'swarm'" in line
    line = _one_line_usage_error(sandbox.cli("help", "stauts"), "help")
    assert "did you mean 'status'?" in line


# --------------------------------------------------------------------------- did you mean


def test_a_misspelt_command_names_the_closest(sandbox: Sandbox) -> None:
    line = _one_line_usage_error(sandbox.cli("stauts"), None)
    assert "invalid choice: 'stauts', did you mean 'status'?" in line
    assert "'compare'" in line  # the choices are still listed
    line = _one_line_usage_error(sandbox.cli("sesion-export", "x"), None)
    assert "did you mean 'session-export'?" in line


def test_a_misspelt_flag_names_the_closest(sandbox: Sandbox) -> None:
    line = _one_line_usage_error(sandbox.cli("swarm", "--task", "x", "--exectue"), "swarm")
    assert "unrecognized arguments: --exectue; did you mean --execute?" in line
    line = _one_line_usage_error(sandbox.cli("logs", "s", "w", "--folow=1"), "logs")
    assert "did you mean --follow?" in line
    # Nothing close: no guess.
    line = _one_line_usage_error(sandbox.cli("swarm", "--zzzzzz"), "swarm")
    assert "did you mean" not in line
    # Before any command: the top level's own flags.
    line = _one_line_usage_error(sandbox.cli("--verison"), None)
    assert "did you mean --version?" in line


def test_a_misspelt_flag_is_named_when_argparse_stops_at_something_else(
    sandbox: Sandbox,
) -> None:
    """argparse reports the missing positionals first; the misspelt flag that is the
    likely cause is named with them."""
    line = _one_line_usage_error(sandbox.cli("logs", "--folow"), "logs")
    assert "the following arguments are required: SESSION, WORKER" in line
    assert "unrecognized arguments: --folow; did you mean --follow?" in line


def test_abbreviations_and_attached_values_are_not_taken_for_typos(sandbox: Sandbox) -> None:
    parsed = build_parser().parse_args(["logs", "s", "w", "--fol", "-n5"])
    assert parsed.follow and parsed.lines == 5
    line = _one_line_usage_error(sandbox.cli("logs", "--fol", "-n5"), "logs")
    assert "unrecognized" not in line and "did you mean" not in line
    # A negative number is a value, not a flag.
    line = _one_line_usage_error(sandbox.cli("status", "--timeout", "-5"), "status")
    assert "unrecognized" not in line


def test_a_prefix_of_two_flags_names_both_and_guesses_neither(sandbox: Sandbox) -> None:
    """`--wa` could be --wait or --watch: argparse's own one-line error, no typo hint."""
    line = _one_line_usage_error(sandbox.cli("status", "s", "--wa"), "status")
    assert "ambiguous option: --wa could match --wait, --watch" in line
    assert "did you mean" not in line and "unrecognized" not in line


def test_a_misspelt_choice_names_the_closest(sandbox: Sandbox) -> None:
    result = sandbox.cli("replay", "x", "--offline", "--on-divergence", "stpo")
    line = _one_line_usage_error(result, "replay")
    assert "invalid choice: 'stpo', did you mean 'stop'?" in line
    line = _one_line_usage_error(sandbox.cli("completion", "bsh"), "completion")
    assert "did you mean 'bash'?" in line


# --------------------------------------------------------------------------- usage errors


def test_every_commands_usage_error_names_its_own_help(sandbox: Sandbox) -> None:
    for name in COMMANDS:
        _one_line_usage_error(sandbox.cli(name, "--no-such-flag"), name)


def test_a_usage_error_from_inside_a_command_names_its_help(sandbox: Sandbox) -> None:
    result = sandbox.cli("swarm", "--agents", "2")  # no --task: the command's own check
    assert result.code == 2, result
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{PROG}: error: missing --task"), result
    assert line.endswith("(see `kodelyth-ecc swarm --help`)"), result


def test_an_expected_failure_is_not_sent_to_the_help(sandbox: Sandbox) -> None:
    result = sandbox.cli("status", "no-such-session")
    assert result.code == 1, result
    assert "--help" not in result.stderr


# --------------------------------------------------------------------------- examples


def _parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    found = {"": parser}
    for name in COMMANDS:
        sub = command_parser(parser, name)
        assert sub is not None, name
        found[name] = sub
    return found


_SUBSTITUTION = re.compile(r"[$<]\(([^()]*)\)")
_OPERATORS = {"&&", "||", "|", ";", ">", ">>", "<", "&"}


def _examples(help_text: str) -> list[list[list[str]]]:
    """The examples that end ``help_text`` (its last section): for each, the argv of
    every kodelyth-ecc it runs, continuation lines joined, ``$(...)``/``<(...)`` and
    shell operators taken apart; # lines say what the next example does."""
    _, found, section = help_text.rpartition("\nexamples:\n")
    assert found, "no examples section"
    raw = section.rstrip("\n").split("\n")
    assert all(line.startswith("  ") for line in raw), f"examples must be last: {raw}"
    joined = "\n".join(raw).replace("\\\n", " ").split("\n")
    examples: list[list[list[str]]] = []
    for line in (line.strip() for line in joined):
        if line.startswith("#"):
            continue
        runs: list[list[str]] = []
        for piece in [*_SUBSTITUTION.findall(line), _SUBSTITUTION.sub("", line)]:
            lexer = shlex.shlex(piece, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            segment: list[str] = []
            for word in [*lexer, ";"]:
                if word not in _OPERATORS:
                    segment.append(word)
                    continue
                if segment and segment[0] == PROG:
                    runs.append(segment[1:])
                segment = []
        assert runs, f"an example that runs no {PROG}: {line}"
        examples.append(runs)
    return examples


def test_every_help_ends_with_examples_that_parse(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for name, parser in _parsers().items():
        examples = _examples(parser.format_help())
        assert 2 <= len(examples) <= 3, (name, examples)
        # The first two show the command itself (a third may show what follows it).
        assert not name or all(ex[0][:1] == [name] for ex in examples[:2]), (name, examples)
        runs = [argv for example in examples for argv in example]
        for argv in runs:
            try:
                build_parser().parse_args(argv)
            except SystemExit:
                pytest.fail(f"{name}: example `{shlex.join(argv)}` does not parse")
    assert not capsys.readouterr().err


def test_the_example_reader_catches_a_broken_example() -> None:
    """The check above can fail: a flag that went away is caught."""
    broken = "usage: x\n\nexamples:\n  kodelyth-ecc swarm --no-such-flag\n"
    ((argv,),) = _examples(broken)
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    with pytest.raises(AssertionError):
        _examples("usage: x\n\nexamples:\n  kodelyth-ecc demo\n\nnot last\n")
    with pytest.raises(AssertionError):
        _examples("usage: x\n\nexamples:\n  kodelyth-ecc-typo demo\n")
    nested = '  eval "$(kodelyth-ecc completion bash)"\n  kodelyth-ecc a \\\n    --b > f'
    assert _examples(f"usage\n\nexamples:\n{nested}\n") == [
        [["completion", "bash"]],
        [["a", "--b"]],
    ]


def test_examples_keep_their_lines_and_prose_still_wraps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    text = _parsers()["swarm"].format_help()
    assert "\n      --harness codex --session fix-auth --execute\n" in text
    description = text.split("\n\n")[1]
    assert description.startswith("Plan a swarm")
    assert all(len(line) <= 60 for line in description.splitlines())


# --------------------------------------------------------------------------- positionals


def test_every_positional_argument_has_help() -> None:
    for name, parser in _parsers().items():
        for action in parser._actions:
            if action.option_strings or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
            shown = " ".join(parser.format_help().split())
            assert " ".join(action.help.split()) in shown, (name, action.dest)
