"""The command line's help and its reference: every command's --help reads cleanly, and
docs/cli.md is what scripts/cli_reference.py makes of the commands as they are now."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import typer.main
from cli_runner import run_cli

from music_lm.cli import app

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "cli_reference.py"
REFERENCE = ROOT / "docs" / "cli.md"


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group of `music-lm`, the root first, as its words."""
    paths: list[tuple[str, ...]] = []

    def walk(command, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


def test_the_walk_finds_every_command() -> None:
    found = {" ".join(p) for p in command_paths()}
    assert {"", "generate", "continue", "finetune", "corpus", "corpus build"} <= found
    assert len(found) >= 15


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "music-lm")
def test_help_prints_no_type_after_a_flag(monkeypatch, capsys, path) -> None:
    """`--force`, `--sustain/--no-sustain`, `--help`: flags take no value, and their help
    row shows none (Typer would print `<bool>`); a repeatable option shows one value that may
    repeat (`<str> ...`), not a Python type (`<list[str]>`)."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _err = run_cli(monkeypatch, capsys, *path, "--help")
    assert code == 0
    assert "--help" in out
    assert "<bool>" not in out
    assert "<list[" not in out


# ---- docs/cli.md, generated ----


def _script():
    """scripts/cli_reference.py, loaded as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("cli_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_md_is_what_the_script_makes_of_the_commands_now() -> None:
    expected = _script().reference()
    found = REFERENCE.read_text(encoding="utf-8") if REFERENCE.is_file() else ""
    assert found == expected, (
        f"{REFERENCE.relative_to(ROOT)} is out of date: regenerate it with "
        ".venv/bin/python scripts/cli_reference.py > docs/cli.md"
    )


def test_the_reference_names_every_option_of_every_command() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    for command, options in _script().options_by_command().items():
        assert f"`{f'music-lm {command}'.strip()}`" in text, command
        for option in options - {"--help"}:
            assert f"`{option}`" in text, f"music-lm {command} {option}"


# ---- every option the docs name exists ----

# Options of other programs that the docs show (with their own command lines, or alone).
OTHER_TOOLS = {"pip", "pip3", "python", "python3", "accelerate", "torchrun", "streamlit",
               "pytest", "make", "git", "ruff", "uv", "conda", "mamba", "apt", "apt-get",
               "sudo", "docker", "fluidsynth", "timidity", "curl", "wget", "nvidia-smi",
               "hf", "huggingface-cli", "export", "env", "cd", "ls", "du", "tensorboard",
               "chromium", "playwright"}  # fmt: skip
# Options of other programs named alone (`--standalone`); one with `_` or `.` is never
# music-lm's (`--num_processes`, `--server.port`): Typer writes every option with dashes.
OTHER_OPTIONS = {"--standalone", "--cpu", "--nnodes", "--nproc-per-node", "--upgrade",
                 "--editable", "--index-url", "--extra-index-url", "--no-deps",
                 "--require-hashes", "--frozen", "--locked", "--no-sandbox"}  # fmt: skip
GLOBAL_WITH_VALUE = {"--limit"}
OPTION = re.compile(r"^(--[a-z][a-z0-9.\-_]*)")


def _code_units(markdown: str) -> list[str]:
    """The command lines of fenced blocks (continuations joined, prompts and comments
    dropped) and the inline code spans of the prose."""
    units, prose = [], []
    in_fence = False
    block: list[str] = []
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            if in_fence:
                units += _block_lines(block)
                block = []
            in_fence = not in_fence
            continue
        (block if in_fence else prose).append(line)
    units += re.findall(r"`([^`\n]+)`", "\n".join(prose))
    return units


def _block_lines(lines: list[str]) -> list[str]:
    joined = "\n".join(lines).replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = re.sub(r"^\s*\$\s+", "", line)
        line = re.split(r"\s#\s|\s#$|^#", line)[0]
        if line.strip():
            found.append(line.strip())
    return found


def _words(unit: str) -> list[str]:
    try:
        return shlex.split(unit)
    except ValueError:  # an unbalanced quote in prose
        return unit.split()


def _program_start(words: list[str]) -> int | None:
    """Where `music-lm` (or `python -m music_lm.cli`) starts in `words`: the index of its
    first argument; None when the line is not a music-lm command."""
    for i, word in enumerate(words):
        if word.endswith("music-lm"):
            return i + 1
        if word in ("music_lm", "music_lm.cli") and i and words[i - 1] == "-m":
            return i + 1
    return None


def _loose_options(words: list[str]) -> list[str]:
    """The options of a line that runs no music-lm, but those after another program's name
    (OTHER_TOOLS, or a script: `fuzz/run.py --execs 10`), which are that program's."""
    found, other = [], False
    for word in words:
        name = word.strip('()[]{},;:\x27"').split("/")[-1]
        other = other or name in OTHER_TOOLS or name.endswith(".py")
        if not other and (m := OPTION.match(word)):
            found.append(m[1].split("=")[0])
    return found


def misnamed_options(markdown: str, commands: dict[str, set[str]]) -> list[str]:
    """`COMMAND --option` for each option a code line or span of `markdown` names that the
    CLI lacks."""
    every = set().union(*commands.values())
    groups = {name for name in commands if any(c.startswith(f"{name} ") for c in commands)}
    wrong = []
    for unit in _code_units(markdown):
        words = _words(unit)
        start = _program_start(words)
        if start is None:
            wrong += [f"(any) {option}  in: {unit}" for option in _loose_options(words)
                      if option not in every and option not in OTHER_OPTIONS
                      and not set("_.") & set(option)]  # fmt: skip
            continue
        rest = words[start:]
        while rest and rest[0].startswith("-"):  # music-lm's own options, before the command
            option = rest.pop(0).split("=")[0]
            if option not in commands[""]:
                wrong.append(f"music-lm {option}  in: {unit}")
            if option in GLOBAL_WITH_VALUE and "=" not in option and rest:
                rest.pop(0)
        command = ""
        while (
            rest
            and f"{command} {rest[0]}".strip() in commands
            and (command == "" or command in groups)
        ):
            command = f"{command} {rest.pop(0)}".strip()
        for word in rest:
            if (m := OPTION.match(word)) and m[1].split("=")[0] not in commands[command]:
                wrong.append(f"music-lm {command} {m[1]}  in: {unit}")
    return wrong


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_checker_catches_a_wrong_option() -> None:
    commands = _script().options_by_command()
    text = "`music-lm generate --barz 4`\n```bash\nmusic-lm corpus build -s x \\\n --limit 3\n```"
    assert misnamed_options(text, commands) == [
        "music-lm corpus build --limit  in: music-lm corpus build -s x   --limit 3",
        "music-lm generate --barz  in: music-lm generate --barz 4",
    ]
    assert misnamed_options("`pip install --upgrade x`, `--sustain`, `--nope`", commands) == [
        "(any) --nope  in: --nope"
    ]
    launched = "`torchrun --standalone --nproc_per_node 2 -m music_lm.cli train --barz 1`"
    assert misnamed_options(launched, commands) == [f"music-lm train --barz  in: {launched[1:-1]}"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_option_the_docs_name_exists(doc: Path) -> None:
    wrong = misnamed_options(doc.read_text(encoding="utf-8"), _script().options_by_command())
    assert not wrong, "\n".join(wrong)
