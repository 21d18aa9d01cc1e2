"""Every entry point against the same bad files: one line naming the file and the problem,
exit code 2 (a traceback only with --debug), no partial output, and a batch that carries on
past a bad file and lists it at the end.

The command-line cases run `music_lm.cli.main` in process, as the installed `music-lm` does."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import mido
import pytest
from cli_runner import run_cli

from music_lm.midi.read import MidiError, read_midi
from music_lm.tokens.codec import CodecError
from music_lm.tokens.encoded import encode_midi
from music_lm.tokens.grammar import GrammarError
from music_lm.tokens.validate import validate

ROOT = Path(__file__).resolve().parents[1]
GOOD = (ROOT / "midi_in" / "folk_tune.mid").read_bytes()


def chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def header(midi_format: int = 1, tracks: int = 1, division: int = 480) -> bytes:
    return chunk(b"MThd", struct.pack(">HHH", midi_format, tracks, division))


NOTE = b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00"  # C4 for a quarter note at 480 PPQ
END = b"\x00\xff\x2f\x00"


def far_note() -> bytes:
    # Eight of the largest delta times (2^28 - 1 each): the note starts past tick 2^31.
    return b"\xff\xff\xff\x7f\xff\x01\x00" * 8 + b"\x00\x90\x3c\x40\x10\x80\x3c\x00" + END


BAD_MIDI = {
    "empty": (b"", "empty file"),
    "random bytes": (random.Random(0).randbytes(4096), "not a MIDI file"),
    "truncated": (GOOD[: len(GOOD) // 2], "truncated"),
    "wrong header": (b"MThd\x00\x00\x00\x02\x00\x01" + GOOD[14:], "header"),
    "SMPTE timing": (header(division=0xE728) + chunk(b"MTrk", NOTE + END), "SMPTE"),
    "format 2": (header(midi_format=2) + chunk(b"MTrk", NOTE + END), "format 2"),
    "PPQ 0": (header(division=0) + chunk(b"MTrk", NOTE + END), "ticks per quarter"),
    "10,000 tracks": (header(tracks=10_000) + chunk(b"MTrk", NOTE + END) * 10_000, "tracks"),
    "a note at tick 2^31": (header() + chunk(b"MTrk", far_note()), "quarter notes"),
}


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    for index, (data, _problem) in enumerate(BAD_MIDI.values()):
        (folder / f"bad{index}.mid").write_bytes(data)
    # 100 MB, sparse: the size alone must refuse it, before it is read.
    with open(folder / "huge.mid", "wb") as handle:
        handle.write(header() + b"MTrk")
        handle.truncate(100 * 2**20)
    return folder


def mixed_folder(tmp_path: Path, bad_folder: Path, good: int) -> Path:
    """A folder of every bad MIDI file and `good` copies of a good one (good.mid, good1.mid...)."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for source in bad_folder.glob("bad*.mid"):
        (folder / source.name).write_bytes(source.read_bytes())
    for index in range(good):
        (folder / f"good{index or ''}.mid").write_bytes(GOOD)
    return folder


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---- the Python API and the page's upload ----


@pytest.mark.parametrize("name", list(BAD_MIDI))
def test_the_api_names_the_problem(name: str) -> None:
    data, problem = BAD_MIDI[name]
    with pytest.raises((MidiError, CodecError)) as caught:
        encode_midi(data, name="bad.mid")
    message = str(caught.value)
    assert message.startswith("bad.mid: ")
    assert problem.lower() in message.lower()
    assert "\n" not in message


def test_a_100_mb_file_is_refused_by_its_size_before_it_is_read(bad_folder: Path) -> None:
    with pytest.raises(MidiError, match=r"huge\.mid: .*104,857,600 bytes.* limit"):
        read_midi(bad_folder / "huge.mid")


@pytest.mark.parametrize("name", list(BAD_MIDI))
def test_the_page_upload_names_the_file(name: str) -> None:
    from music_lm.page.seeds import SeedError, seed_from_midi

    with pytest.raises(SeedError) as caught:
        seed_from_midi(BAD_MIDI[name][0], "upload.mid")
    assert str(caught.value).startswith("upload.mid: ")
    assert "\n" not in str(caught.value)


def test_hanging_notes_end_where_their_track_ends(make_midi) -> None:
    on = [(0, mido.Message("note_on", note=60, velocity=80)),
          (960, mido.Message("note_on", note=64, velocity=80)),
          (1920, mido.Message("note_off", note=64, velocity=0))]  # fmt: skip
    encoded = encode_midi(make_midi(on), name="hanging.mid")
    notes = encoded.read.score.tracks[0].notes
    assert [(n.pitch, n.onset_tick) for n in notes] == [(60, 0), (64, 960)]
    assert notes[0].duration_tick == 1920  # the note-on without a note-off lasts to the end


BAD_TEXT = {
    "empty": "",
    "not UTF-8": "\udcff",
    "an unknown word": "piece style:none tempo:120 ts:4/4 inst:flute bar @0 t1 d:1 v:80 H4 end",
    "out of order": "piece style:none tempo:120 ts:4/4 inst:flute bar C4 end",
    "cut short": "piece style:none tempo:120 ts:4/4 inst:flute bar @0 t1 d:1 v:80",
    "a million bars": "piece style:none tempo:120 ts:4/4 inst:flute " + "bar " * 1_000_000,
}


@pytest.mark.parametrize("name", list(BAD_TEXT))
def test_bad_token_text_names_the_token(name: str) -> None:
    with pytest.raises(GrammarError) as caught:
        validate(BAD_TEXT[name])
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("token ")


# ---- the command line ----

MIDI_COMMANDS = {
    "encode": lambda src, out: ["encode", src, "-o", f"{out}/x.txt"],
    "inspect": lambda src, out: ["inspect", src],
    "roundtrip": lambda src, out: ["roundtrip", src, "-o", out],
    "render": lambda src, out: ["render", src, "-o", f"{out}/x.wav"],
    "pianoroll": lambda src, out: ["pianoroll", src, "-o", f"{out}/x.png"],
    "export": lambda src, out: ["export", src, "-o", f"{out}/x.mid", "--musicxml", f"{out}/x.xml"],
}


@pytest.mark.parametrize("command", list(MIDI_COMMANDS))
def test_each_midi_command_refuses_each_bad_file_in_one_line(
    command: str, bad_folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    for source in sorted(bad_folder.glob("*.mid")):
        out = tmp_path / source.stem
        code, _out, err = run_cli(
            monkeypatch, capsys, *MIDI_COMMANDS[command](str(source), str(out))
        )
        assert code == 2, (source.name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (source.name, err)
        assert str(source) in lines[0], lines[0]
        assert "Traceback" not in err
        assert files_in(out) == [], (source.name, files_in(out))


def test_debug_raises_the_error_itself(bad_folder: Path, monkeypatch, capsys) -> None:
    # (tests/test_cli_edges.py runs the command in its own process and reads the traceback)
    with pytest.raises(MidiError, match=r"bad0\.mid: "):
        run_cli(monkeypatch, capsys, "--debug", "inspect", str(bad_folder / "bad0.mid"))


def test_a_folder_batch_carries_on_and_lists_the_bad_files_at_the_end(
    bad_folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    folder = mixed_folder(tmp_path, bad_folder, good=1)
    out = tmp_path / "texts"
    code, _out, err = run_cli(monkeypatch, capsys, "encode", str(folder), "-o", str(out))
    assert code == 2
    assert files_in(out) == ["good.txt"]
    tail = err.strip().splitlines()
    assert tail[-1] == f"encoded 1 file(s); {len(BAD_MIDI)} failed"
    for source in folder.glob("bad*.mid"):
        assert str(source) in err


@pytest.mark.parametrize("name", [n for n in BAD_TEXT if n != "not UTF-8"])
def test_decode_and_validate_refuse_bad_text(
    name: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    source = tmp_path / "bad.txt"
    source.write_text(BAD_TEXT[name])
    for args in (["validate", str(source)], ["decode", str(source), "-o", str(tmp_path / "o.mid")]):
        code, _out, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1, err
        assert str(source) in err
    assert not (tmp_path / "o.mid").exists()


def test_text_that_is_not_utf8_is_named(tmp_path: Path, monkeypatch, capsys) -> None:
    source = tmp_path / "bad.txt"
    source.write_bytes(b"piece \xff\xfe")
    code, _out, err = run_cli(monkeypatch, capsys, "validate", str(source))
    assert code == 2
    assert str(source) in err
    assert "UTF-8" in err


@pytest.mark.parametrize("source", ["bad0.mid", "bad1.mid", "bad2.mid", "bad6.mid"])
def test_generate_refuses_a_bad_seed(
    source: str, bad_folder: Path, tiny_model: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "out"
    seed = bad_folder / source
    code, _out, err = run_cli(monkeypatch, capsys, "generate", str(seed), "-m", str(tiny_model),
                              "-o", str(out), "--bars", "1")  # fmt: skip
    assert code == 2
    assert str(seed) in err
    assert files_in(out) == []


def test_continue_over_a_folder_carries_on_past_bad_seeds(
    bad_folder: Path, tiny_model: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    folder = tmp_path / "seeds"
    folder.mkdir()
    (folder / "good.mid").write_bytes(GOOD)
    for name in ("bad0.mid", "bad2.mid"):
        (folder / name).write_bytes((bad_folder / name).read_bytes())
    out = tmp_path / "out"
    code, _out, err = run_cli(monkeypatch, capsys, "continue", str(folder), "-m", str(tiny_model),
                              "-o", str(out), "--bars", "1", "--random-seed", "1")  # fmt: skip
    assert code == 2
    assert files_in(out) == ["good-1.json", "good-1.mid", "good-1.txt"]
    assert str(folder / "bad0.mid") in err
    assert str(folder / "bad2.mid") in err


def test_a_model_of_another_vocabulary_is_refused_by_name(
    tiny_model: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import json
    import shutil

    folder = tmp_path / "foreign"
    shutil.copytree(tiny_model, folder)
    meta = json.loads((folder / "music_lm.json").read_text())
    meta["vocab_sha256"] = "0" * 64
    (folder / "music_lm.json").write_text(json.dumps(meta))
    seed = ROOT / "midi_in" / "folk_tune.mid"
    out = tmp_path / "out"
    code, _out, err = run_cli(monkeypatch, capsys, "generate", str(seed), "-m", str(folder),
                              "-o", str(out))  # fmt: skip
    assert code == 2
    assert str(folder) in err
    assert "another vocabulary" in err
    assert files_in(out) == []


def test_the_corpus_build_lists_bad_files_and_goes_on(
    bad_folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    folder = mixed_folder(tmp_path, bad_folder, good=3)
    monkeypatch.setenv("MUSIC_LM_CACHE", str(tmp_path / "cache"))
    code, _out, err = run_cli(monkeypatch, capsys, "corpus", "build", "-s", str(folder),
                              "-o", str(tmp_path / "c"), "-j", "1", "--valid", "0",
                              "--test", "0")  # fmt: skip
    assert code == 0, err
    failures = (tmp_path / "c" / "failures.tsv").read_text()
    for source in folder.glob("bad*.mid"):
        assert source.name in failures
    assert f"{len(BAD_MIDI)} piece(s) failed" in err
    assert os.path.getsize(tmp_path / "c" / "manifest.json") > 0
