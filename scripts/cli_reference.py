"""Write the command-line reference, docs/cli.md, from the commands themselves.

    .venv/bin/python scripts/cli_reference.py > docs/cli.md

Every command and group of `music-lm` (the Typer app in music_lm/cli/, walked as the click
command tree Typer builds), each with its usage line, its help and a table of its arguments
and options: names, value, default, help. The same code gives the same file on any machine
and terminal (no widths, colours or paths of this checkout). tests/test_cli_reference.py
fails when docs/cli.md differs from what this prints.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import typer
import typer.main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout: the music_lm beside this script

from music_lm.cli import app  # noqa: E402

PROGRAM = "music-lm"
REGENERATE = ".venv/bin/python scripts/cli_reference.py > docs/cli.md"


def root_command():
    """The click command tree of `music-lm`."""
    return typer.main.get_command(app)


def walk(command=None, ctx=None, name: str = PROGRAM) -> Iterator[tuple[str, object, object]]:
    """(full name, command, context) of every command under `command`, itself first, the
    subcommands in alphabetical order; hidden ones left out."""
    command = command or root_command()
    ctx = typer.Context(command, info_name=name.split()[-1], parent=ctx)
    yield name, command, ctx
    for sub_name, sub in sorted(getattr(command, "commands", {}).items()):
        if not getattr(sub, "hidden", False):
            yield from walk(sub, ctx, f"{name} {sub_name}")


def options_by_command() -> dict[str, set[str]]:
    """Every option string (`--sustain`, `--no-sustain`, `-o`) of each command, by its name
    without the program (`""` for the root: the global options)."""
    found = {}
    for name, command, _ctx in walk():
        key = name[len(PROGRAM) :].strip()
        found[key] = {o for p in command.params for o in (*p.opts, *p.secondary_opts)
                      if o.startswith("-")} | {"--help"}  # fmt: skip
    return found


def _cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _value(param, ctx) -> str:
    if getattr(param, "is_flag", False):
        return ""
    if param.metavar and not param.multiple:  # a repeatable one's is `<str> ...`, for --help
        shown = param.metavar
    else:
        shown = param.display_type(ctx).strip("<>")
        if param.multiple and shown.startswith("list[") and shown.endswith("]"):
            shown = shown[5:-1]
    return f"{shown}, repeatable" if param.multiple else shown


def _default(param) -> str:
    value = param.default
    if getattr(param, "required", False):
        return "required"
    if getattr(param, "is_flag", False):
        if param.secondary_opts and value is not None:  # --lock-tempo/--free-tempo
            return f"`{param.opts[0] if value else param.secondary_opts[0]}`"
        return ""  # a plain flag is off; None: the command decides (its help says how)
    if value is None or value == [] or value == ():
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`"


def _names(param) -> str:
    if param.param_type_name == "argument":
        return f"`{param.name.upper()}`"
    names = [*param.opts, *param.secondary_opts]
    longs = [n for n in names if n.startswith("--")]
    shorts = [n for n in names if not n.startswith("--")]
    return ", ".join(f"`{n}`" for n in [*longs, *shorts])


def _help(command) -> str:
    return inspect.cleandoc(command.help or "").replace("\b\n", "")


def command_section(name: str, command, ctx) -> list[str]:
    depth = name.count(" ") + 1
    lines = [f"{'#' * min(depth + 1, 4)} `{name}`", ""]
    usage = command.get_usage(ctx).removeprefix("Usage: ")
    lines += ["```", usage, "```", ""]
    if _help(command):
        lines += [_help(command), ""]
    if getattr(command, "commands", None):
        subs = sorted(n for n, c in command.commands.items() if not getattr(c, "hidden", False))
        lines += ["Commands: " + ", ".join(f"`{name} {s}`" for s in subs) + ".", ""]
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    if params:
        lines += ["| Argument or option | Value | Default | |", "|---|---|---|---|"]
        for param in params:
            cells = (_names(param), _value(param, ctx) if param.param_type_name == "option"
                     else param.display_type(ctx).strip("<>"), _default(param),
                     _cell(getattr(param, "help", None) or ""))  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def reference() -> str:
    """docs/cli.md, as text."""
    lines = [
        "# Command-line reference",
        "",
        "<!-- Generated from the code: do not edit. Regenerate with",
        f"     {REGENERATE}",
        "     (tests/test_cli_reference.py fails when this file is out of date). -->",
        "",
        "Every command of `music-lm`, its arguments and options, as `--help` gives them. "
        "Each command also takes `--help`. The options of `music-lm` itself (`--debug`, "
        "`--limit`, `--version`) come before the command: `music-lm --limit notes=5000000 "
        "encode huge.mid`.",
        "",
    ]
    for name, command, ctx in walk():
        lines += command_section(name, command, ctx)
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
