"""What the command line does at its edges: stdin for every command that reads one file,
the default folders midi_in/ and midi_out/, two inputs that would write one output, the
resource limits on notes, tokens and audio, and --debug's traceback."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import mido
import pytest
from cli_runner import run_cli

from music_lm.api import midi_to_text

ROOT = Path(__file__).resolve().parents[1]
FOLK = ROOT / "midi_in" / "folk_tune.mid"


def stdin_of(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    """The command's stdin holds `data` (bytes, as a pipe gives them)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def notes_of(data: bytes) -> list[tuple[int, int]]:
    """(onset tick, pitch) of every note, read with mido."""
    midi, out = mido.MidiFile(file=io.BytesIO(data)), []
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity > 0:
                out.append((tick * 480 // midi.ticks_per_beat, message.note))
    return sorted(out)


# ---- stdin ----


def test_encode_reads_a_midi_file_on_stdin(monkeypatch, capsys) -> None:
    stdin_of(monkeypatch, FOLK.read_bytes())
    code, out, err = run_cli(monkeypatch, capsys, "encode", "-")
    assert code == 0, err
    assert out == midi_to_text(FOLK)


def test_inspect_reads_stdin_and_names_it(monkeypatch, capsys) -> None:
    stdin_of(monkeypatch, FOLK.read_bytes())
    code, out, err = run_cli(monkeypatch, capsys, "inspect", "-")
    assert code == 0, err
    assert out.startswith("<stdin>: MIDI format 1, 10080 ticks per quarter note")
    assert "  kept exactly: 100 of 100 notes" in out


def test_roundtrip_writes_stdin_as_stdin_txt_and_mid(monkeypatch, capsys, tmp_path) -> None:
    stdin_of(monkeypatch, FOLK.read_bytes())
    code, _out, err = run_cli(monkeypatch, capsys, "roundtrip", "-", "-o", str(tmp_path))
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stdin.mid", "stdin.txt"]
    assert (tmp_path / "stdin.txt").read_text() == midi_to_text(FOLK)
    assert notes_of((tmp_path / "stdin.mid").read_bytes()) == notes_of(FOLK.read_bytes())


def test_validate_reads_stdin(monkeypatch, capsys) -> None:
    stdin_of(monkeypatch, midi_to_text(FOLK).encode())
    code, out, err = run_cli(monkeypatch, capsys, "validate", "-")
    assert (code, out) == (0, "<stdin>: valid\n"), err
    stdin_of(monkeypatch, b"piece style:none bar")
    code, out, err = run_cli(monkeypatch, capsys, "validate", "-")
    assert code == 2
    assert err.startswith("music-lm: error: <stdin>")


# ---- the default folders ----


def test_without_paths_the_commands_read_midi_in_and_write_midi_out(
    tmp_path, monkeypatch, capsys, tiny_model
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "midi_in").mkdir()
    (tmp_path / "midi_in" / "tune.mid").write_bytes(FOLK.read_bytes())
    assert run_cli(monkeypatch, capsys, "encode")[0] == 0
    assert (tmp_path / "midi_out" / "tune.txt").read_text() == midi_to_text(FOLK)
    assert run_cli(monkeypatch, capsys, "roundtrip", "--force")[0] == 0
    assert (tmp_path / "midi_out" / "tune.mid").is_file()
    code, out, _err = run_cli(monkeypatch, capsys, "inspect")
    assert code == 0
    assert "tune.mid" in out
    code, _out, err = run_cli(monkeypatch, capsys, "continue", "-m", str(tiny_model), "--bars",
                              "1", "--random-seed", "1")  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "midi_out").iterdir()) == [
        "tune-1.json", "tune-1.mid", "tune-1.txt", "tune.mid", "tune.txt",
    ]  # fmt: skip


# ---- two inputs, one output ----


def test_two_inputs_that_would_write_one_output_are_refused(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "tune.mid").write_bytes(FOLK.read_bytes())
    (folder / "tune.midi").write_bytes(FOLK.read_bytes())
    out = tmp_path / "out"
    code, _out, err = run_cli(monkeypatch, capsys, "encode", str(folder), "-o", str(out))
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0] == (
        f"music-lm: error: {out / 'tune.txt'}: is also the output of {folder / 'tune.mid'}; "
        "rename one"
    )
    assert lines[-1] == "encoded 1 file(s); 1 failed"
    assert [p.name for p in out.iterdir()] == ["tune.txt"]


# ---- the resource limits ----


def test_a_file_over_the_notes_limit_is_refused_by_name(monkeypatch, capsys) -> None:
    notes = len(notes_of(FOLK.read_bytes()))
    for command in ("inspect", "encode"):
        code, _out, err = run_cli(monkeypatch, capsys, "--limit", f"notes={notes - 1}",
                                  command, str(FOLK))  # fmt: skip
        assert code == 2
        assert err == (f"music-lm: error: {FOLK}: over {notes - 1:,} notes (the limit; raise it "
                       "with --limit notes=N)\n")  # fmt: skip
    assert run_cli(monkeypatch, capsys, "--limit", f"notes={notes}", "inspect", str(FOLK))[0] == 0


def test_a_text_over_the_tokens_limit_is_refused_by_name(tmp_path, monkeypatch, capsys) -> None:
    text = tmp_path / "tune.txt"
    text.write_text(midi_to_text(FOLK))
    tokens = len(text.read_text().split())
    for command in (["validate", str(text)], ["decode", str(text), "-o", str(tmp_path / "o.mid")]):
        code, _out, err = run_cli(monkeypatch, capsys, "--limit", f"tokens={tokens - 1}", *command)
        assert code == 2
        assert f"the text has {tokens:,} tokens, over the limit of {tokens - 1:,}" in err
        assert str(text) in err
    assert not (tmp_path / "o.mid").exists()
    code, _out, _err = run_cli(monkeypatch, capsys, "--limit", f"tokens={tokens}", "validate",
                               str(text))  # fmt: skip
    assert code == 0


def test_a_render_over_the_audio_limit_is_refused_before_any_work(
    tmp_path, monkeypatch, capsys
) -> None:
    pytest.importorskip("fluidsynth")
    out = tmp_path / "tune.wav"
    code, _out, err = run_cli(monkeypatch, capsys, "--limit", "audio_s=5", "render", str(FOLK),
                              "-o", str(out))  # fmt: skip
    assert code == 2
    assert str(FOLK) in err
    assert "s of audio is over the limit of 5 s (raise it with --limit audio_s=N)" in err
    assert not out.exists()


# ---- --debug ----


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    """Run as the installed command runs (its own process: the traceback is what Python
    prints when an error leaves main)."""
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd nonsense")
    command = [sys.executable, "-c", "from music_lm.cli import main; main()"]
    plain = subprocess.run([*command, "inspect", str(bad)], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)  # fmt: skip
    debug = subprocess.run([*command, "--debug", "inspect", str(bad)], capture_output=True,
                           text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert plain.returncode == 2
    assert "Traceback" not in plain.stderr
    assert plain.stderr.startswith(f"music-lm: error: {bad}: ")
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert 'music_lm/midi/read.py", line' in debug.stderr  # where the error was raised
    assert (
        debug.stderr.strip().splitlines()[-1].startswith(f"music_lm.midi.read.MidiError: {bad}: ")
    )
