"""The `music-lm` command: each subcommand through Typer's CliRunner, the exit codes of
`music_lm.cli.main` in-process, and the real installed entry point in a subprocess."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import mido
import pytest
from typer.testing import CliRunner

import music_lm
from music_lm.cli import app, main

runner = CliRunner()
MUSIC_LM = Path(sys.executable).with_name("music-lm")


def files_under(folder: Path) -> list[str]:
    """Every file under `folder` (hidden ones too), as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the entry point `main()` in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["music-lm", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    out, err = capsys.readouterr()
    return stop.value.code, out, err


@pytest.fixture
def midi_folder(tmp_path: Path, simple_midi_file: Path, make_midi, note) -> Path:
    """in/a.mid, in/sub/b.MIDI, in/sub/deeper/c.midi and a stray in/notes.txt."""
    folder = tmp_path / "in"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "a.mid").write_bytes(simple_midi_file.read_bytes())
    make_midi(note(0, 480, 62), path=folder / "sub" / "b.MIDI")
    make_midi(note(0, 240, 64, 100, channel=9), path=folder / "sub" / "deeper" / "c.midi")
    (folder / "notes.txt").write_text("not a MIDI file\n")
    return folder


def write_bad_midi(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a MIDI file at all\n")
    return path


# ---- encode ----


def test_encode_prints_the_token_text_of_a_file(simple_midi_file):
    result = runner.invoke(app, ["encode", str(simple_midi_file)])
    assert result.exit_code == 0, result.output
    assert result.stdout == music_lm.midi_to_text(simple_midi_file)
    assert result.stdout.startswith("piece style:none tempo:100 ts:4/4 key:C:major ")
    assert result.stdout.endswith("\nend\n")


def test_encode_with_output_writes_the_text_file(simple_midi_file, tmp_path):
    target = tmp_path / "out" / "song.txt"
    result = runner.invoke(app, ["encode", str(simple_midi_file), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert target.read_text() == music_lm.midi_to_text(simple_midi_file)
    assert files_under(target.parent) == ["song.txt"]


def test_encode_a_folder_recursively_to_the_same_relative_paths(midi_folder, tmp_path):
    out = tmp_path / "texts"
    result = runner.invoke(app, ["encode", str(midi_folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert files_under(out) == ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]
    for text_file, midi_file in [
        ("a.txt", "a.mid"),
        ("sub/b.txt", "sub/b.MIDI"),
        ("sub/deeper/c.txt", "sub/deeper/c.midi"),
    ]:
        assert (out / text_file).read_text() == music_lm.midi_to_text(midi_folder / midi_file)
    assert "encoded 3 file(s); 0 failed" in result.stderr


def test_encode_refuses_to_overwrite_without_force(simple_midi_file, tmp_path, monkeypatch, capsys):
    target = tmp_path / "song.txt"
    target.write_text("keep me\n")
    code, _, err = run_main(monkeypatch, capsys, "encode", str(simple_midi_file), "-o", str(target))
    assert code == 2
    assert target.read_text() == "keep me\n"
    assert err.splitlines() == [
        f"music-lm: error: {target}: already exists (use --force to overwrite)"
    ]
    assert files_under(tmp_path) == ["simple.mid", "song.txt"]

    result = runner.invoke(app, ["encode", str(simple_midi_file), "-o", str(target), "--force"])
    assert result.exit_code == 0, result.output
    assert target.read_text() == music_lm.midi_to_text(simple_midi_file)


def test_a_folder_batch_refuses_to_overwrite_without_force_and_overwrites_with_it(
    midi_folder, tmp_path
):
    out = tmp_path / "texts"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "b.txt").write_text("keep me\n")
    result = runner.invoke(app, ["encode", str(midi_folder), "-o", str(out)])
    assert result.exit_code == 2
    assert (out / "sub" / "b.txt").read_text() == "keep me\n"
    assert files_under(out) == ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]
    assert "already exists" in result.stderr

    result = runner.invoke(app, ["encode", str(midi_folder), "-o", str(out), "-f"])
    assert result.exit_code == 0, result.output
    assert (out / "sub" / "b.txt").read_text() == music_lm.midi_to_text(
        midi_folder / "sub" / "b.MIDI"
    )


def test_an_output_that_is_a_folder_receives_the_file_named_after_the_input(
    simple_midi_file, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "texts"
    folder.mkdir()
    code, out, err = run_main(
        monkeypatch, capsys, "encode", str(simple_midi_file), "-o", str(folder)
    )
    assert (code, out, err) == (0, "", "")
    assert (folder / "simple.txt").read_text().startswith("piece ")


def test_an_output_that_would_overwrite_the_input_is_refused_even_with_force(
    simple_midi_file, tmp_path, monkeypatch, capsys
):
    before = simple_midi_file.read_bytes()
    args = ["encode", str(simple_midi_file), "-o", str(simple_midi_file), "--force"]
    code, _out, err = run_main(monkeypatch, capsys, *args)
    assert code == 2
    [line] = err.splitlines()
    assert line == f"music-lm: error: {simple_midi_file}: is the input file; choose another output"
    assert simple_midi_file.read_bytes() == before
    assert files_under(tmp_path) == ["simple.mid"]  # no temporary file left behind


def test_roundtrip_into_its_own_input_folder_never_touches_the_inputs(tmp_path, midi_folder):
    before = {p: p.read_bytes() for p in midi_folder.rglob("*.mid")}
    result = runner.invoke(app, ["roundtrip", str(midi_folder), "-o", str(midi_folder), "--force"])
    assert result.exit_code == 2
    assert "is the input file" in result.stderr
    assert {p: p.read_bytes() for p in before} == before


def test_a_bad_file_is_one_error_line_naming_it_and_exit_code_2(tmp_path, monkeypatch, capsys):
    bad = write_bad_midi(tmp_path / "broken.mid")
    target = tmp_path / "broken.txt"
    code, out, err = run_main(monkeypatch, capsys, "encode", str(bad), "-o", str(target))
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"music-lm: error: {bad}: ")
    assert not target.exists()
    assert files_under(tmp_path) == ["broken.mid"]  # and no temporary file left behind


def test_a_file_the_codec_cannot_carry_is_one_error_line_naming_it(
    tmp_path, make_midi, note, monkeypatch, capsys
):
    # A note 2**28 - 1 ticks long at 96 PPQ: 2.8 million quarter notes, more than the
    # codec takes (a corrupt delta time, most likely).
    path = tmp_path / "endless.mid"
    make_midi([*note(0, 0x0FFFFFFF, 60, 64)], ticks_per_beat=96, path=path)
    code, out, err = run_main(monkeypatch, capsys, "encode", str(path))
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"music-lm: error: {path}: ")


def test_a_folder_batch_with_a_bad_file_writes_the_good_ones_and_exits_2(midi_folder, tmp_path):
    bad = write_bad_midi(midi_folder / "sub" / "bad.mid")
    out = tmp_path / "texts"
    result = runner.invoke(app, ["encode", str(midi_folder), "-o", str(out)])
    assert result.exit_code == 2
    assert files_under(out) == ["a.txt", "sub/b.txt", "sub/deeper/c.txt"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("music-lm: error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"music-lm: error: {bad}: ")
    assert "encoded 3 file(s); 1 failed" in result.stderr


def test_a_missing_input_is_an_error_naming_it(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere"
    code, _, err = run_main(monkeypatch, capsys, "encode", str(missing))
    assert code == 2
    assert err.splitlines() == [f"music-lm: error: {missing}: no such file or folder"]


# ---- decode ----


@pytest.fixture
def text_file(simple_midi_file: Path) -> Path:
    path = simple_midi_file.with_name("simple.txt")
    path.write_text(music_lm.midi_to_text(simple_midi_file))
    return path


def test_decode_a_file_writes_a_midi_file_with_the_same_text(text_file, tmp_path):
    target = tmp_path / "out" / "piece.mid"
    result = runner.invoke(app, ["decode", str(text_file), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert music_lm.midi_to_text(target) == text_file.read_text()
    assert mido.MidiFile(target).type == 1


def test_decode_without_output_writes_into_midi_out(text_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["decode", str(text_file)])
    assert result.exit_code == 0, result.output
    assert files_under(tmp_path / "midi_out") == ["simple.mid"]


def test_decode_a_folder_recursively(text_file, tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.txt").write_text(text_file.read_text())
    (folder / "sub" / "two.txt").write_text(text_file.read_text())
    (folder / "sub" / "ignored.mid").write_bytes(b"")
    out = tmp_path / "midis"
    result = runner.invoke(app, ["decode", str(folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert files_under(out) == ["one.mid", "sub/two.mid"]
    assert music_lm.midi_to_text(out / "sub" / "two.mid") == text_file.read_text()
    assert "decoded 2 file(s); 0 failed" in result.stderr


def test_decode_reads_stdin(text_file, tmp_path):
    target = tmp_path / "from_stdin.mid"
    result = runner.invoke(app, ["decode", "-", "-o", str(target)], input=text_file.read_text())
    assert result.exit_code == 0, result.output
    assert music_lm.midi_to_text(target) == text_file.read_text()


def test_decode_from_stdin_without_output_writes_midi_out_stdin_mid(
    text_file, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["decode", "-"], input=text_file.read_text())
    assert result.exit_code == 0, result.output
    assert music_lm.midi_to_text(tmp_path / "midi_out" / "stdin.mid") == text_file.read_text()


def test_decode_refuses_to_overwrite_without_force(text_file, tmp_path, monkeypatch, capsys):
    target = tmp_path / "piece.mid"
    target.write_bytes(b"old")
    code, _, err = run_main(monkeypatch, capsys, "decode", str(text_file), "-o", str(target))
    assert code == 2
    assert target.read_bytes() == b"old"
    assert len(err.splitlines()) == 1
    assert str(target) in err

    code, _, _ = run_main(
        monkeypatch, capsys, "decode", str(text_file), "-o", str(target), "--force"
    )
    assert code == 0
    assert music_lm.midi_to_text(target) == text_file.read_text()


def test_decode_of_invalid_text_names_the_file_and_the_token(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("piece style:none tempo:120 ts:4/4 inst:violin bar @0 t1 C4 end\n")
    target = tmp_path / "bad.mid"
    code, out, err = run_main(monkeypatch, capsys, "decode", str(bad), "-o", str(target))
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith(f"music-lm: error: {bad}: token 8 'C4': expected ")
    assert files_under(tmp_path) == ["bad.txt"]


def test_decode_of_stdin_names_stdin_in_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("piece bar\n"))
    code, _, err = run_main(monkeypatch, capsys, "decode", "-", "-o", str(tmp_path / "x.mid"))
    assert code == 2
    assert err.splitlines() == ["music-lm: error: <stdin>: token 1 'bar': expected any style token"]
    assert files_under(tmp_path) == []


def test_decode_of_a_file_that_is_not_utf8_is_an_input_error(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "binary.txt"
    bad.write_bytes(b"\xff\xfe\x00piece")
    code, _, err = run_main(monkeypatch, capsys, "decode", str(bad), "-o", str(tmp_path / "b.mid"))
    assert code == 2
    [line] = err.splitlines()
    assert str(bad) in line
    assert files_under(tmp_path) == ["binary.txt"]


# ---- inspect, validate, roundtrip ----


def test_inspect_prints_the_summary_and_the_round_trip_report(simple_midi_file):
    result = runner.invoke(app, ["inspect", str(simple_midi_file)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{simple_midi_file}: MIDI format 1, 480 ticks per quarter note, 3 MIDI tracks" in out
    assert "instruments: 2, notes: 5" in out
    instruments = out.lower().replace("-", " ")  # however the names are spelled
    assert "acoustic grand piano (program 0), channel 1: 4 notes" in instruments
    assert "acoustic bass (program 32), channel 2: 1 notes" in instruments
    assert "tempo map: 100.00 BPM at bar 1" in out
    assert "time signatures: 4/4 at bar 1" in out
    assert "key signatures: C major at bar 1" in out
    assert "kept exactly: 5 of 5 notes" in out
    assert "moved to the grid: nothing" in out
    assert "dropped: nothing" in out
    assert "round trip verified: 5 of 5 notes back as encoded" in out


@pytest.mark.parametrize(
    ("end_in_quarters", "bars"),
    [(Fraction(4), 1), (Fraction(17, 4), 2), (Fraction(8), 2), (Fraction(1, 2), 1)],
)
def test_inspect_gives_the_length_in_bars_up_to_the_end_of_the_last_note(
    tmp_path, make_midi, note, end_in_quarters, bars
):
    path = tmp_path / "piece.mid"
    make_midi(note(0, int(end_in_quarters * 480), 60), path=path)
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert f"  length: {bars} bars, " in result.stdout


def test_inspect_reports_what_moved_and_what_was_dropped(tmp_path, make_midi, note):
    path = tmp_path / "played.mid"
    make_midi(
        [
            (0, mido.MetaMessage("track_name", name="Lead")),
            *note(3, 470, 60, 77),
            *note(480, 480, 62, 80),
            (10, mido.Message("pitchwheel", pitch=300)),
            (20, mido.Message("control_change", control=64, value=127)),
        ],
        path=path,
    )
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("  kept exactly: 1 of 2 notes") for line in lines)
    assert any(line.startswith("  moved to the grid: 1 notes: 1 onsets") for line in lines)
    [dropped] = [line for line in lines if line.startswith("  dropped:")]
    assert "pitch bends 1" in dropped
    assert "controller CC64 (sustain pedal) 1" in dropped
    assert "track names" in dropped
    assert "velocity binned: 1 notes" in result.stdout


def test_inspect_a_folder_with_a_bad_file_reports_the_good_ones_and_exits_2(midi_folder):
    bad = write_bad_midi(midi_folder / "zz_bad.mid")
    result = runner.invoke(app, ["inspect", str(midi_folder)])
    assert result.exit_code == 2
    assert result.stdout.count("round trip verified") == 3
    assert f"music-lm: error: {bad}: " in result.stderr


def test_validate_accepts_valid_text(text_file):
    result = runner.invoke(app, ["validate", str(text_file)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{text_file}: valid\n"


def test_validate_rejects_invalid_text_naming_the_file_and_token(text_file, tmp_path):
    bad = tmp_path / "texts" / "bad.txt"
    bad.parent.mkdir()
    bad.write_text(text_file.read_text().replace("end\n", ""))
    count = len(bad.read_text().split())
    result = runner.invoke(app, ["validate", str(text_file), str(bad.parent)])
    assert result.exit_code == 2
    assert result.stdout == f"{text_file}: valid\n"
    errors = [line for line in result.stderr.splitlines() if line.startswith("music-lm: error:")]
    assert errors == [
        f"music-lm: error: {bad}: token {count}: the text ends before 'end'; expected "
        + errors[0].split("expected ", 1)[1]
    ]
    assert "validated 1 file(s); 1 failed" in result.stderr


def test_roundtrip_writes_text_and_midi_pairs(midi_folder, tmp_path):
    out = tmp_path / "pairs"
    result = runner.invoke(app, ["roundtrip", str(midi_folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert files_under(out) == [
        "a.mid",
        "a.txt",
        "sub/b.mid",
        "sub/b.txt",
        "sub/deeper/c.mid",
        "sub/deeper/c.txt",
    ]
    for stem in ("a", "sub/b", "sub/deeper/c"):
        text = (out / f"{stem}.txt").read_text()
        assert music_lm.midi_to_text(out / f"{stem}.mid") == text
        assert f"writing {out / stem}.txt and {out / stem}.mid" in result.stdout
    assert result.stdout.count("round trip verified") == 3
    assert "round-tripped 3 file(s); 0 failed" in result.stderr


# ---- the installed command ----


def test_the_installed_entry_point_runs_and_fails_with_exit_code_2(simple_midi_file, tmp_path):
    env = {**os.environ, "NO_COLOR": "1"}
    good = subprocess.run(
        [str(MUSIC_LM), "encode", str(simple_midi_file)], capture_output=True, text=True, env=env
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout == music_lm.midi_to_text(simple_midi_file)
    assert good.stderr == ""

    bad = write_bad_midi(tmp_path / "bad" / "broken.mid")
    target = tmp_path / "bad" / "broken.txt"
    failed = subprocess.run(
        [str(MUSIC_LM), "encode", str(bad), "-o", str(target)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert failed.returncode == 2
    assert failed.stdout == ""
    [line] = failed.stderr.splitlines()
    assert line.startswith(f"music-lm: error: {bad}: ")
    assert "Traceback" not in failed.stderr
    assert files_under(bad.parent) == ["broken.mid"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["encode", "--no-such-option"], "No such option"),
        (["no-such-command"], "No such command"),
        (["decode"], "Missing argument"),
    ],
)
def test_the_installed_entry_point_reports_usage_errors_without_a_traceback(args, message):
    usage = subprocess.run([str(MUSIC_LM), *args], capture_output=True, text=True)
    assert usage.returncode == 2  # click's exit code for usage errors
    assert message in usage.stderr
    assert "Traceback" not in usage.stderr


def test_a_folder_batch_failure_is_exit_code_2_from_main(
    midi_folder, tmp_path, monkeypatch, capsys
):
    write_bad_midi(midi_folder / "bad.mid")
    code, _, err = run_main(
        monkeypatch, capsys, "encode", str(midi_folder), "-o", str(tmp_path / "o")
    )
    assert code == 2
    assert "encoded 3 file(s); 1 failed" in err
    assert "Traceback" not in err


def test_version_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"music-lm {music_lm.__version__}\n"


def test_roundtrip_of_one_file_writes_into_the_output_folder_even_a_new_one(
    simple_midi_file, tmp_path
):
    folder = tmp_path / "new" / "folder"
    result = runner.invoke(app, ["roundtrip", str(simple_midi_file), "-o", str(folder)])
    assert result.exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["simple.mid", "simple.txt"]


# ---- the decoding options of generate and continue ----

MELODY = """piece style:none tempo:96 ts:4/4 inst:flute inst:drums
bar @0 t1 d:1 v:80 D4 t2 d:1/4 v:80 drum:acoustic-bass-drum @1 t1 G4 t2 drum:electric-snare
end"""


@pytest.mark.parametrize(
    ("command", "options", "recorded"),
    [
        ("generate", [], {"unisons": False, "drum_keys": "gm", "drum_steps": 0,
                          "hold_past_end": False, "loop_guard": 32}),
        ("generate", ["--unisons", "--drum-keys", "seed", "--drum-length", "1/4",
                      "--hold-past-end", "--loop-guard", "64"],
         {"unisons": True, "drum_keys": "seed", "drum_steps": 6, "hold_past_end": True,
          "loop_guard": 64}),
        ("continue", ["--drum-keys", "any", "--drum-length", "any", "--loop-guard", "0"],
         {"unisons": False, "drum_keys": "any", "drum_steps": None, "loop_guard": None}),
    ],
)  # fmt: skip
def test_the_decoding_options_reach_the_constraints(tiny_model, tmp_path, command, options,
                                                    recorded):  # fmt: skip
    import json

    (tmp_path / "in").mkdir()
    seed = tmp_path / "in" / "melody.txt"
    seed.write_text(MELODY)
    source = [str(seed)] if command == "generate" else [str(tmp_path / "in")]
    if command == "continue":  # continue reads MIDI files: the seed as one
        from music_lm.api import text_to_midi

        seed.unlink()
        (tmp_path / "in" / "melody.mid").write_bytes(text_to_midi(MELODY))
    out = tmp_path / "out"
    result = runner.invoke(app, [command, *source, "--bars", "1", "--model", str(tiny_model),
                                 "-o", str(out), "--random-seed", "1", *options])  # fmt: skip
    assert result.exit_code == 0, result.output
    constraints = json.loads((out / "melody-1.json").read_text())["constraints"]
    assert {k: constraints[k] for k in recorded} == recorded


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--drum-keys", "kit"], "--drum-keys must be one of gm, seed, any, got 'kit'"),
        (["--drum-length", "1/5"], "--drum-length takes auto, any or a length in quarter notes"),
        (["--loop-guard", "1"], "--loop-guard must be 0 (off) or in 2..4096 tokens, got 1"),
        (["--adapt", "-1"], "--adapt must be 0..500 steps, got -1"),
    ],
)
def test_a_bad_decoding_option_is_one_error_line(tiny_model, tmp_path, monkeypatch, capsys,
                                                 options, message):  # fmt: skip
    code, _, err = run_main(monkeypatch, capsys, "generate", "--model", str(tiny_model),
                              "-o", str(tmp_path / "out"), *options)  # fmt: skip
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith(f"music-lm: error: {message}")
    assert not (tmp_path / "out").exists()
