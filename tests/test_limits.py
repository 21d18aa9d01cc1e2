"""Resource limits: settable from the environment, the command line and Python, each
refusal one line naming the file, the size and the limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import run_cli

from music_lm.limits import LimitError, Limits, limits, parse_limits, set_limits


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MUSIC_LM_LIMITS", raising=False)
    set_limits(None)
    yield
    set_limits(None)


def test_limits_parse_over_a_base() -> None:
    chosen = parse_limits("file_mb=0.5, notes=10", Limits(tracks=7))
    assert chosen == Limits(file_mb=0.5, notes=10, tracks=7)
    assert chosen.file_bytes == 2**19
    assert isinstance(chosen.notes, int)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("bytes=10", "not a limit: 'bytes=10'"),
        ("notes", "not a limit: 'notes'"),
        ("notes=many", "limit notes takes a number, got 'many'"),
        ("notes=0", "limit notes must be positive, got 0"),
    ],
)
def test_a_bad_limit_is_named(text: str, problem: str) -> None:
    with pytest.raises(LimitError, match=problem):
        parse_limits(text)


def test_the_environment_sets_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSIC_LM_LIMITS", "tracks=3")
    assert limits().tracks == 3
    set_limits(Limits(tracks=5))
    assert limits().tracks == 5  # Python over the environment


def test_a_text_file_over_the_size_limit_is_refused_unread(tmp_path: Path, monkeypatch, capsys):
    source = tmp_path / "big.txt"
    source.write_text("piece " * 200_000)  # 1.2 MB
    code, _out, err = run_cli(monkeypatch, capsys, "--limit", "file_mb=1", "validate", str(source))
    assert code == 2
    assert err.strip() == (
        f"music-lm: error: {source}: 1,200,000 bytes is over the limit of 1,048,576 bytes "
        "(raise it with --limit file_mb=N)"
    )
    code, _out, err = run_cli(monkeypatch, capsys, "validate", str(source))
    assert "over the limit" not in err  # the option lasted one command


def test_a_bad_limit_option_is_a_usage_error(monkeypatch, capsys) -> None:
    code, _out, err = run_cli(monkeypatch, capsys, "--limit", "speed=3", "validate", "x.txt")
    assert code == 2
    assert "not a limit: 'speed=3'" in err


def test_generation_stops_at_the_time_limit(tiny_model: Path, monkeypatch) -> None:
    from music_lm.generation.runner import generate
    from music_lm.generation.settings import GenerationError

    monkeypatch.setenv("MUSIC_LM_LIMITS", "generation_s=0.000001")
    with pytest.raises(GenerationError, match=r"ran past its limit of 1e-06 s"):
        generate(None, models=[tiny_model])
