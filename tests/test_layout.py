"""The package's layout: one folder per stage, and data flows one way.

Each stage may import only from the stages above it in STAGES (and from itself). The
imports are read with `ast`, those inside functions included, so a lazy import cannot
hide a dependency that runs the wrong way. docs/architecture.md describes the stages.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import music_lm

PACKAGE = Path(music_lm.__file__).resolve().parent

# The stages in data-flow order. A stage is a subpackage of music_lm or a top-level module;
# `models` is the shipped model's data folder (it holds no code beyond its docstring).
STAGES: tuple[str, ...] = (
    "errors",
    "limits",
    "files",
    "midi",
    "tokens",
    "api",
    "corpus",
    "model",
    "models",
    "training",
    "generation",
    "render",
    "page",
    "cli",
)

# What each stage may import: itself and every stage above it.
ALLOWED: dict[str, frozenset[str]] = {
    stage: frozenset(STAGES[: index + 1]) for index, stage in enumerate(STAGES)
}

MAX_MODULE_LINES = 600


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage_of(name: str) -> str | None:
    """'music_lm.generation.runner' -> 'generation'; None for the package itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def imported_modules(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names) of every import of music_lm code in a file, lazy ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name, ()) for a in node.names if a.name.startswith("music_lm")
            ]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            assert not node.level, f"{path}:{node.lineno}: the package uses absolute imports"
            if module.startswith("music_lm"):
                names = tuple(a.name for a in node.names)
                # `from music_lm.cli import codec` imports the module music_lm.cli.codec
                found += [(node.lineno, module, names)]
    return found


def test_every_module_belongs_to_a_stage() -> None:
    strays = [
        module_name(p)
        for p in modules()
        if module_name(p) != "music_lm" and stage_of(module_name(p)) not in ALLOWED
    ]
    assert strays == [], f"modules outside the stages of STAGES: {strays}"


def test_every_stage_imports_only_from_the_stages_above_it() -> None:
    wrong = []
    for path in modules():
        name = module_name(path)
        stage = stage_of(name)
        if stage is None:
            continue  # music_lm/__init__.py: the lazy public API, which may name any stage
        where = path.relative_to(PACKAGE.parent)
        for line, module, names in imported_modules(path):
            target = stage_of(module)
            if target is None:
                if set(names) <= {"__version__"}:
                    continue  # the package's own version string
                wrong.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line} imports {names} from music_lm"
                )
            elif target not in ALLOWED[stage]:
                wrong.append(f"{where}:{line}: {stage} imports {module} ({target})")
    assert wrong == [], "imports against the flow:\n" + "\n".join(wrong)


def test_the_direction_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The check itself: a tokens module that imports the generation stage lazily is found."""
    bad = tmp_path / "music_lm" / "tokens" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from music_lm.generation.runner import generate\n")
    [(line, module, names)] = imported_modules(bad)
    assert (line, module, names) == (2, "music_lm.generation.runner", ("generate",))
    assert stage_of(module) not in ALLOWED["tokens"]


def module_graph() -> dict[str, set[str]]:
    """module -> the music_lm modules it imports (at any depth of the file)."""
    known = {module_name(p) for p in modules()}
    graph: dict[str, set[str]] = {}
    for path in modules():
        edges = set()
        for _line, module, names in imported_modules(path):
            for name in names:  # `from package import module`
                if f"{module}.{name}" in known:
                    edges.add(f"{module}.{name}")
            if module in known:
                edges.add(module)
        # music_lm/__init__.py imports the stages only for type checkers (TYPE_CHECKING)
        graph[module_name(path)] = edges - {module_name(path), "music_lm"}
    return graph


def test_no_imports_run_in_a_circle() -> None:
    graph = module_graph()
    del graph["music_lm"]
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_the_public_api_is_the_table_and_every_name_loads() -> None:
    assert music_lm.__all__ == sorted(music_lm._PUBLIC)
    for name in music_lm.__all__:
        assert getattr(music_lm, name) is not None, name
    assert "generate" in dir(music_lm)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        music_lm.nope  # noqa: B018


def test_music_lm_generate_is_a_function_loaded_on_first_use() -> None:
    code = (
        "import sys, music_lm\n"
        "assert 'torch' not in sys.modules, 'import music_lm loaded torch'\n"
        "text = music_lm.midi_to_text('midi_in/bach_chorale.mid')\n"
        "assert 'torch' not in sys.modules, 'the codec loaded torch'\n"
        "import inspect\n"
        "assert inspect.isfunction(music_lm.generate), type(music_lm.generate)\n"
        "assert 'torch' in sys.modules\n"
        "print(music_lm.generate.__module__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("music_lm.generation.")


def test_every_error_music_lm_raises_on_purpose_derives_from_music_lm_error() -> None:
    """Every class named *Error defined in the package derives from MusicLmError, so the
    CLI and the page catch one class."""
    import importlib

    from music_lm.errors import MusicLmError

    stray = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                cls = getattr(importlib.import_module(module_name(path)), node.name)
                if not issubclass(cls, MusicLmError):
                    stray.append(f"{module_name(path)}.{node.name}")
    assert stray == []
