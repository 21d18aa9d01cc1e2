"""The corpus: sources -> shards, index and manifest; and reading them back for training.

The folder of MIDI files is written by the tests (our own writer, 480 PPQ): melodies in
several keys, a transposed copy, an exact copy, a band with drums, a flute near the top
of its range, and a corrupt file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli

from music_lm.corpus.build import build_corpus
from music_lm.corpus.config import BuildConfig
from music_lm.corpus.dataset import Corpus, WindowSampler, sequential_windows, transpose_ids
from music_lm.corpus.sources import CorpusError, SourceError, parse_source, style_of_tag
from music_lm.corpus.split import fingerprint, transpose_range
from music_lm.corpus.write import iter_failures
from music_lm.midi.instruments import PROGRAM_RANGES, pitch_range, transpose_limits
from music_lm.midi.score import KeySignature, Note, Score, TempoChange, TimeSignature, Track
from music_lm.midi.write import write_midi
from music_lm.tokens.encoded import encode_midi
from music_lm.tokens.validate import validate, walk
from music_lm.tokens.vocab import GRID_PER_QUARTER, VOCAB

PPQ = 480
FLUTE, BASS, PIANO = 73, 33, 0


def melody(pitches: list[int], program: int = PIANO, key: int = 0, seed: int = 0) -> Score:
    """A one-track piece in 4/4: the pitches in eighths and quarters, some chords."""
    rng = random.Random(seed)
    notes, tick = [], 0
    for pitch in pitches:
        length = rng.choice((PPQ // 2, PPQ))
        notes.append(Note(tick, length, pitch, rng.choice((64, 80, 96))))
        if rng.random() < 0.2 and pitch + 4 <= 127:
            notes.append(Note(tick, length, pitch + 4, 64))
        tick += length
    return Score(
        PPQ,
        [Track(program, notes=notes)],
        [TempoChange(0, 100.0)],
        [TimeSignature(0, 4, 4)],
        [KeySignature(0, key, "major")],
    )


def band(seed: int = 0) -> Score:
    """Bass and drums, two bars per beat pattern."""
    rng = random.Random(seed)
    bass = [Note(i * PPQ, PPQ, rng.choice((36, 38, 41, 43)), 90) for i in range(16)]
    drums = [Note(i * PPQ // 2, PPQ // 4, rng.choice((36, 38, 42)), 100) for i in range(32)]
    return Score(PPQ, [Track(BASS, notes=bass), Track(0, True, drums)],
                 [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)])  # fmt: skip


def tune(seed: int, length: int = 24, low: int = 60, high: int = 76) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(length)]


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("jigs")
    for i in range(8):
        (folder / f"tune{i}.mid").write_bytes(write_midi(melody(tune(i), seed=i)))
    # the same tune a whole tone up (key signature too), and an exact copy
    (folder / "tune0-up.mid").write_bytes(write_midi(melody([p + 2 for p in tune(0)], key=2)))
    (folder / "copy").mkdir()
    (folder / "copy" / "tune1.mid").write_bytes((folder / "tune1.mid").read_bytes())
    (folder / "band.mid").write_bytes(write_midi(band()))
    # a flute playing up to C7, two semitones under the top of its range (D7)
    (folder / "flute.mid").write_bytes(write_midi(melody(tune(9, low=84, high=96), FLUTE)))
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02")
    return folder


@pytest.fixture(scope="module")
def built(midi_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("built")
    config = BuildConfig((f"{midi_folder}:irish",), valid_fraction=0.2, test_fraction=0.2)
    result = build_corpus(config, root / "corpus", cache_dir=root / "cache", workers=1)
    return result, Corpus(root / "corpus"), root


def test_a_corrupt_file_is_listed_with_its_reason_and_the_build_goes_on(built) -> None:
    result, corpus, _ = built
    assert [name for name, _ in result.failures] == ["irish:broken.mid"]
    reason = dict(iter_failures(corpus.folder))["irish:broken.mid"]
    assert reason.startswith("MidiError:")
    assert "cut short" in reason
    assert "broken.mid" not in {p.name for p in corpus.pieces}
    assert result.manifest["sources"][0]["failed"] == 1


def test_exact_and_transposed_copies_are_dropped_keeping_the_first(built) -> None:
    result, corpus, _ = built
    assert sorted(result.duplicates) == [
        ("irish:tune0.mid", "irish:tune0-up.mid"),  # "-" sorts before "."
        ("irish:tune1.mid", "irish:copy/tune1.mid"),
    ]
    names = [p.name for p in corpus.pieces]
    assert "tune0-up.mid" in names
    assert "tune0.mid" not in names
    assert len(names) == len(set(names)) == 10
    assert len({p.fingerprint for p in corpus.pieces}) == 10


def test_the_split_is_by_piece_and_nothing_leaks(built) -> None:
    _, corpus, _ = built
    splits = {s: corpus.split(s) for s in ("train", "valid", "test")}
    assert all(splits.values()), "every split asked for has a piece"
    seen: dict[str, str] = {}
    for split, indices in splits.items():
        for i in indices:
            piece = corpus.pieces[i]
            assert seen.setdefault(piece.fingerprint, split) == split
            assert piece.shard.startswith(split)
    # shards hold exactly their split's pieces, back to back
    for split, indices in splits.items():
        tokens = np.concatenate([corpus.ids(i) for i in indices])
        names = [s["name"] for s in corpus.manifest["shards"] if s["split"] == split]
        shard = np.concatenate([np.fromfile(corpus.folder / n, dtype=np.uint16) for n in names])
        assert np.array_equal(tokens, shard)


def test_every_source_of_three_pieces_or_more_has_a_test_piece(midi_folder, tmp_path) -> None:
    # a small source beside a larger one: the held-out splits are drawn source by source
    small, pair = tmp_path / "small", tmp_path / "pair"
    for folder, seeds in ((small, range(30, 34)), (pair, range(40, 42))):
        folder.mkdir()
        for i in seeds:
            (folder / f"t{i}.mid").write_bytes(write_midi(melody(tune(i), seed=i)))
    config = BuildConfig((f"{midi_folder}:irish", f"{small}:folk", f"{pair}:jazz"),
                         valid_fraction=0.01, test_fraction=0.01)  # fmt: skip
    build_corpus(config, tmp_path / "c", cache_dir=tmp_path / "cache", workers=1)
    corpus = Corpus(tmp_path / "c")
    splits = {tag: sorted(p.split for p in corpus.pieces if p.source == tag)
              for tag in ("irish", "folk", "jazz")}  # fmt: skip
    assert splits["folk"] == ["test", "train", "train", "valid"]
    assert {"test", "valid"} <= set(splits["irish"])
    assert splits["jazz"] == ["train", "train"]  # 2 pieces: the hash alone decides


def test_the_split_follows_content_not_names_order_or_folder(built, midi_folder, tmp_path):
    _, corpus, _ = built
    other = tmp_path / "other"
    other.mkdir()
    for n, path in enumerate(sorted(midi_folder.rglob("*.mid"), reverse=True)):
        (other / f"{n:02d}-{path.stem}.mid").write_bytes(path.read_bytes())
    config = BuildConfig((f"{other}:irish",), valid_fraction=0.2, test_fraction=0.2)
    build_corpus(config, tmp_path / "c", cache_dir=tmp_path / "cache", workers=1)
    renamed = {p.fingerprint: p.split for p in Corpus(tmp_path / "c").pieces}
    assert renamed == {p.fingerprint: p.split for p in corpus.pieces}
    reseeded = BuildConfig(config.sources, valid_fraction=0.2, test_fraction=0.2, seed=1)
    build_corpus(reseeded, tmp_path / "s", cache_dir=tmp_path / "cache", workers=1)
    assert {p.fingerprint: p.split for p in Corpus(tmp_path / "s").pieces} != renamed


def test_shards_decode_back_to_the_pieces_with_the_sources_style(built, midi_folder) -> None:
    _, corpus, _ = built
    for i, piece in enumerate(corpus.pieces):
        text = corpus.text(i)
        validate(text)
        expected = encode_midi(midi_folder / piece.name).text.split()
        expected[1] = "style:irish"
        assert text.split() == expected
        assert piece.style == "irish"
        assert piece.source == "irish"
        assert piece.tokens == len(expected)


def test_the_manifest_counts_pieces_notes_and_tokens_per_source_and_split(built) -> None:
    result, corpus, _ = built
    manifest = json.loads((corpus.folder / "manifest.json").read_text())
    assert manifest == result.manifest
    assert manifest["vocab_size"] == len(VOCAB)
    assert manifest["dtype"] == "uint16"
    source = manifest["sources"][0]
    assert (source["source"], source["listed"], source["failed"], source["duplicates"]) == (
        "irish", 13, 1, 2)  # fmt: skip
    for split in ("train", "valid", "test"):
        pieces = [p for p in corpus.pieces if p.split == split]
        assert source[split] == {
            "pieces": len(pieces),
            "notes": sum(p.notes for p in pieces),
            "tokens": sum(p.tokens for p in pieces),
        }
        assert manifest["splits"][split] == source[split]
    assert manifest["build_seconds"] > 0
    assert manifest["config"]["valid_fraction"] == 0.2


def test_the_tokenizer_in_the_corpus_loads_with_auto_tokenizer(built) -> None:
    from transformers import AutoTokenizer

    _, corpus, _ = built
    tokenizer = AutoTokenizer.from_pretrained(corpus.folder)
    assert tokenizer(corpus.text(0))["input_ids"] == corpus.ids(0).tolist()


def test_a_rebuild_copies_the_tokenizer_files_instead_of_importing_transformers(
    midi_folder, tmp_path, monkeypatch
) -> None:
    import music_lm.tokens.tokenizer as tokenizer_module

    config = BuildConfig((f"{midi_folder}:irish",))
    out = tmp_path / "c"
    build_corpus(config, out, cache_dir=tmp_path / "cache", workers=1)
    first = (out / "tokenizer.json").read_bytes()
    written = []
    monkeypatch.setattr(tokenizer_module, "save_tokenizer", written.append)
    build_corpus(config, out, cache_dir=tmp_path / "cache", workers=1)
    assert written == []
    assert (out / "tokenizer.json").read_bytes() == first
    # a tokenizer written under another key (another vocabulary, transformers version or
    # writer) is written again
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(dict(manifest, tokenizer_key="old")))
    build_corpus(config, out, cache_dir=tmp_path / "cache", workers=1)
    assert len(written) == 1


def test_a_second_build_encodes_only_what_changed(built, midi_folder, tmp_path) -> None:
    _, _, root = built
    folder = tmp_path / "jigs"
    folder.mkdir()
    for path in midi_folder.glob("tune*.mid"):
        (folder / path.name).write_bytes(path.read_bytes())
    config = BuildConfig((f"{folder}:irish",))
    first = build_corpus(config, tmp_path / "c", cache_dir=root / "cache", workers=1)
    assert (first.encoded, first.cached) == (0, 9)  # all seen by the module's build
    (folder / "tune3.mid").write_bytes(write_midi(melody(tune(33), seed=3)))
    second = build_corpus(config, tmp_path / "c", cache_dir=root / "cache", workers=1)
    assert (second.encoded, second.cached) == (1, 8)
    assert "tune3.mid" in {p.name for p in Corpus(tmp_path / "c").pieces}


def test_an_interrupted_build_keeps_the_previous_corpus(built, midi_folder, tmp_path, monkeypatch):
    import music_lm.corpus.write as corpus_module

    _, _, root = built
    config = BuildConfig((f"{midi_folder}:irish",))
    build_corpus(config, tmp_path / "c", cache_dir=root / "cache", workers=1)
    before = {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()}

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus_module, "_manifest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(BuildConfig((f"{midi_folder}:folk",)), tmp_path / "c",
                     cache_dir=root / "cache", workers=1)  # fmt: skip
    assert {p.name: p.read_bytes() for p in (tmp_path / "c").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"], "no staging folder left"


def test_a_folder_that_is_not_a_corpus_is_never_overwritten(midi_folder, tmp_path) -> None:
    (tmp_path / "mine.txt").write_text("my notes")
    with pytest.raises(CorpusError, match="not empty and holds no corpus"):
        build_corpus(BuildConfig((str(midi_folder),)), tmp_path, cache_dir=tmp_path / "x")
    assert (tmp_path / "mine.txt").read_text() == "my notes"


def test_the_parallel_build_gives_the_same_corpus(built, midi_folder, tmp_path, monkeypatch):
    """Two workers, replaced by fresh ones after every chunk (a real build: every 200), give
    the corpus of one process, byte for byte."""
    import music_lm.corpus.build

    monkeypatch.setattr(music_lm.corpus.build, "TASKS_PER_WORKER", 1)
    _, corpus, _ = built
    config = BuildConfig((f"{midi_folder}:irish",), valid_fraction=0.2, test_fraction=0.2)
    build_corpus(config, tmp_path / "c", cache_dir=tmp_path / "cache", workers=2)
    parallel = Corpus(tmp_path / "c")
    assert parallel.pieces == corpus.pieces
    for shard in corpus.manifest["shards"]:
        name = shard["name"]
        assert (tmp_path / "c" / name).read_bytes() == (corpus.folder / name).read_bytes()


def test_the_datasets_engine_gives_the_same_corpus_and_parquet_shards(built, midi_folder, tmp_path):
    import datasets

    from music_lm.corpus.hf_dataset import build_corpus_datasets

    _, corpus, _ = built
    config = BuildConfig((f"{midi_folder}:irish",), valid_fraction=0.2, test_fraction=0.2)
    result = build_corpus_datasets(config, tmp_path / "c", workers=2, cache_dir=tmp_path / "x")
    assert [n for n, _ in result.failures] == ["irish:broken.mid"]
    assert (result.encoded, result.cached) == (12, 0)
    hf = Corpus(tmp_path / "c")
    assert hf.pieces == corpus.pieces
    assert hf.manifest["engine"]["name"].startswith("datasets")
    train = datasets.load_dataset("parquet", data_dir=str(tmp_path / "c" / "parquet"),
                                  split="train")  # fmt: skip
    rows = {row["name"]: row["ids"] for row in train}
    for i in corpus.split("train"):
        assert rows[corpus.pieces[i].name] == corpus.ids(i).tolist()
    again = build_corpus_datasets(config, tmp_path / "c", workers=2, cache_dir=tmp_path / "x")
    assert (again.encoded, again.cached) == (0, 12)  # the same files: Arrow cache
    assert Corpus(tmp_path / "c").pieces == corpus.pieces


# ---- music21 ----


def test_music21_pieces_get_their_collections_style(tmp_path) -> None:
    config = BuildConfig(("music21:bach",), limit=3, valid_fraction=0, test_fraction=0)
    result = build_corpus(config, tmp_path / "c", cache_dir=tmp_path / "cache", workers=1)
    corpus = Corpus(tmp_path / "c")
    assert len(corpus) == 3
    assert not result.failures
    for i, piece in enumerate(corpus.pieces):
        assert piece.source == "music21"
        assert piece.style == "bach"
        assert piece.name.startswith("bach/")
        assert corpus.text(i).startswith("piece style:bach ")
        assert piece.notes > 100  # a chorale: four voices


def test_sources_are_parsed_with_clear_errors(tmp_path) -> None:
    assert parse_source("music21").kind == "music21"
    assert parse_source("music21:bach,irish").path == "bach,irish"
    assert parse_source(f"{tmp_path}:jazz").tag == "jazz"
    assert parse_source(str(tmp_path)).tag == tmp_path.name
    with pytest.raises(SourceError, match=r"'music21:bahc'.*bahc is not a music21 collection"):
        parse_source("music21:bahc")
    with pytest.raises(SourceError, match="nowhere is not a folder"):
        parse_source("nowhere:jazz")
    with pytest.raises(SourceError, match="tag 'a b'"):
        parse_source(f"{tmp_path}:a b")
    assert (style_of_tag("Jazz"), style_of_tag("my-band")) == ("jazz", "user")


def test_two_sources_with_one_tag_are_refused(midi_folder) -> None:
    with pytest.raises(CorpusError, match=r"share the tag 'x'.*DIR:TAG"):
        build_corpus(BuildConfig((f"{midi_folder}:x", f"{midi_folder}:x")), Path("/nonexistent"))


# ---- transposition augmentation ----


def test_transposition_moves_pitches_and_keys_and_never_drums(built) -> None:
    _, corpus, _ = built
    index = next(i for i, p in enumerate(corpus.pieces) if p.name == "band.mid")
    ids = corpus.ids(index).astype(np.int64)
    pitch, drum = VOCAB.ranges["pitch"], VOCAB.ranges["drum"]
    for k in range(*corpus.pieces[index].transpose):
        moved = transpose_ids(ids, k)
        is_pitch = (ids >= pitch.start) & (ids < pitch.stop)
        assert np.array_equal(moved[is_pitch], ids[is_pitch] + k)
        assert np.array_equal(moved[~is_pitch], ids[~is_pitch])  # drums, words, all else
        assert ((ids >= drum.start) & (ids < drum.stop)).sum() == 32
        for _ in walk(moved.tolist()):  # still one valid piece
            pass


@pytest.mark.parametrize(
    ("key", "semitones", "expected"),
    [("key:C:major", 2, "key:D:major"), ("key:A:minor", 1, "key:Bb:minor"),
     ("key:F:major", 1, "key:Gb:major"), ("key:B:major", -1, "key:Bb:major"),
     ("key:E:minor", -4, "key:C:minor"), ("key:C#:major", 0, "key:C#:major"),
     ("key:Cb:major", 12, "key:Cb:major")],
)  # fmt: skip
def test_key_signatures_move_with_the_notes(key: str, semitones: int, expected: str) -> None:
    moved = transpose_ids(np.array([VOCAB.ids[key]]), semitones)
    assert VOCAB.tokens[int(moved[0])] == expected


def test_augmentation_keeps_every_track_inside_its_instruments_range(built) -> None:
    _, corpus, _ = built
    index = next(i for i, p in enumerate(corpus.pieces) if p.name == "flute.mid")
    piece = corpus.pieces[index]
    ids = corpus.ids(index).astype(np.int64)
    pitch = VOCAB.ranges["pitch"]
    pitches = ids[(ids >= pitch.start) & (ids < pitch.stop)] - pitch.start
    low, high = pitch_range(FLUTE)  # C4..D7
    # its notes span C6..C7 (and chord notes a third above): up to D7, down to C4
    assert piece.transpose == (low - pitches.min(), high - pitches.max())
    sampler = WindowSampler(corpus, piece.split, block_size=64, transpose=12, seed=3)
    shifts = {sampler._shift(corpus, index) for _ in range(500)}
    assert shifts == set(range(max(-12, piece.transpose[0]), piece.transpose[1] + 1))
    for k in shifts:
        moved = transpose_ids(ids, k)
        moved_pitches = moved[(moved >= pitch.start) & (moved < pitch.stop)] - pitch.start
        assert low <= moved_pitches.min()
        assert moved_pitches.max() <= high
    with pytest.raises(ValueError, match=r"leaves MIDI's 0..127"):
        transpose_ids(ids, 127 - int(pitches.max()) + 1)


def test_transpose_range_is_the_intersection_over_melodic_tracks() -> None:
    # flute 72..96 (C4..D7: -12..+2), bass 40..50 (E1..G4: -12..+17)
    assert transpose_range([(FLUTE, False, 72, 96), (BASS, False, 40, 50)]) == (-12, 2)
    assert transpose_range([(0, True, 35, 81)]) == (0, 0)  # drums only: nothing moves
    # a track already outside its range may move, but no further out
    assert transpose_limits(FLUTE, 50, 70) == (0, 98 - 70)
    assert all(0 <= lo < hi <= 127 for lo, hi in PROGRAM_RANGES)


def test_fingerprints_ignore_style_and_transposition_only() -> None:
    text = encode_midi(write_midi(melody(tune(5), seed=5))).text.split()
    ids = np.array([VOCAB.ids[w] for w in text], dtype=np.uint16)
    assert fingerprint(transpose_ids(ids, 3).astype(np.uint16)) == fingerprint(ids)
    restyled = ids.copy()
    restyled[1] = VOCAB.ids["style:bach"]
    assert fingerprint(restyled) == fingerprint(ids)
    other = encode_midi(write_midi(melody(tune(5), seed=6))).text.split()
    assert fingerprint(np.array([VOCAB.ids[w] for w in other], dtype=np.uint16)) != fingerprint(ids)


def test_a_fingerprint_does_not_move_when_the_vocabulary_grows() -> None:
    """The hash a piece had with the 1,530-token vocabulary: its split stays put, so the test
    pieces of a model trained then are never in a newer model's training data."""
    text = ("piece style:folk-essen tempo:96 ts:4/4 key:G:major inst:flute "
            "bar @0 t1 d:1 v:80 D4 @1 G4 @2 key:E:minor B4 end")  # fmt: skip
    ids = np.array([VOCAB.ids[w] for w in text.split()], dtype=np.uint16)
    assert fingerprint(ids) == "a985dbc43f8d7a682237263aed4e74d5"


# ---- windows and mixtures ----


def test_windows_start_at_a_piece_or_a_bar_behind_the_pieces_header(built) -> None:
    _, corpus, _ = built
    sampler = WindowSampler(corpus, "train", block_size=64, seed=0)
    bar = VOCAB.ids["bar"]
    for _ in range(50):
        window = sampler.window()
        assert window.shape == (65,)
        assert window.dtype == np.int64
        assert VOCAB.tokens[window[0]] == "piece"
        header_end = int(np.argmax(window == bar))
        assert all(VOCAB.family_of[t] in {"piece", "style", "tempo", "ts", "key", "inst"}
                   for t in window[:header_end])  # fmt: skip


def test_mixing_weights_set_the_share_of_windows_per_source(midi_folder, tmp_path) -> None:
    folk = tmp_path / "folk"
    folk.mkdir()
    for i in range(20, 24):
        (folk / f"f{i}.mid").write_bytes(write_midi(melody(tune(i), seed=i)))
    config = BuildConfig((f"{midi_folder}:irish", f"{folk}:folk"), valid_fraction=0,
                         test_fraction=0)  # fmt: skip
    build_corpus(config, tmp_path / "c", cache_dir=tmp_path / "cache", workers=1)
    corpus = Corpus(tmp_path / "c")
    natural = WindowSampler(corpus, "train", 32).mixture()
    assert natural["irish:irish"] > 0.6  # 10 pieces against 4
    sampler = WindowSampler(corpus, "train", 32, weights={"folk": 0.7, "irish": 0.3}, seed=1)
    assert sampler.mixture() == pytest.approx({"folk:folk": 0.7, "irish:irish": 0.3})
    drawn = [sampler._draw_piece()[1] for _ in range(4000)]
    share = sum(corpus.pieces[i].source == "folk" for i in drawn) / len(drawn)
    assert share == pytest.approx(0.7, abs=0.03)
    with pytest.raises(CorpusError, match=r"'jazz': no source or style.*folk, irish"):
        WindowSampler(corpus, "train", 32, weights={"jazz": 1})


def test_sequential_windows_cover_the_split_once(built) -> None:
    _, corpus, _ = built
    windows = list(sequential_windows(corpus, "train", 100))
    total = sum(corpus.pieces[i].tokens for i in corpus.split("train"))
    assert sum(len(w) - 1 for w in windows) == total - 1
    assert all(len(w) == 101 for w in windows[:-1])


def test_a_corpus_of_another_vocabulary_is_refused(built, tmp_path) -> None:
    _, corpus, _ = built
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "index.jsonl").write_text("")
    # a renamed token keeps the size and changes the hash: refused all the same
    manifest = dict(corpus.manifest, vocab_sha256="0" * 64)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorpusError, match=r"another vocabulary.*rebuild the corpus"):
        Corpus(folder)
    with pytest.raises(CorpusError, match="not a corpus"):
        Corpus(tmp_path / "nothing")


# ---- the command line ----


def test_corpus_build_and_stats_from_the_command_line(midi_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MUSIC_LM_CACHE", str(tmp_path / "cache"))
    code, out, err = run_cli(monkeypatch, capsys, "corpus", "build", "-s", f"{midi_folder}:irish",
                             "-o", str(tmp_path / "c"), "-j", "1", "--valid", "0.2")  # fmt: skip
    assert code == 0
    assert "failed: irish:broken.mid: MidiError: truncated MIDI file" in err
    assert f"1 piece(s) failed: listed in {tmp_path / 'c' / 'failures.tsv'}" in err
    table = out.splitlines()
    assert table[0].split() == ["source", "split", "pieces", "notes", "tokens", "failed",
                                "duplicates"]  # fmt: skip
    assert table[2].split()[:2] == ["irish", "train"]
    assert table[2].split()[-2:] == ["1", "2"]
    assert out.rstrip().endswith("(12 encoded, 0 from the cache)")  # two files are one

    saved = _keep_saved_figures(monkeypatch)
    code, out, _ = run_cli(monkeypatch, capsys, "corpus", "stats", str(tmp_path / "c"))
    assert code == 0
    assert "styles (pieces): irish 10" in out
    png = tmp_path / "c" / "stats.png"
    assert out.rstrip().endswith(f"wrote {png}")
    ((fig, path),) = saved
    assert Path(path) == png
    import matplotlib.image as mpimg

    assert mpimg.imread(png).shape[:2] == (800, 1200)
    _assert_stats_drawn(fig, Corpus(tmp_path / "c"))


def _keep_saved_figures(monkeypatch) -> list:
    """(figure, path) of every matplotlib figure saved from now on: what a PNG shows,
    read off the figure (bar heights, positions) rather than off its pixels."""
    from matplotlib.figure import Figure

    saved: list = []
    save = Figure.savefig

    def keep(fig, fname, *args, **kwargs):
        saved.append((fig, fname))
        return save(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


def _bars(ax) -> tuple[np.ndarray, np.ndarray]:
    """(left edges and the last right edge, heights) of a panel's bars, left to right."""
    bars = sorted(ax.patches, key=lambda bar: bar.get_x())
    edges = [bar.get_x() for bar in bars] + [bars[-1].get_x() + bars[-1].get_width()]
    return np.array(edges), np.array([bar.get_height() for bar in bars])


def _histogram(values, edges: np.ndarray) -> list[int]:
    """Counts of `values` in the bins a histogram's bars span (the last right edge, read
    back as x + width, may be a rounding error short of the largest value)."""
    edges = edges.copy()
    assert max(values) <= edges[-1] * (1 + 1e-9)
    edges[-1] = max(edges[-1], max(values))
    return np.histogram(values, edges)[0].tolist()


def _assert_stats_drawn(fig, corpus: Corpus) -> None:
    """The four panels of stats.png show the corpus's own figures: notes per pitch, note
    durations, tokens per piece and pieces per style."""
    from music_lm.tokens.codec import decode

    pitches, durations, tokens, styles = fig.axes
    pitch = VOCAB.ranges["pitch"]
    ids = np.concatenate([corpus.ids(i) for i in range(len(corpus))])
    per_pitch = np.bincount(ids[(ids >= pitch.start) & (ids < pitch.stop)] - pitch.start,
                            minlength=128)  # fmt: skip
    edges, heights = _bars(pitches)
    assert (edges[:-1] + 0.5).tolist() == list(range(128))  # one bar per MIDI pitch
    assert heights.tolist() == per_pitch.tolist()
    melodic = [note.duration_tick / GRID_PER_QUARTER for i in range(len(corpus))
               for track in decode(corpus.text(i)).tracks if not track.is_drum
               for note in track.notes]  # fmt: skip
    edges, heights = _bars(durations)
    assert heights.tolist() == _histogram(melodic, edges)
    assert heights.sum() == len(melodic) > 0
    edges, heights = _bars(tokens)
    lengths = [piece.tokens for piece in corpus.pieces]
    assert heights.tolist() == _histogram(lengths, edges)
    assert heights.sum() == len(corpus)
    assert [bar.get_width() for bar in styles.patches] == [len(corpus)]
    assert [label.get_text() for label in styles.get_yticklabels()] == ["irish"]


def test_corpus_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "corpus", "build", "-s", "nowhere",
                             "-o", str(tmp_path / "c"))  # fmt: skip
    assert (code, out) == (2, "")
    assert err == "music-lm: error: source 'nowhere': nowhere is not a folder (nor 'music21')\n"
    assert not (tmp_path / "c").exists()
    code, _, err = run_cli(monkeypatch, capsys, "corpus", "stats", str(tmp_path))
    assert code == 2
    assert err == f"music-lm: error: {tmp_path}: not a corpus (no manifest.json)\n"


def test_tunes_that_music21s_midi_writer_refuses_as_is_still_come_through() -> None:
    from music21 import converter
    from music21.exceptions21 import StreamException
    from music21.midi import translate

    from music_lm.corpus.sources import music21_items, music21_midi

    tune = next(
        i for i in music21_items({"folk-essen"}) if i.name == "essenFolksong/altdeu10.abc#15"
    )
    parsed = converter.parse(tune.path, number=15)
    with pytest.raises(StreamException, match="already found in this Stream"):
        translate.streamToMidiFile(parsed)  # music21's bug: its repeats share a 3/1 meter mark
    score = encode_midi(music21_midi(tune.path, 15)).grid
    assert score.note_count == 53


def test_a_folder_with_a_stray_manifest_or_foreign_files_is_never_replaced(built, tmp_path):
    _, corpus, _ = built
    site = tmp_path / "site"
    site.mkdir()
    (site / "manifest.json").write_text('{"name": "my web app"}')
    (site / "index.html").write_text("<html>")
    with pytest.raises(CorpusError, match="holds no corpus"):
        build_corpus(BuildConfig((str(corpus.folder),)), site)
    assert (site / "index.html").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    for path in corpus.folder.iterdir():
        (mine / path.name).write_bytes(path.read_bytes())
    (mine / "notes.md").write_text("my notes on this corpus")
    with pytest.raises(CorpusError, match=r"holds files a build does not write \(notes.md\)"):
        build_corpus(BuildConfig((str(corpus.folder),)), mine)
    assert (mine / "notes.md").read_text() == "my notes on this corpus"


def changing_piece() -> Score:
    """Two tracks; 3/4 for two bars, then 4/4; a tempo and a key change at bar 4's start,
    another key change inside bar 5 (Gb to F#: the same key, spelt otherwise); the bass
    stops after bar 2."""
    bar34, bar44 = 3 * PPQ, 4 * PPQ
    starts = [0, bar34, 2 * bar34] + [2 * bar34 + i * bar44 for i in range(1, 5)]
    melody_notes = [Note(t + b, PPQ, 66 + (b // PPQ), 80) for t in starts for b in (0, PPQ)]
    bass_notes = [Note(0, 2 * PPQ, 42, 90), Note(bar34, 2 * PPQ, 37, 90)]
    return Score(
        PPQ,
        [Track(FLUTE, notes=melody_notes), Track(BASS, notes=bass_notes)],
        [TempoChange(0, 90.0), TempoChange(starts[3], 132.0)],
        [TimeSignature(0, 3, 4), TimeSignature(starts[2], 4, 4)],
        [KeySignature(0, -6, "major"), KeySignature(starts[3], 1, "major"),
         KeySignature(starts[4] + 2 * PPQ, 6, "major"), KeySignature(starts[5], -6, "major")],
    )  # fmt: skip


def test_a_piece_from_any_bar_on_is_a_valid_piece_with_what_is_in_force_there() -> None:
    from music_lm.corpus.dataset import piece_from_bar

    text = encode_midi(write_midi(changing_piece())).text
    ids = np.array([VOCAB.ids[w] for w in text.split()])
    bars = np.flatnonzero(ids == VOCAB.ids["bar"])
    assert len(bars) == 7
    for number, start in enumerate(bars, start=1):
        piece = piece_from_bar(ids, int(start))
        words = [VOCAB.tokens[i] for i in piece]
        validate(" ".join(words))
        header = words[: words.index("bar")]
        expected_ts = "ts:3/4" if number <= 2 else "ts:4/4"
        expected_tempo = "tempo:90" if number <= 3 else "tempo:132"
        assert expected_ts in header
        assert expected_tempo in header
        assert ("inst:electric-bass-finger" in header) == (number <= 2)  # stopped after bar 2
        # every transposition the sampler may draw keeps it valid, the Gb/F# change too
        for k in range(-6, 7):
            validate(" ".join(VOCAB.tokens[i] for i in transpose_ids(piece, k)))


def test_windows_are_valid_starts_of_pieces(tmp_path) -> None:
    folder = tmp_path / "changes"
    folder.mkdir()
    (folder / "a.mid").write_bytes(write_midi(changing_piece()))
    config = BuildConfig((str(folder),), valid_fraction=0, test_fraction=0)
    build_corpus(config, tmp_path / "c", cache_dir=tmp_path / "cache", workers=1)
    corpus = Corpus(tmp_path / "c")
    sampler = WindowSampler(corpus, "train", block_size=40, transpose=6, seed=2)
    starts = set()
    for _ in range(100):
        window = sampler.window().tolist()
        state_ok = [state for _, state in zip(window, walk_prefix(window), strict=False)]
        assert len(state_ok) == len(window)
        starts.add(tuple(window[:8]))
    assert len(starts) > 3  # windows start at different bars


def walk_prefix(ids: list[int]):
    """The grammar states along `ids`, which may stop anywhere and go on with a new piece
    after `end`."""
    from music_lm.tokens.grammar import GrammarState

    state = GrammarState()
    for token in ids:
        if state.done:
            state = GrammarState()
        assert state.is_allowed(token), VOCAB.tokens[token]
        state.advance(token)
        yield state


def test_overlapping_mixing_weights_are_refused(tmp_path) -> None:
    for tag, seeds in (("band", (40, 41)), ("demo", (42, 43))):
        (tmp_path / tag).mkdir()
        for seed in seeds:
            (tmp_path / tag / f"{seed}.mid").write_bytes(write_midi(melody(tune(seed))))
    config = BuildConfig((str(tmp_path / "band"), str(tmp_path / "demo")), valid_fraction=0,
                         test_fraction=0)  # fmt: skip
    build_corpus(config, tmp_path / "c", cache_dir=tmp_path / "cache", workers=1)
    corpus = Corpus(tmp_path / "c")
    assert {p.style for p in corpus.pieces} == {"user"}  # neither tag is a style
    sampler = WindowSampler(corpus, "train", 32, weights={"band": 1, "demo": 3})
    assert sampler.mixture() == pytest.approx({"band:user": 0.25, "demo:user": 0.75})
    with pytest.raises(CorpusError, match="'band' and 'user' share pieces"):
        WindowSampler(corpus, "train", 32, weights={"band": 0.5, "user": 0.5})
