"""`music-lm evaluate` by token group and by source: the groups partition the targets, every
source is reported on its own and all together, the baselines count the same targets, and
a uniform model spends log2(V) bits on every token of every group.

The corpus has two sources, as a corpus of music21 and a Debian package has: folk tunes
(a folder tagged "folk") and band tunes with a drum track (a folder tagged "band").
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import tune

from music_lm.corpus.dataset import Corpus, sequential_windows
from music_lm.midi.score import Note, Track
from music_lm.model.folder import model_config, new_model
from music_lm.tokens.vocab import NOTE_FAMILIES, VOCAB
from music_lm.training.baselines import baseline_report, evaluate_stream, split_stream
from music_lm.training.evaluate import markdown_group_table, source_sets
from music_lm.training.groups import (
    GROUP_OF_FAMILY,
    GROUPS,
    NOTE_GROUPS,
    combine,
    group_of_tokens,
)
from music_lm.training.scoring import evaluate, labelled_windows, score_windows

CONTEXT = 64
LOG2_V = math.log2(len(VOCAB))


def band_tune(seed: int):
    """A tune with a drum track: a bass drum on every beat, a hi-hat on the off-beats."""
    score = tune(seed)
    end = max(n.onset_tick + n.duration_tick for n in score.tracks[0].notes)
    beats = range(0, end, 480)
    hits = [Note(t, 60, 36, 100) for t in beats] + [Note(t + 240, 60, 42, 70) for t in beats]
    score.tracks.append(Track(0, is_drum=True, notes=sorted(hits, key=lambda n: n.onset_tick)))
    return score


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Twelve folk tunes and twelve band tunes, each folder its own source."""
    from music_lm.corpus.build import build_corpus
    from music_lm.corpus.config import BuildConfig
    from music_lm.midi.write import write_midi

    root = tmp_path_factory.mktemp("two-sources")
    for tag, make, seeds in (("folk", tune, range(12)), ("band", band_tune, range(100, 112))):
        (root / tag).mkdir()
        for seed in seeds:
            (root / tag / f"{tag}{seed}.mid").write_bytes(write_midi(make(seed)))
    config = BuildConfig((f"{root / 'folk'}:folk", f"{root / 'band'}:band"),
                         valid_fraction=0.25, test_fraction=0.3)  # fmt: skip
    build_corpus(config, root / "corpus", cache_dir=root / "cache", workers=1)
    corpus = Corpus(root / "corpus")
    in_test = {corpus.pieces[i].source for i in corpus.split("test")}
    assert in_test == {"folk", "band"}, "both sources have test pieces"
    return corpus


def seeded_model(zero: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    model = new_model(model_config("tiny", CONTEXT))
    if zero:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()  # every logit 0: the uniform distribution
    return model


@pytest.fixture(scope="module")
def figures(two_sources: Corpus) -> dict:
    """An untrained tiny GPT-2 (seeded) on the test split of the two sources."""
    return evaluate(seeded_model(), [two_sources], "test", CONTEXT, batch_size=4)


def test_every_family_is_in_exactly_one_group() -> None:
    assert set(GROUP_OF_FAMILY) == set(VOCAB.ranges)
    assert set(GROUP_OF_FAMILY.values()) == set(GROUPS)
    # the note groups hold the note families and nothing else: their tokens are the notes
    note_families = {f for f, g in GROUP_OF_FAMILY.items() if g in NOTE_GROUPS}
    assert note_families == set(NOTE_FAMILIES)
    group = group_of_tokens()
    assert group.shape == (len(VOCAB),)
    assert GROUPS[group[VOCAB.ids["v:64"]]] == "velocity"
    assert GROUPS[group[VOCAB.ids["bar"]]] == "timing"
    assert GROUPS[group[VOCAB.ids["drum:bass-drum-1"]]] == "drum"


def test_the_groups_partition_the_targets(figures: dict) -> None:
    groups = figures["groups"]
    assert sum(g["tokens"] for g in groups.values()) == figures["tokens"]
    # bits per token averaged by counts: the overall bits per token
    bits = sum(g["bits_per_token"] * g["tokens"] for g in groups.values())
    assert bits / figures["tokens"] == pytest.approx(figures["loss"] / math.log(2), rel=1e-9)
    # the bits per note of the groups add up to the bits per note
    assert sum(g["bits_per_note"] for g in groups.values()) == pytest.approx(
        figures["bits_per_note"], rel=1e-9
    )
    assert groups["pitch"]["tokens"] + groups["drum"]["tokens"] == figures["notes"]
    for group in ("pitch", "drum", "velocity", "duration", "timing", "track", "header"):
        loss = figures[f"loss_{group}"]  # the key the training run logs, kept
        assert groups[group]["bits_per_token"] == pytest.approx(loss / math.log(2))


def test_each_source_is_reported_and_the_sources_add_up(two_sources: Corpus, figures: dict) -> None:
    sources = figures["sources"]
    assert list(sources) == ["folk", "band"]  # in the order of the corpus index
    test = two_sources.split("test")
    for name, source in sources.items():
        pieces = [two_sources.pieces[i] for i in test if two_sources.pieces[i].source == name]
        first = two_sources.pieces[test[0]].source == name  # the split's first token
        assert source["tokens"] == sum(p.tokens for p in pieces) - first
        assert source["notes"] == sum(p.notes for p in pieces)
        assert sum(g["tokens"] for g in source["groups"].values()) == source["tokens"]
        assert 0 <= source["accuracy"] <= 1
    assert "drum" in sources["band"]["groups"]
    assert "drum" not in sources["folk"]["groups"]  # a group without a target is left out
    for key in ("tokens", "notes"):
        assert sum(s[key] for s in sources.values()) == figures[key]
    nats = sum(s["loss"] * s["tokens"] for s in sources.values())
    assert nats / figures["tokens"] == pytest.approx(figures["loss"], rel=1e-9)
    for group, all_sources in figures["groups"].items():
        counts = [s["groups"].get(group, {"tokens": 0})["tokens"] for s in sources.values()]
        assert sum(counts) == all_sources["tokens"], group


def test_a_uniform_model_spends_log2_v_bits_on_every_token_of_every_group(
    two_sources: Corpus,
) -> None:
    figures = evaluate(seeded_model(zero=True), [two_sources], "test", CONTEXT, batch_size=3)
    for source in [figures, *figures["sources"].values()]:
        for group in source["groups"].values():
            assert group["bits_per_token"] == pytest.approx(LOG2_V, rel=1e-6)
    for source in figures["sources"].values():
        assert source["bits_per_note"] == pytest.approx(
            source["tokens"] * LOG2_V / source["notes"], rel=1e-6
        )


def test_each_window_token_carries_the_source_of_its_piece(two_sources: Corpus) -> None:
    split = labelled_windows([two_sources], "test", CONTEXT)
    expected = list(sequential_windows(two_sources, "test", CONTEXT))
    assert [w.tolist() for w in split.tokens] == [w.tolist() for w in expected]
    assert [len(s) for s in split.sources] == [len(w) for w in split.tokens]
    # the windows overlap by one: dropping each window's first token gives the stream
    labels = np.concatenate([split.sources[0][:1], *(s[1:] for s in split.sources)])
    names = [two_sources.pieces[i].source for i in two_sources.split("test")]
    tokens = [two_sources.pieces[i].tokens for i in two_sources.split("test")]
    assert [split.source_names[i] for i in labels] == list(np.repeat(names, tokens))
    picked = labelled_windows([two_sources], "test", CONTEXT, max_windows=3)
    assert len(picked.tokens) == len(picked.sources) == 3
    assert [len(s) for s in picked.sources] == [len(w) for w in picked.tokens]


def test_validation_figures_are_unchanged_by_the_breakdown(two_sources: Corpus) -> None:
    """The training run scores windows without sources: the same figures, no new keys."""
    model = seeded_model()
    split = labelled_windows([two_sources], "valid", CONTEXT)
    plain = score_windows(model, split.tokens, 4)
    full = score_windows(model, split.tokens, 4, sources=split.sources,
                         source_names=split.source_names)  # fmt: skip
    assert "sources" not in plain
    assert "groups" not in plain
    assert set(full) - set(plain) == {"groups", "sources"}
    for key, value in plain.items():
        assert full[key] == pytest.approx(value, rel=1e-12), key


def test_the_baselines_score_the_same_targets_by_source_and_group(
    two_sources: Corpus, figures: dict
) -> None:
    report = baseline_report(two_sources, "train", "test", orders=(0, 3))
    for name, baseline in report.items():
        assert list(baseline["sources"]) == list(figures["sources"]), name
        for source, ours in figures["sources"].items():
            theirs = baseline["sources"][source]
            assert theirs["tokens"] == ours["tokens"]
            assert {g: f["tokens"] for g, f in theirs["groups"].items()} == {
                g: f["tokens"] for g, f in ours["groups"].items()
            }
        bits = sum(g["bits_per_token"] * g["tokens"] for g in baseline["groups"].values())
        assert bits / baseline["tokens"] == pytest.approx(baseline["loss"] / math.log(2))
    stream = split_stream(two_sources, "test")
    one_bit = evaluate_stream(np.full(len(stream) - 1, -math.log(2)), stream[1:],
                              np.zeros(len(stream) - 1, dtype=int), ["all"])  # fmt: skip
    assert all(g["bits_per_token"] == pytest.approx(1.0) for g in one_bit["groups"].values())


def test_the_command_prints_a_line_per_source_and_group_and_writes_them(
    two_sources: Corpus, tiny_model: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from music_lm.cli import app

    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["evaluate", "-m", str(tiny_model), "-d",
                                      str(two_sources.folder), "--json", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for source in ("folk", "band", "all"):
        for group in ("pitch", "velocity", "duration", "timing", "all", "per note"):
            assert any(line.split()[:1] == [source] and f" {group} " in line
                       for line in lines), (source, group)  # fmt: skip
    assert any(line.startswith("band") and " drum " in line for line in lines)
    assert not any(line.startswith("folk") and " drum " in line for line in lines)
    saved = json.loads(out.read_text())
    for name in ("gpt2", "unigram", "markov-3"):
        model = saved["results"][name]
        assert {"loss", "perplexity", "bits_per_note", "tokens", "notes"} <= set(model)
        assert list(model["sources"]) == ["folk", "band"]
        band_drums = model["sources"]["band"]["groups"]["drum"]["tokens"]
        assert model["groups"]["drum"]["tokens"] == band_drums
    quick = CliRunner().invoke(app, ["evaluate", "-m", str(tiny_model), "-d",
                                     str(two_sources.folder), "--max-windows", "2",
                                     "--no-baselines"])  # fmt: skip
    assert quick.exit_code == 0, quick.output
    picked = labelled_windows([two_sources], "test", 64, max_windows=2).tokens
    gpt2 = next(line for line in quick.output.splitlines() if line.startswith("gpt2"))
    assert gpt2.split()[-1] == f"{sum(len(w) - 1 for w in picked):,}"


def test_several_sources_together_are_their_targets_pooled(figures: dict) -> None:
    pooled = combine(list(figures["sources"].values()))
    for key in ("tokens", "notes", "loss", "bits_per_note", "accuracy"):
        assert pooled[key] == pytest.approx(figures[key], rel=1e-9), key
    assert list(pooled["groups"]) == list(figures["groups"])
    for group, together in pooled["groups"].items():
        assert together == pytest.approx(figures["groups"][group], rel=1e-9), group


def test_the_debian_packages_of_a_corpus_are_also_reported_together() -> None:
    def corpus(*specs: str) -> SimpleNamespace:
        entries = [{"source": spec.rsplit(":", 1)[-1], "spec": spec} for spec in specs]
        return SimpleNamespace(manifest={"sources": entries})

    two = corpus("music21", "debian:simutrans-data", "debian:freedink-data")
    assert source_sets(two, ["music21", "simutrans-data", "freedink-data"]) == {
        "debian:*": ["simutrans-data", "freedink-data"]
    }
    # a package without a piece in the split is not a member
    assert source_sets(two, ["music21", "simutrans-data"]) == {}
    # every source is a package: the set is the "all" of the table already
    assert source_sets(two, ["simutrans-data", "freedink-data"]) == {}
    assert source_sets(corpus("music21", "/home/me/midi:band"), ["music21", "band"]) == {}


def test_the_model_card_table_has_a_row_per_source_and_group(figures: dict) -> None:
    results = {"gpt2": figures, "copy": figures}
    lines = markdown_group_table(results, {"gpt2": "this model", "copy": "again"})
    assert lines[0] == "| source | group | tokens | this model | again |"
    rows = [line.split(" | ") for line in lines[2:]]
    per_source = {len(figures["sources"][s]["groups"]) + 2 for s in figures["sources"]}
    assert len(rows) == sum(per_source) + len(figures["groups"]) + 2  # + "all" sources
    assert rows[-1][0] == "| all"
    assert rows[-1][3] == f"{figures['bits_per_note']:.2f}"
    assert all(row[3] == row[4].rstrip(" |") for row in rows)
