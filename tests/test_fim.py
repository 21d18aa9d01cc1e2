"""The fill-in-the-middle form: a run of bars moved after the rest, `hole` where they were,
`fill` before them. Every middle of every piece gives a text the grammar reads, that decodes
to the same music and turns back into the piece word for word; a sampler never writes the
form's words; training windows hold it in the share asked; a model that learnt it reads the
bars after an infill's region.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_corpus import changing_piece
from test_properties import grid_scores

from music_lm.api import midi_to_text
from music_lm.corpus.dataset import FIM_MAX_BARS, fim_window
from music_lm.corpus.windows import window_of
from music_lm.generation.constraints import Constraints
from music_lm.generation.state import ContinuationState
from music_lm.midi.write import write_midi
from music_lm.tokens.codec import decode, encode
from music_lm.tokens.encoded import encode_midi
from music_lm.tokens.fim import FILL, HOLE, from_fim, split_fim, to_fim
from music_lm.tokens.grammar import GrammarError, GrammarState
from music_lm.tokens.rules import BAR, END
from music_lm.tokens.validate import validate
from music_lm.tokens.vocab import VOCAB

EXAMPLES = Path(__file__).resolve().parent.parent / "midi_in"
PIECES = {path.name: validate(midi_to_text(path)) for path in sorted(EXAMPLES.glob("*.mid"))}
PIECES["changing_piece"] = validate(encode_midi(write_midi(changing_piece())).text)


def text(ids: list[int]) -> str:
    return " ".join(VOCAB.tokens[t] for t in ids)


def middles(ids: list[int]):
    """Every (start, stop) of a run of whole bars: the middle's first `bar` and the
    suffix's first `bar` or the `end`."""
    bars = [i for i, t in enumerate(ids) if t == BAR] + [len(ids) - 1]
    for a in range(len(bars) - 1):
        for b in range(a + 1, len(bars)):
            yield bars[a], bars[b]


def read_fim(ids: list[int]) -> GrammarState:
    state = GrammarState(fim=True)
    for token in ids:
        state.advance(token)
    return state


@pytest.mark.parametrize("name", sorted(PIECES))
def test_every_middle_of_a_piece_reads_decodes_alike_and_comes_back_word_for_word(name) -> None:
    ids = PIECES[name]
    plain_score = decode(text(ids))
    checked = 0
    for start, stop in middles(ids):
        fim = to_fim(ids, start, stop)
        assert read_fim(fim).done, text(fim)
        assert fim.count(HOLE) == fim.count(FILL) == 1
        assert fim[-1] == END
        prefix, restated, _suffix, middle = split_fim(fim)
        assert prefix == ids[:start]
        assert middle == ids[start:stop]
        assert [VOCAB.family_of[t] for t in restated][:2] == ["tempo", "ts"]
        assert from_fim(fim) == ids
        if checked % 7 == 0:  # decoding is the slow part
            assert decode(text(fim)) == plain_score
        checked += 1
    assert checked >= 10


def test_the_suffix_restates_the_meter_tempo_and_key_the_middle_leaves_in_force() -> None:
    ids = PIECES["changing_piece"]
    bars = [i for i, t in enumerate(ids) if t == BAR]
    # the middle is bars 2-3: the meter changes at bar 3, tempo and key at bar 4's @0
    fim = to_fim(ids, bars[1], bars[3])
    _, restated, suffix, _ = split_fim(fim)
    assert text(restated) == "tempo:132 ts:4/4 key:G:major"
    assert not any(VOCAB.family_of[t] in ("ts", "tempo") for t in suffix[:4])
    assert from_fim(fim) == ids


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(score=grid_scores(), data=st.data())
def test_any_piece_and_any_middle_survive_the_form(score, data) -> None:
    ids = validate(encode(score))
    bars = [i for i, t in enumerate(ids) if t == BAR] + [len(ids) - 1]
    if len(bars) < 2:
        return
    a = data.draw(st.integers(0, len(bars) - 2))
    b = data.draw(st.integers(a + 1, len(bars) - 1))
    fim = to_fim(ids, bars[a], bars[b])
    assert read_fim(fim).done
    assert from_fim(fim) == ids
    assert decode(text(fim)) == decode(text(ids))


def test_the_form_is_refused_where_it_is_not_whole_bars_or_not_asked_for() -> None:
    ids = PIECES["folk_tune.mid"]
    bars = [i for i, t in enumerate(ids) if t == BAR]
    with pytest.raises(ValueError, match="a middle is whole bars"):
        to_fim(ids, bars[1] + 1, bars[2])
    with pytest.raises(ValueError, match="the suffix starts at a bar"):
        to_fim(ids, bars[1], bars[2] + 1)
    fim = to_fim(ids, bars[1], bars[2])
    plain = GrammarState()  # what every sampler's state is
    for token in fim[: fim.index(HOLE)]:
        plain.advance(token)
    with pytest.raises(GrammarError):
        plain.advance(HOLE)
    # `end` may not close the suffix, and the form comes once
    broken = [*fim[: fim.index(FILL)], END]
    with pytest.raises(GrammarError):
        read_fim(broken)
    with pytest.raises(GrammarError):
        read_fim([*fim[:-1], HOLE])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # an empty middle with nothing after it: the plain piece would end on an empty bar
        ("hole tempo:90 ts:4/4 fill bar end", "token 16 'end': expected"),
        # a middle note sounding into the suffix over a note of the same pitch there
        ("hole tempo:90 ts:4/4 bar @0 t1 d:1 v:80 C4 fill bar @0 t1 d:4+ d:4 v:80 C4 end",
         "token 11 'hole': the piece this fill-in-the-middle text stands for is not valid"),
        # a key the middle states, which the suffix does not restate
        ("hole tempo:90 ts:4/4 bar @0 t1 d:1 v:80 C4 fill bar @0 key:C:major t1 d:1 v:80 D4 end",
         "the suffix restates no key, but one is in force after the middle"),
    ],
)  # fmt: skip
def test_a_text_in_the_form_whose_piece_is_invalid_is_refused(text, message) -> None:
    head = "piece style:none tempo:90 ts:4/4 inst:flute bar @0 t1 d:1 v:80 C4 "
    with pytest.raises(GrammarError, match=message):
        validate(head + text)
    with pytest.raises(GrammarError, match=message):
        decode(head + text)


def test_a_key_in_force_before_the_gap_must_be_restated_after_it() -> None:
    head = "piece style:none tempo:90 ts:4/4 key:C:major inst:flute bar @0 t1 d:1 v:80 C4 "
    rest = "bar @0 t1 d:1 v:80 C4 fill bar @0 t1 d:1 v:80 D4 end"
    validate(head + "hole tempo:90 ts:4/4 key:C:major " + rest)
    with pytest.raises(GrammarError, match="token 15 'bar': expected any key token"):
        validate(head + "hole tempo:90 ts:4/4 " + rest)


def test_a_samplers_state_never_offers_hole_or_fill() -> None:
    rng = random.Random(3)
    for name, ids in PIECES.items():
        seed = ids[: [i for i, t in enumerate(ids) if t == BAR][2]]
        for _ in range(20):
            state = ContinuationState(seed, Constraints(bars=2))
            while not state.done:
                ranges = state.allowed_ranges()
                allowed = [t for lo, hi in ranges for t in range(lo, hi)]
                assert HOLE not in allowed, name
                assert FILL not in allowed, name
                state.advance(rng.choice(allowed))


def test_training_windows_hold_the_form_in_the_share_asked_and_every_one_reads() -> None:
    rng = np.random.default_rng(0)
    ids = np.array(PIECES["band_with_drums.mid"], dtype=np.int64)
    lengths = []
    for left in (80, 200, 1025):
        for _ in range(60):
            window = fim_window(ids, left, rng)
            if HOLE not in window:
                assert np.array_equal(window, ids)  # too short a window for one bar
                continue
            assert len(window) <= left
            state = read_fim(window.tolist())
            assert state.done
            _, _, _, middle = split_fim(window.tolist())
            lengths.append(middle.count(BAR))
            # the plain piece is a run of the original's bars from its first
            plain = from_fim(window.tolist())
            body = plain[plain.index(BAR) : -1]
            assert text(body) in text(ids.tolist())
    assert lengths
    assert min(lengths) >= 1
    assert max(lengths) <= FIM_MAX_BARS
    assert len(set(lengths)) > 3


def test_a_window_cut_from_a_longer_piece_keeps_a_bar_after_its_middle() -> None:
    """Only the piece's own end may follow a middle directly: a window that cut the piece
    short holds a suffix bar, or the form's `end` would say the piece ends at the cut."""
    rng = np.random.default_rng(1)
    ids = np.array(PIECES["band_with_drums.mid"], dtype=np.int64)
    cut = reached_the_end = 0
    for left in (80, 200, 400, len(ids) + 10):
        for _ in range(80):
            window = fim_window(ids, left, rng)
            if HOLE not in window:
                continue
            _, _, suffix, _ = split_fim(window.tolist())
            plain = from_fim(window.tolist())
            if len(plain) < len(ids):  # the piece was cut
                cut += 1
                assert suffix.count(BAR) >= 1, text(window.tolist()[-40:])
            elif not suffix:
                reached_the_end += 1
    assert cut > 100
    assert reached_the_end > 0  # a whole piece's middle may still run to its end


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from music_lm.corpus.build import build_corpus
    from music_lm.corpus.config import BuildConfig
    from music_lm.corpus.dataset import Corpus

    root = tmp_path_factory.mktemp("fim")
    folder = root / "midi"
    folder.mkdir()
    for path in EXAMPLES.glob("*.mid"):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "changes.mid").write_bytes(write_midi(changing_piece()))
    config = BuildConfig((str(folder),), valid_fraction=0, test_fraction=0)
    build_corpus(config, root / "corpus", cache_dir=root / "cache", workers=1)
    return Corpus(root / "corpus")


def test_the_sampler_draws_the_form_in_its_share_and_as_before_without_it(corpus) -> None:
    from music_lm.corpus.dataset import WindowSampler

    plain = WindowSampler(corpus, "train", block_size=256, seed=5)
    before = WindowSampler(corpus, "train", block_size=256, seed=5, fim_share=0.0)
    assert all(np.array_equal(plain.window(), before.window()) for _ in range(10))
    sampler = WindowSampler(corpus, "train", block_size=256, seed=5, fim_share=0.5)
    pieces = forms = 0
    for _ in range(200):
        window = sampler.window()
        pieces += int((window == VOCAB.ids["piece"]).sum())
        forms += int((window == HOLE).sum())
    assert 0.3 < forms / pieces < 0.6  # a piece too short for a middle stays plain
    with pytest.raises(ValueError, match="fim_share must be a probability"):
        WindowSampler(corpus, "train", fim_share=1.5)


def test_a_long_sequence_in_the_form_keeps_both_sides_and_the_middle_in_its_window() -> None:
    ids = PIECES["band_with_drums.mid"]
    bars = [i for i, t in enumerate(ids) if t == BAR]
    fim = to_fim(ids, bars[4], bars[6])
    head = fim[: fim.index(FILL) + 1]
    middle = fim[fim.index(FILL) + 1 : -1]
    for limit in (120, 200, 400):
        window, _first = window_of(head + middle[:40], limit)
        assert len(window) <= limit
        assert HOLE in window
        assert FILL in window
        assert window[-40:] == middle[:40]
        header = ids[: bars[0]]
        assert window[:2] == header[:2]  # the piece's header, restated
        state = GrammarState(fim=True)  # the window reads as the form up to the middle
        for token in window:
            state.advance(token)


# ---- a model that learnt the form ----


@pytest.fixture(scope="module")
def fim_model(tmp_path_factory) -> Path:
    """An untrained tiny GPT-2 whose record says it trained on the form (context 512:
    room for a band bar on both sides of a region)."""
    torch = pytest.importorskip("torch")
    from music_lm.model.folder import model_config, model_meta, new_model, save_model_folder

    torch.manual_seed(0)
    model = new_model(model_config("tiny", context=512))
    meta = model_meta(training={"fim_share": 0.3, "step": 0})
    return save_model_folder(model, tmp_path_factory.mktemp("fim-model"), meta)


def test_bars_mode_with_a_model_of_the_form_reads_the_suffix_first(fim_model, tiny_model) -> None:
    from test_generate import adversarial_forward
    from test_infill import check_infill

    from music_lm.generation import infill as infill_module
    from music_lm.generation.infill import infill, plan_infill
    from music_lm.generation.models import _Runner
    from music_lm.model.folder import load_model

    ids = PIECES["band_with_drums.mid"]
    plan = plan_infill(ids, None, "3-4", "band")
    prompts = []
    real = infill_module._sample_rows

    def spy(runners, state, prompt, *args):
        prompts.append(list(prompt))
        return real(runners, state, prompt, *args)

    loaded = [load_model(fim_model)]
    with patch.object(infill_module, "_sample_rows", spy), \
            patch.object(_Runner, "_forward", adversarial_forward(_Runner._forward)):  # fmt: skip
        for seed in range(12):
            take = infill(ids, None, bars="3-4", models=[fim_model], loaded=loaded,
                          variants=4, random_seed=seed)  # fmt: skip
            assert take.settings["both_sides"] is True
            for variant in take.variants:
                check_infill(plan, variant.ids)
        plain = infill(ids, None, bars="3-4", models=[tiny_model], variants=1, random_seed=0)
    assert plain.settings["both_sides"] is False
    prompt = prompts[0]
    assert prompt[-1] == FILL
    assert HOLE in prompt
    suffix = plan.suffix[:-1]  # without `end`
    hole = prompt.index(HOLE)
    body = prompt[prompt.index(BAR) : hole]  # the prefix's latest bars (a long band bar)
    assert body
    assert plan.prefix[len(plan.prefix) - len(body) :] == body
    assert len(prompt) <= 512 - 128 - 100  # room for the region's words
    assert text(suffix[1:20]) in text(prompt[hole:])  # the bars after the region
    assert prompts[-1] == plan.prefix  # the model without the form: the prefix only


def test_the_run_record_carries_the_share_and_a_fine_tune_keeps_its_bases(fim_model) -> None:
    from music_lm.cli.training import base_fim_share
    from music_lm.training.config import TrainConfig, TrainError

    assert base_fim_share(str(fim_model)) == 0.3
    assert base_fim_share("default") == float(
        json.loads((Path(__file__).parent.parent / "music_lm/models/default/music_lm.json")
                    .read_text())["training"].get("fim_share") or 0.0
    )  # fmt: skip
    with pytest.raises(TrainError, match=r"--fim-share must be a probability 0\.\.1, got 2"):
        TrainConfig(data=("x",), output="y", fim_share=2)
    saved = TrainConfig(data=("x",), output="y").to_json()
    del saved["fim_share"]
    assert TrainConfig.from_json(saved).fim_share == 0.0


def test_the_gaps_bits_count_the_same_words_before_only_and_with_both_sides(fim_model) -> None:
    import torch

    from music_lm.model.folder import load_model
    from music_lm.training.fim_scoring import middle_sequence, score_middles

    loaded = load_model(fim_model)
    ids = PIECES["band_with_drums.mid"]
    bars = [i for i, t in enumerate(ids) if t == BAR]
    start, stop = bars[3], bars[5]
    before = middle_sequence(ids, start, stop, 512, both_sides=False)
    both = middle_sequence(ids, start, stop, 512, both_sides=True)
    assert before[-(stop - start) :] == both[-(stop - start) :] == ids[start:stop]
    assert HOLE not in before
    assert HOLE in both
    assert len(both) <= 512
    assert both[both.index(FILL) - 30 : both.index(FILL)] == ids[stop : stop + 30] or (
        text(ids[stop + 1 : stop + 20]) in text(both)
    )
    scored = score_middles(loaded, [(ids, start, stop)], both_sides=True)
    words = stop - start - 1  # the region's first `bar` is left out of both
    assert scored.words == words
    assert scored.regions == 1
    assert scored.notes == sum(VOCAB.is_note[t] for t in ids[start:stop])
    # the figure is the cross-entropy of the region's words, by hand
    batch = torch.tensor([both])
    with torch.inference_mode():
        logits = loaded.model(input_ids=batch[:, :-1]).logits[0, -words:].float()
    targets = batch[0, -words:]
    by_hand = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    assert scored.bits == pytest.approx(float(by_hand) / np.log(2), rel=1e-4)
    plain = score_middles(loaded, [(ids, start, stop)], both_sides=False)
    assert plain.notes == scored.notes
    assert plain.bits != scored.bits


def test_a_model_knows_the_form_by_its_own_run_or_its_bases() -> None:
    from types import SimpleNamespace

    from music_lm.generation.infill import knows_fim
    from music_lm.model.folder import trained_on_fim

    assert trained_on_fim({"training": {"fim_share": 0.3}})
    # a fine-tune without the form, of a base that had it
    assert trained_on_fim({"training": {"fim_share": 0.0, "fim_trained": True}})
    assert not trained_on_fim({"training": {"fim_share": 0.0}})
    assert not trained_on_fim(None)
    meta = {"training": {"fim_share": 0.3}}
    assert knows_fim(SimpleNamespace(meta=meta, music_vocab_size=len(VOCAB)))
    # a model of the older vocabulary has no `hole` to read, whatever its record says
    assert not knows_fim(SimpleNamespace(meta=meta, music_vocab_size=VOCAB.ids["hole"]))
