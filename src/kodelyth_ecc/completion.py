"""Shell completion: the scripts for bash, zsh and fish, and the candidates they ask for.

The static part of each script (commands, their flags, what each flag's value and each
positional argument is) is generated from the argparse parsers of ``main``, so a new flag
is completed without an edit here. Session names and worker slugs change as you work:
the scripts ask the hidden ``kodelyth-ecc __complete sessions|workers`` for them, which
``candidates`` answers from the directories alone (``sessiondir``), without tmux, never
raising. Everything a script receives from it is data: filtered by prefix and added as
literal words, never evaluated.
"""

from __future__ import annotations

import os
import re

from kodelyth_ecc.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator, Sequence

# The scripts call the candidates command (main.COMPLETE) as `__complete sessions
# [--coordination-root DIR]` and `__complete workers SESSION [--coordination-root DIR]`.
ROOT_FLAGS = ("--coordination-root", "--coord-root")

# What a value completes to, by its metavar. Kinds: files (any path), dirs, json (*.json
# files and the directories on the way), sessions, workers (of the SESSION typed before).
_METAVAR_KINDS: dict[str, tuple[str, ...]] = {
    "FILE": ("files",),
    "PATH": ("files",),
    "DIR": ("dirs",),
    "BUNDLE.json": ("json",),
    "BUNDLE.json|SESSION": ("sessions", "json"),
    "RUN": ("sessions", "json"),
    "SESSION": ("sessions",),
    "WORKER": ("workers",),
}
# Words a script may hold unquoted in its tables: flags, command names, choices.
_WORD = re.compile(r"-{0,2}[A-Za-z0-9][A-Za-z0-9._/-]*")


class Arg(Record):
    """An option (``flags``) or a positional argument (no flags), as completion needs it.

    ``takes``: "flag" (no value), "one", "many" (nargs + or *), and for positionals also
    "optional"; ``kinds`` and ``choices``: what its value completes to."""

    flags: tuple[str, ...]
    metavar: str
    help: str
    takes: str
    kinds: tuple[str, ...]
    choices: tuple[str, ...]
    repeat: bool
    excludes: tuple[str, ...]


class Command(Record):
    """A command's completion: its options and positionals ("" is the top level)."""

    name: str
    help: str
    options: tuple[Arg, ...]
    positionals: tuple[Arg, ...]


def _summary(text: str | None) -> str:
    """An option's help as a one-line description: its first clause, shortened."""
    text = " ".join((text or "").split())
    if len(text) <= 60:
        return text
    for stop in ("; ", ": ", " (", ". "):
        head, found, _ = text.partition(stop)
        if found and len(head) >= 12:
            text = head
    return text if len(text) <= 72 else text[:71].rstrip() + "…"


def _value(action: argparse.Action) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The kinds and the choices an argument's value completes to."""
    if action.choices is not None:
        return (), tuple(str(c) for c in action.choices if _WORD.fullmatch(str(c)))
    if action.dest == "harness":
        from kodelyth_ecc.harnesses import HARNESSES

        return (), tuple(HARNESSES)
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    return _METAVAR_KINDS.get(metavar, ()), ()


def _arg(action: argparse.Action, excludes: tuple[str, ...]) -> Arg:
    import argparse

    kinds, choices = _value(action)
    if action.nargs == 0:
        takes = "flag"
    elif action.nargs in ("+", "*", argparse.REMAINDER):
        takes = "many"
    elif action.nargs == "?" and not action.option_strings:
        takes = "optional"
    else:
        takes = "one"
    metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    return Arg(
        flags=tuple(f for f in action.option_strings if _WORD.fullmatch(f)),
        metavar=metavar,
        help=_summary(action.help),
        takes=takes,
        kinds=kinds,
        choices=choices,
        repeat=isinstance(action, (argparse._AppendAction, argparse._CountAction)),
        excludes=excludes,
    )


def _command(name: str, parser: argparse.ArgumentParser, help: str) -> Command:
    import argparse

    exclusive: dict[int, tuple[str, ...]] = {}
    for group in parser._mutually_exclusive_groups:
        flags = tuple(f for a in group._group_actions for f in a.option_strings)
        for action in group._group_actions:
            exclusive[id(action)] = flags
    options: list[Arg] = []
    positionals: list[Arg] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        arg = _arg(action, exclusive.get(id(action), tuple(action.option_strings)))
        (options if action.option_strings else positionals).append(arg)
    return Command(name, _summary(help), tuple(options), tuple(positionals))


def commands() -> list[Command]:
    """The top level (name "") and every command, from the parsers themselves."""
    import argparse

    from kodelyth_ecc.main import build_parser

    parser = build_parser()
    found = [_command("", parser, "")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                if _WORD.fullmatch(name):
                    found.append(_command(name, sub, helps.get(name, "")))
    return found


# --- the candidates the scripts ask for --------------------------------------------------


def candidates(words: Sequence[str]) -> list[str]:
    """The answer to ``__complete WORDS``: session names (``sessions``) or a session's
    worker slugs (``workers SESSION``), under ``--coordination-root DIR`` when given,
    else ``<repo>/.orchestration``. Any problem (no repository, no such session, a bad
    name, an unreadable directory) is no candidates: completion must never get in the way."""
    try:
        return _candidates(list(words))
    except Exception:
        return []


def _candidates(words: list[str]) -> list[str]:
    from kodelyth_ecc import sessiondir

    explicit = None
    for flag in ROOT_FLAGS:
        if flag in words[:-1]:
            at = words.index(flag)
            explicit = words[at + 1]
            del words[at : at + 2]
    root = _coordination_root(explicit)
    if root is None:
        return []
    if words == ["sessions"]:
        return sessiondir.list_session_names(root)
    if len(words) == 2 and words[0] == "workers" and sessiondir.is_session_name(words[1]):
        return sessiondir.SessionDir.at(root, words[1]).worker_slugs()
    return []


def _coordination_root(explicit: str | None) -> str | None:
    """As every command finds it (commands._common), but None outside a repository."""
    if explicit:
        explicit = os.path.expanduser(explicit)
    from kodelyth_ecc.commands._common import coordination_root
    from kodelyth_ecc.errors import KodelythError

    try:
        return coordination_root(explicit)
    except KodelythError:
        return None


# --- the scripts ------------------------------------------------------------------------


def script(shell: str) -> str:
    """The completion script for ``shell``: bash, zsh or fish (`completion`'s choices)."""
    render: dict[str, Callable[[list[Command]], str]] = {
        "bash": _bash,
        "zsh": _zsh,
        "fish": _fish,
    }
    return render[shell](commands())


def _value_word(arg: Arg) -> str:
    """How the bash and fish scripts' tables describe what an argument's value is:
    ``flag``, ``none`` (a value, nothing to complete), ``choices:a,b``, or kinds joined
    by ``+`` (``sessions+json``); ``many:`` before it for a flag taking several values."""
    if arg.takes == "flag":
        return "flag"
    what = ("choices:" + ",".join(arg.choices)) if arg.choices else "+".join(arg.kinds)
    what = what or "none"
    return f"many:{what}" if arg.takes == "many" and arg.flags else what


def _valued(found: list[Command]) -> Iterator[tuple[list[str], str]]:
    """The bash and fish tables of flags taking a value: the "COMMAND FLAG" keys (a
    flag and its aliases) and the value word."""
    for command in found:
        for arg in command.options:
            word = _value_word(arg)
            if word != "flag":
                yield [f"{command.name} {flag}" for flag in arg.flags], word


def _positional_table(found: list[Command]) -> Iterator[tuple[str, list[str]]]:
    """Each command with positionals, and one word per positional (``_value_word``),
    ``*`` after one that repeats."""
    for command in found:
        slots = [_value_word(p) + ("*" if p.takes == "many" else "") for p in command.positionals]
        if command.name and slots:
            yield command.name, slots


def _sh(word: str) -> str:
    """A word in single quotes for bash and zsh."""
    return "'" + word.replace("'", "'\\''") + "'"


# One function, tables generated per command; the logic is the same for every command.
_BASH_LOGIC = r"""
# Drop a pair of quotes around a word, or its backslashes; ~/ is $HOME/ (not eval'd).
__kodelyth_ecc_dequote() {
    local w=$1
    case $w in
        \'*\') w=${w:1:${#w}-2} ;;
        \"*\") w=${w:1:${#w}-2} ;;
        *) w=${w//\\/} ;;
    esac
    case $w in
        \~) w=${HOME-} ;;
        \~/*) w=${HOME-}/${w:2} ;;
    esac
    __kodelyth_ecc_reply=$w
}

# Add to COMPREPLY the candidates of a value word (see __kodelyth_ecc_value) that
# start with $cur: every candidate is data, matched literally and never expanded.
# Every function returns 0: under a user's `set -e` a failing one ends the shell.
__kodelyth_ecc_add() {
    local what=$1 kind c
    local -a list=()
    what=${what#many:}
    what=${what%\*}
    if [[ $what == choices:* ]]; then
        IFS=, read -r -a list <<<"${what#choices:}"
        for c in "${list[@]}"; do
            [[ $c == "$cur"* ]] && COMPREPLY+=("$c")
        done
        return 0
    fi
    IFS=+ read -r -a list <<<"$what"
    local -a ask=()
    [[ -n $root ]] && ask=(--coordination-root "$root")
    for kind in "${list[@]}"; do
        case $kind in
            files | dirs | json)
                compopt -o filenames 2>/dev/null || :
                local -a found=()
                case $kind in
                    files) while IFS= read -r c; do found+=("$c"); done < <(compgen -f -- "$cur") ;;
                    dirs) while IFS= read -r c; do found+=("$c"); done < <(compgen -d -- "$cur") ;;
                    json)
                        while IFS= read -r c; do found+=("$c"); done < <(
                            compgen -f -X '!*.[jJ][sS][oO][nN]' -- "$cur"
                            compgen -d -- "$cur"
                        )
                        ;;
                esac
                COMPREPLY+=("${found[@]}")
                ;;
            sessions | workers)
                local -a query=(sessions)
                if [[ $kind == workers ]]; then
                    [[ -n $session ]] || continue
                    query=(workers "$session")
                fi
                while IFS= read -r c; do
                    [[ -n $c && $c == "$cur"* ]] && COMPREPLY+=("$c")
                done < <("$prog" __complete "${query[@]}" "${ask[@]}" 2>/dev/null)
                ;;
        esac
    done
    return 0
}

_kodelyth_ecc() {
    local IFS=$' \t\n'
    local -a words=() pos=() __kodelyth_ecc_list=()
    local i w n cword=0 glue=0
    # COMP_WORDBREAKS splits --flag=value at the '=': join the pieces again.
    for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
        w=${COMP_WORDS[i]}
        n=${#words[@]}
        if ((glue)); then
            words[n - 1]+=$w
            glue=0
        elif ((n > 1)) && [[ $w == = && ${words[n - 1]} == --* && ${words[n - 1]} != *=* ]]; then
            words[n - 1]+==
            glue=1
        else
            words+=("$w")
        fi
        ((i == COMP_CWORD)) && cword=$((${#words[@]} - 1))
    done
    ((cword > 0)) || return 0
    local __kodelyth_ecc_reply cur=${words[cword]} cmd= pending= many= root= session=
    local dashdash=0 prog
    __kodelyth_ecc_dequote "${words[0]}"
    prog=$__kodelyth_ecc_reply
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        if [[ -n $pending ]]; then
            if [[ $pending == --coordination-root || $pending == --coord-root ]]; then
                __kodelyth_ecc_dequote "$w"
                root=$__kodelyth_ecc_reply
            fi
            pending=
            continue
        fi
        if ((!dashdash)) && [[ $w == -- && -n $cmd ]]; then
            dashdash=1
            many=
            continue
        fi
        if ((!dashdash)) && [[ $w == -?* ]]; then
            many=
            if [[ $w == --*=* ]]; then
                case ${w%%=*} in
                    --coordination-root | --coord-root)
                        __kodelyth_ecc_dequote "${w#*=}"
                        root=$__kodelyth_ecc_reply
                        ;;
                esac
                continue
            fi
            __kodelyth_ecc_value "$cmd" "$w"
            case $__kodelyth_ecc_reply in
                flag) ;;
                many:*) many=$__kodelyth_ecc_reply ;;
                *) pending=$w ;;
            esac
            continue
        fi
        if [[ -z $cmd ]]; then
            cmd=$w
            continue
        fi
        [[ -n $many ]] && continue
        pos+=("$w")
    done
    if ((${#pos[@]})); then
        __kodelyth_ecc_dequote "${pos[0]}"
        session=$__kodelyth_ecc_reply
    fi
    COMPREPLY=()
    if [[ -n $pending ]]; then
        __kodelyth_ecc_value "$cmd" "$pending"
        __kodelyth_ecc_add "$__kodelyth_ecc_reply"
        return 0
    fi
    if ((!dashdash)) && [[ $cur == --*=* ]]; then
        local opt=${cur%%=*}
        __kodelyth_ecc_value "$cmd" "$opt"
        [[ $__kodelyth_ecc_reply == flag ]] && return 0
        local what=$__kodelyth_ecc_reply
        cur=${cur#*=}
        __kodelyth_ecc_add "$what"
        if [[ $COMP_WORDBREAKS != *=* ]]; then
            for i in "${!COMPREPLY[@]}"; do COMPREPLY[i]=$opt=${COMPREPLY[i]}; done
        fi
        return 0
    fi
    if ((!dashdash)) && [[ $cur == -* ]]; then
        __kodelyth_ecc_options "$cmd"
        for w in "${__kodelyth_ecc_list[@]}"; do
            [[ $w == "$cur"* ]] && COMPREPLY+=("$w")
        done
        return 0
    fi
    if [[ -z $cmd ]]; then
        for w in "${__kodelyth_ecc_commands[@]}"; do
            [[ $w == "$cur"* ]] && COMPREPLY+=("$w")
        done
        return 0
    fi
    if [[ -n $many ]]; then
        __kodelyth_ecc_add "$many"
        return 0
    fi
    __kodelyth_ecc_positionals "$cmd"
    local -a slots=("${__kodelyth_ecc_list[@]}")
    n=${#pos[@]}
    if ((n >= ${#slots[@]})) && ((${#slots[@]})) && [[ ${slots[${#slots[@]} - 1]} == *\* ]]; then
        n=$((${#slots[@]} - 1))
    fi
    if ((n < ${#slots[@]})); then
        __kodelyth_ecc_add "${slots[n]}"
    elif [[ -z $cur ]] && ((!dashdash)); then
        # No argument left to give: what remains are the command's flags.
        __kodelyth_ecc_options "$cmd"
        COMPREPLY=("${__kodelyth_ecc_list[@]}")
    fi
    return 0
}

complete -F _kodelyth_ecc kodelyth-ecc
"""


def _bash(found: list[Command]) -> str:
    names = [c.name for c in found if c.name]
    lines = [
        "# bash completion for kodelyth-ecc, generated by `kodelyth-ecc completion bash`.",
        '# Load it from ~/.bashrc: eval "$(kodelyth-ecc completion bash)"',
        "",
        f"__kodelyth_ecc_commands=({' '.join(map(_sh, names))})",
        "",
        "# A command's flags (the top level's for none).",
        "__kodelyth_ecc_options() {",
        "    case $1 in",
    ]
    for command in found:
        flags = " ".join(_sh(f) for arg in command.options for f in arg.flags)
        lines.append(f"        {_sh(command.name)}) __kodelyth_ecc_list=({flags}) ;;")
    lines += [
        "        *) __kodelyth_ecc_list=() ;;",
        "    esac",
        "}",
        "",
        "# What the value of a command's flag completes to: flag (it takes none), none,",
        "# choices:a,b, kinds joined by + (files, dirs, json, sessions, workers); many: first",
        "# when the flag takes several values.",
        "__kodelyth_ecc_value() {",
        '    case "$1 $2" in',
    ]
    for keys, word in _valued(found):
        cases = " | ".join(map(_sh, keys))
        lines.append(f"        {cases}) __kodelyth_ecc_reply={_sh(word)} ;;")
    lines += [
        "        *) __kodelyth_ecc_reply=flag ;;",
        "    esac",
        "}",
        "",
        "# A command's positional arguments, in order (* after one that repeats).",
        "__kodelyth_ecc_positionals() {",
        "    case $1 in",
    ]
    for name, slots in _positional_table(found):
        lines.append(f"        {_sh(name)}) __kodelyth_ecc_list=({' '.join(map(_sh, slots))}) ;;")
    lines += ["        *) __kodelyth_ecc_list=() ;;", "    esac", "}"]
    return "\n".join(lines) + "\n" + _BASH_LOGIC


# --- zsh: native _arguments specs, one per command ---------------------------------------

_ZSH_LOGIC = r"""
# The value of a word on the line: quotes removed, ~/ as $HOME/ (never eval'd).
__kodelyth_ecc_unquote() {
    REPLY=${(Q)1}
    case $REPLY in
        '~') REPLY=$HOME ;;
        '~/'*) REPLY=$HOME/${REPLY#'~/'} ;;
    esac
}

# Session names or (with a session) worker slugs, from `kodelyth-ecc __complete`.
__kodelyth_ecc_ask() {
    local REPLY
    local -a ask cands
    __kodelyth_ecc_unquote "${opt_args[--coordination-root]:-${opt_args[--coord-root]}}"
    [[ -n $REPLY ]] && ask=(--coordination-root "$REPLY")
    cands=(${(f)"$("$__kodelyth_ecc_prog" __complete "$@" "${ask[@]}" 2>/dev/null)"})
    reply=("${cands[@]}")
}

__kodelyth_ecc_sessions() {
    local -a reply
    __kodelyth_ecc_ask sessions
    _wanted sessions expl session compadd -a reply
}

__kodelyth_ecc_workers() {
    local REPLY
    local -a reply
    __kodelyth_ecc_unquote "${line[1]}"
    [[ -n $REPLY ]] || return 1
    __kodelyth_ecc_ask workers "$REPLY"
    _wanted workers expl worker compadd -a reply
}

__kodelyth_ecc_sessions_or_json() {
    _alternative 'sessions:session:__kodelyth_ecc_sessions' \
        'files:bundle file:_files -g "*.(json|JSON)(-.)"'
}

_kodelyth_ecc() {
    local curcontext=$curcontext state state_descr line ret=1
    local __kodelyth_ecc_prog REPLY
    typeset -A opt_args
    __kodelyth_ecc_unquote "${words[1]}"
    __kodelyth_ecc_prog=$REPLY
    _arguments -C "${__kodelyth_ecc_top[@]}" '1: :->command' '*:: :->argument' && ret=0
    case $state in
        command)
            _describe -t commands 'kodelyth-ecc command' __kodelyth_ecc_commands && ret=0
            ;;
        argument)
            curcontext=${curcontext%:*:*}:kodelyth-ecc-$words[1]:
            local spec=__kodelyth_ecc_spec_${words[1]//-/_}
            (( ${+parameters[$spec]} )) && _arguments -s -S "${(@P)spec}" && ret=0
            ;;
    esac
    return ret
}

if (( $+functions[compdef] )); then
    compdef _kodelyth_ecc kodelyth-ecc
else
    print -u2 "kodelyth-ecc completion: run compinit first (autoload -U compinit && compinit)"
fi
"""


def _zsh_escape(text: str) -> str:
    """Text inside an _arguments spec's [description] or :message."""
    return re.sub(r"([\\\[\]:])", r"\\\1", text)


def _zsh_action(arg: Arg) -> str:
    if arg.choices:
        return "(" + " ".join(arg.choices) + ")"
    kinds = set(arg.kinds)
    if {"sessions", "json"} <= kinds:
        return "__kodelyth_ecc_sessions_or_json"
    for kind, action in (
        ("sessions", "__kodelyth_ecc_sessions"),
        ("workers", "__kodelyth_ecc_workers"),
        ("json", '_files -g "*.(json|JSON)(-.)"'),
        ("dirs", "_files -/"),
        ("files", "_files"),
    ):
        if kind in kinds:
            return action
    return " "


def _zsh_specs(command: Command) -> list[str]:
    specs: list[str] = []
    for arg in command.options:
        excluded = " ".join(arg.excludes)
        if {"-h", "--help"} & set(arg.flags) or "--version" in arg.flags:
            excluded = "- *"  # nothing else goes with them
        for flag in arg.flags:
            spec = ("*" if arg.repeat else f"({excluded})") + flag
            if arg.takes != "flag":
                spec += "=" if flag.startswith("--") else "+"
            spec += f"[{_zsh_escape(arg.help)}]"
            if arg.takes != "flag":
                spec += f":{_zsh_escape(arg.metavar)}:{_zsh_action(arg)}"
            specs.append(spec)
    for arg in command.positionals:
        colons = {"optional": "::", "many": "*:"}.get(arg.takes, ":")
        specs.append(f"{colons}{_zsh_escape(arg.metavar)}:{_zsh_action(arg)}")
    return specs


def _zsh(found: list[Command]) -> str:
    lines = [
        "#compdef kodelyth-ecc",
        "# zsh completion for kodelyth-ecc, generated by `kodelyth-ecc completion zsh`.",
        "# Load it from ~/.zshrc, after compinit: source <(kodelyth-ecc completion zsh)",
        "# (or save it as _kodelyth-ecc in a directory of $fpath).",
        "",
        "__kodelyth_ecc_commands=(",
    ]
    lines += [f"    {_sh(c.name + ':' + c.help)}" for c in found if c.name]
    lines.append(")")
    for command in found:
        var = (
            "__kodelyth_ecc_top"
            if not command.name
            else ("__kodelyth_ecc_spec_" + command.name.replace("-", "_"))
        )
        specs = [s for s in _zsh_specs(command) if command.name or not s.startswith(":")]
        lines.append(f"{var}=(")
        lines += [f"    {_sh(spec)}" for spec in specs]
        lines.append(")")
    return "\n".join(lines) + "\n" + _ZSH_LOGIC


# --- fish: complete entries per flag, one function for positionals -----------------------

_FISH_LOGIC = r"""
# Where the cursor is, as four lines: the command ("" before one), the value word of the
# positional argument (or several values' flag) being typed ("" for none: a flag's
# value or a flag), the session typed, the --coordination-root typed.
function __kodelyth_ecc_state
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l cmd ''
    set -l pending ''
    set -l many ''
    set -l root ''
    set -l dashdash 0
    set -l pos
    for w in $tokens
        if test -n "$pending"
            contains -- $pending --coordination-root --coord-root; and set root $w
            set pending ''
            continue
        end
        if test $dashdash = 0 -a "$w" = -- -a -n "$cmd"
            set dashdash 1
            set many ''
            continue
        end
        if test $dashdash = 0; and string match -qr -- '^-.' $w
            set many ''
            if string match -qr -- '^--[^=]*=' $w
                set -l parts (string split -m 1 = -- $w)
                contains -- $parts[1] --coordination-root --coord-root; and set root $parts[2]
                continue
            end
            set -l value (__kodelyth_ecc_value "$cmd" $w)
            switch $value
                case flag
                case 'many:*'
                    set many $value
                case '*'
                    set pending $w
            end
            continue
        end
        if test -z "$cmd"
            set cmd $w
            continue
        end
        test -n "$many"; and continue
        set -a pos $w
    end
    set -l what ''
    set -l current (commandline -ct)
    set -l free 0  # the word typed is an argument, not a flag nor a flag's value
    test -z "$pending" -a -n "$cmd"; and not string match -qr -- '^-' "$current"; and set free 1
    test $dashdash = 1; and set free 1
    if test $free = 1
        if test -n "$many"
            set what $many
        else if test -z "$pending"
            set -l slots (__kodelyth_ecc_positionals $cmd)
            set -l n (math (count $pos) + 1)
            if test $n -gt (count $slots); and test (count $slots) -gt 0
                string match -q -- '*\*' $slots[-1]; and set n (count $slots)
            end
            test $n -le (count $slots); and set what $slots[$n]
        end
    end
    echo $cmd
    echo $what
    if test (count $pos) -gt 0
        echo $pos[1]
    else
        echo ''
    end
    echo $root
end

function __kodelyth_ecc_needs_command
    set -l state (__kodelyth_ecc_state)
    test -z "$state[1]"
end

function __kodelyth_ecc_using --argument-names name
    set -l state (__kodelyth_ecc_state)
    test "$state[1]" = "$name"
end

# The positional (or several values) being typed completes to KIND.
function __kodelyth_ecc_wants --argument-names kind
    set -l state (__kodelyth_ecc_state)
    set -l what (string replace -r '^many:' '' -- $state[2] | string replace -r '\*$' '')
    if test "$kind" = choices
        string match -q -- 'choices:*' $what
        return
    end
    contains -- $kind (string split + -- $what)
end

function __kodelyth_ecc_choices
    set -l state (__kodelyth_ecc_state)
    set -l what (string replace -r '^many:' '' -- $state[2] | string replace -r '\*$' '')
    string split , -- (string replace -r '^choices:' '' -- $what)
end

# Session names or a session's worker slugs, from `kodelyth-ecc __complete`: printed as
# data (fish adds them as literal words).
function __kodelyth_ecc_ask --argument-names kind
    set -l state (__kodelyth_ecc_state)
    set -l prog (string replace -r '^~(?=/|$)' $HOME -- (commandline -opc)[1])
    set -l ask $kind
    if test "$kind" = workers
        test -n "$state[3]"; or return
        set ask workers $state[3]
    end
    if test -n "$state[4]"
        set -a ask --coordination-root (string replace -r '^~(?=/|$)' $HOME -- $state[4])
    end
    command $prog __complete $ask 2>/dev/null
end

complete -c kodelyth-ecc -n '__kodelyth_ecc_wants sessions' -a '(__kodelyth_ecc_ask sessions)'
complete -c kodelyth-ecc -n '__kodelyth_ecc_wants workers' -a '(__kodelyth_ecc_ask workers)'
complete -c kodelyth-ecc -n '__kodelyth_ecc_wants choices' -a '(__kodelyth_ecc_choices)'
complete -c kodelyth-ecc -n '__kodelyth_ecc_wants files' -F
complete -c kodelyth-ecc -n '__kodelyth_ecc_wants json' -a '(__fish_complete_suffix .json)'
complete -c kodelyth-ecc -n '__kodelyth_ecc_wants dirs' \
    -a '(__fish_complete_directories (commandline -ct))'
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_flag_args(arg: Arg) -> str:
    parts = []
    for flag in arg.flags:
        if flag.startswith("--"):
            parts.append(f"-l {_fish_quote(flag[2:])}")
        elif len(flag) == 2:
            parts.append(f"-s {_fish_quote(flag[1:])}")
        else:
            parts.append(f"-o {_fish_quote(flag[1:])}")
    if arg.takes in ("one", "optional"):
        if arg.choices:
            parts.append(f"-x -a {_fish_quote(' '.join(arg.choices))}")
        elif "files" in arg.kinds:
            parts.append("-r -F")
        elif "json" in arg.kinds:
            parts.append("-x -a '(__fish_complete_suffix .json)'")
        elif "dirs" in arg.kinds:
            parts.append("-x -a '(__fish_complete_directories (commandline -ct))'")
        else:
            parts.append("-x")
    if arg.help:
        parts.append(f"-d {_fish_quote(arg.help)}")
    return " ".join(parts)


def _fish(found: list[Command]) -> str:
    lines = [
        "# fish completion for kodelyth-ecc, generated by `kodelyth-ecc completion fish`.",
        "# Load it: kodelyth-ecc completion fish > ~/.config/fish/completions/kodelyth-ecc.fish",
        "",
        "complete -c kodelyth-ecc -e",
        "complete -c kodelyth-ecc -f  # file names only where an argument is a file",
        "",
        "# What the value of a command's flag is (see the bash script's __kodelyth_ecc_value).",
        "function __kodelyth_ecc_value --argument-names cmd flag",
        '    switch "$cmd $flag"',
    ]
    for keys, word in _valued(found):
        cases = " ".join(map(_fish_quote, keys))
        lines += [f"        case {cases}", f"            echo {_fish_quote(word)}"]
    lines += [
        "        case '*'",
        "            echo flag",
        "    end",
        "end",
        "",
        "# A command's positional arguments, in order (* after one that repeats).",
        "function __kodelyth_ecc_positionals --argument-names cmd",
        "    switch $cmd",
    ]
    for name, slots in _positional_table(found):
        lines += [
            f"        case {_fish_quote(name)}",
            f"            printf '%s\\n' {' '.join(map(_fish_quote, slots))}",
        ]
    lines += ["    end", "end", _FISH_LOGIC]
    for command in found:
        if command.name:
            lines.append(
                f"complete -c kodelyth-ecc -n __kodelyth_ecc_needs_command -a "
                f"{_fish_quote(command.name)} -d {_fish_quote(command.help)}"
            )
    for command in found:
        condition = (
            "__kodelyth_ecc_needs_command"
            if not command.name
            else f"__kodelyth_ecc_using {command.name}"
        )
        for arg in command.options:
            lines.append(
                f"complete -c kodelyth-ecc -n {_fish_quote(condition)} {_fish_flag_args(arg)}"
            )
    return "\n".join(lines) + "\n"
