"""The grammar of the token text, as a specification: valid pieces, one minimal invalid
text per rule (with the error it must give), and random walks through the automaton."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import music_lm
from music_lm.midi.gm import pitch_to_name
from music_lm.midi.read import read_midi
from music_lm.midi.write import write_midi
from music_lm.tokens.codec import decode, encode, to_grid
from music_lm.tokens.grammar import GrammarError, GrammarState
from music_lm.tokens.rules import describe_ranges
from music_lm.tokens.validate import validate
from music_lm.tokens.vocab import VOCAB

# ---- valid pieces (canonical text: a header line, one line per bar, then "end") ----

MELODY = """\
piece style:folk tempo:96 ts:3/4 key:G:major inst:flute
bar @0 t1 d:1 v:80 G4 @1 A4 @2 B4
bar @0 t1 d:2 v:96 D5 @2 d:1/2 v:80 C5 @2+1/2 B4
bar @0 t1 d:3 v:80 G4
end
"""

CHORDS = """\
piece style:hymn tempo:72 ts:4/4 key:C:major inst:church-organ
bar @0 t1 d:4 v:64 C3 E4 G4 C5
bar @0 t1 d:2 v:64 F3 F4 A4 C5 @2 G3 D4 G4 B4
bar @0 t1 d:4 v:64 C3 E4 G4 C5
end
"""

DRUM_GROOVE = """\
piece style:rock tempo:120 ts:4/4 inst:electric-bass-finger inst:drums
bar @0 t1 d:1 v:96 E2 t2 d:1/4 v:112 drum:bass-drum-1 drum:closed-hi-hat \
@1/2 v:80 drum:closed-hi-hat @1 t1 E2 t2 v:112 drum:acoustic-snare drum:closed-hi-hat \
@1+1/2 v:80 drum:closed-hi-hat
end
"""

TEMPO_CHANGE = """\
piece style:classical tempo:120 ts:4/4 inst:acoustic-grand-piano
bar @0 t1 d:1 v:80 C4 @1 D4 @2 E4 @3 F4
bar @0 tempo:90 t1 d:4 v:80 G4
bar ts:3/4 @0 tempo:60 t1 d:3 v:80 C4
end
"""

LONG_NOTES_AND_CHANGES = """\
piece style:none tempo:100 ts:6/8 key:D:minor inst:cello inst:violin
bar @0 t1 d:8+ d:1/2 v:64 D2 t2 d:1/3 v:80 A4 @1/3 Bb4 @2/3 A4
bar @1+1/2 key:F:major t2 d:1+1/2 v:96 C5 C5
bar
bar ts:3/4 @2+11/12 tempo:99.5 t2 d:1/12 v:127 F5
end
""".replace("Bb4", "A#4")

EMPTY_PIECE = "piece style:none tempo:120 ts:4/4\nend\n"

VALID_PIECES = {
    "a melody": MELODY,
    "a chord progression": CHORDS,
    "a drum groove": DRUM_GROOVE,
    "a tempo change": TEMPO_CHANGE,
    "long notes, doubled notes and changes": LONG_NOTES_AND_CHANGES,
    "an empty piece": EMPTY_PIECE,
}


@pytest.mark.parametrize("name", list(VALID_PIECES))
def test_valid_pieces_validate_decode_and_encode_back_to_the_same_text(name):
    text = VALID_PIECES[name]
    ids = validate(text)
    assert [VOCAB.tokens[i] for i in ids] == text.split()
    assert encode(decode(text)) == text


@pytest.mark.parametrize("name", list(VALID_PIECES))
def test_valid_pieces_survive_midi(name):
    text = VALID_PIECES[name]
    assert music_lm.midi_to_text(music_lm.text_to_midi(text)) == text


def test_the_melody_decodes_to_the_notes_it_spells():
    score = decode(MELODY)
    assert score.ticks_per_beat == 24
    assert [(t.tick, t.bpm) for t in score.tempos] == [(0, 96.0)]
    assert [(t.tick, str(t)) for t in score.time_signatures] == [(0, "3/4")]
    assert [(k.tick, str(k)) for k in score.key_signatures] == [(0, "G major")]
    [flute] = score.tracks
    assert (flute.program, flute.is_drum) == (73, False)
    notes = [
        (n.onset_tick, n.duration_tick, pitch_to_name(n.pitch), n.velocity) for n in flute.notes
    ]
    assert notes == [
        (0, 24, "G4", 80), (24, 24, "A4", 80), (48, 24, "B4", 80),
        (72, 48, "D5", 96), (120, 12, "C5", 80), (132, 12, "B4", 80),
        (144, 72, "G4", 80),
    ]  # fmt: skip


def test_the_drum_groove_decodes_to_a_bass_and_a_drum_track():
    score = decode(DRUM_GROOVE)
    bass, drums = score.tracks
    assert (bass.program, bass.is_drum, drums.is_drum) == (33, False, True)
    assert [(n.onset_tick, n.pitch, n.velocity) for n in drums.notes] == [
        (0, 36, 112), (0, 42, 112), (12, 42, 80), (24, 38, 112), (24, 42, 112), (36, 42, 80),
    ]  # fmt: skip
    assert all(n.duration_tick == 6 for n in drums.notes)


def test_a_tempo_change_lands_on_its_onset():
    score = decode(TEMPO_CHANGE)
    assert [(t.tick, t.bpm) for t in score.tempos] == [(0, 120.0), (96, 90.0), (192, 60.0)]
    assert [(t.tick, str(t)) for t in score.time_signatures] == [(0, "4/4"), (192, "3/4")]


# ---- every rule, broken once ----

H = "piece style:none tempo:120 ts:4/4 inst:acoustic-grand-piano"
H2 = "piece style:none tempo:120 ts:4/4 inst:acoustic-grand-piano inst:violin"
HK = "piece style:none tempo:120 ts:4/4 key:C:major inst:acoustic-grand-piano"
HD = "piece style:none tempo:120 ts:4/4 inst:drums"
B1 = f"{H} bar @0 t1 d:1 v:80 C4"  # a first bar that is fine so far

# (rule, text, index of the bad token, what the error must say was expected)
BROKEN_RULES = [
    ("a piece starts with 'piece'", "style:none piece", 0, "expected piece"),
    ("the header is piece, STYLE, TEMPO, TS", "piece tempo:120 style:none", 1, "any style token"),
    ("the header needs a time signature",
     "piece style:none tempo:120 inst:violin", 3, "any ts token"),
    ("the header's KEY comes before the instruments",
     "piece style:none tempo:120 ts:4/4 inst:violin key:C:major", 5, "any inst token, bar"),
    ("no TS in the first bar", f"{H} bar ts:3/4", 6, "@0..@3+23/24"),
    ("TS only when the meter changes", f"{B1} bar ts:4/4", 12, "ts:1/1..ts:3/4, ts:5/4..ts:32/32"),
    ("TS only right after 'bar'", f"{H} bar @0 ts:3/4", 7, "expected t1"),
    ("positions strictly increase (not equal)", f"{H} bar @1 t1 d:1 v:80 C4 @1 D4", 11,
     "@1+1/24..@3+23/24"),
    ("positions strictly increase (not back)", f"{H} bar @1 t1 d:1 v:80 C4 @1/2 D4", 11,
     "@1+1/24..@3+23/24"),
    ("positions lie inside a 4/4 bar", f"{H} bar @4", 6, "@0..@3+23/24"),
    ("positions lie inside a 3/4 bar", f"{B1} bar ts:3/4 @3", 13, "@0..@2+23/24"),
    ("TEMPO only when it changes",
     f"{H} bar @1 tempo:120", 7, "tempo:20..tempo:119, tempo:121..tempo:400"),
    ("no TEMPO at @0 of the first bar", f"{H} bar @0 tempo:90", 7, "expected t1"),
    ("KEY only when it changes",
     f"{HK} bar @1 key:C:major", 8, "key:Cb:major..key:F:major, key:G:major"),
    ("no KEY at @0 of the first bar", f"{H} bar @0 key:G:major", 7, "expected t1"),
    ("an onset holds something", f"{B1} @1 @2", 12, "any pitch token"),
    ("the track is forgotten at a bar line", f"{B1} bar @0 d:1 C4", 13, "t1"),
    ("TRACK only when it changes", f"{B1} @1 t1 D4", 12, "any pitch token"),
    ("DUR only when it changes", f"{B1} @1 d:1 D4", 12, "d:1/24..d:23/24, d:1+1/24..d:4"),
    ("VEL only when it changes", f"{B1} @1 v:80 D4", 12, "v:4..v:76, v:84..v:127"),
    ("the duration is forgotten at a bar line", f"{B1} bar @0 t1 v:80 C4", 14, "any dur token"),
    ("a track's first note needs a duration", f"{H} bar @0 t1 C4", 8, "any dur token"),
    ("a track's first note needs a velocity", f"{H} bar @0 t1 d:1 C4", 9, "any vel token"),
    ("parts come in ascending track order", f"{H2} bar @0 t2 d:1 v:80 C4 t1 E4", 12, "C4..G9"),
    ("groups ascend by duration", f"{B1} d:1/2 E4", 11, "d:1+1/24..d:4"),
    ("groups of one duration ascend by velocity", f"{B1} v:64 E4", 11, "v:84..v:127"),
    ("pitches in a group do not decrease", f"{B1} B3", 11, "C4..G9"),
    ("a note may not end inside an earlier one of its pitch",
     f"{H} bar @0 t1 d:4 v:80 C4 @1 d:1 C4", 13, "C-1..B3, C#4..G9"),
    ("a drum track plays drums", f"{HD} bar @0 t1 d:1 v:80 C4", 10, "any drum token"),
    ("a pitched track plays pitches",
     f"{H} bar @0 t1 d:1 v:80 drum:bass-drum-1", 10, "any pitch token"),
    ("only declared tracks play",
     "piece style:none tempo:120 ts:4/4 inst:violin bar @0 t2", 7, "expected t1"),
    ("every declared track plays", f"{H2} bar @0 t1 d:1 v:80 C4 end", 12, "t2"),
    ("'end' follows a bar with content", f"{H} bar end", 6, "@0..@3+23/24, bar"),
    ("a group holds a note", f"{H} bar @0 t1 d:1 v:80 @1", 10, "any pitch token"),
    ("a long duration needs its short part", f"{H} bar @0 t1 d:4+ v:80", 9, "any dur token"),
    ("at most 15 melodic instruments",
     "piece style:none tempo:120 ts:4/4" + " inst:violin" * 16, 19, "inst:drums, bar"),
    ("at most 16 instruments",
     "piece style:none tempo:120 ts:4/4" + " inst:violin" * 15 + " inst:drums inst:drums", 20,
     "expected bar"),
    ("nothing follows 'end'", f"{B1} end bar", 12, "nothing (the piece has ended)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "index", "expected"),
    [pytest.param(text, index, expected, id=rule) for rule, text, index, expected in BROKEN_RULES],
)
def test_each_broken_rule_is_a_grammar_error_naming_the_token_and_what_was_expected(
    text, index, expected
):
    words = text.split()
    token = words[index]
    with pytest.raises(GrammarError) as raised:
        validate(text)
    error = raised.value
    assert (error.index, error.token) == (index, token)
    message = str(error)
    assert message.startswith(f"token {index} {token!r}: expected ")
    assert expected in message
    # The same error from every entry point, and the text before the bad token is fine.
    with pytest.raises(GrammarError, match=f"^token {index} "):
        decode(text)
    with pytest.raises(GrammarError, match=f"^token {index} "):
        music_lm.text_to_midi(text)
    state = GrammarState()
    for word in words[:index]:
        state.advance(VOCAB.ids[word])
    assert not state.is_allowed(VOCAB.ids[token])
    assert describe_ranges(state.allowed_ranges()) in message


def test_a_repeated_pitch_in_a_group_is_a_doubled_note():
    score = decode(f"{B1} C4 end")
    assert len(score.tracks[0].notes) == 2


def test_a_note_may_end_with_or_after_an_earlier_one_of_its_pitch():
    for text in (
        f"{H} bar @0 t1 d:4 v:80 C4 @1 d:3 C4 end",
        f"{H} bar @0 t1 d:4 v:80 C4 @1 C4 end",
    ):
        validate(text)


@pytest.mark.parametrize(
    "word", ["tempo:121.3", "style:jazz-fusion", "C4'", "@12", "t17", "inst:drum"]
)
def test_an_unknown_word_is_named_with_its_index(word):
    text = f"{H} bar @0 t1 d:1 v:80 C4 end".replace("t1", word, 1)
    index = text.split().index(word)
    with pytest.raises(GrammarError) as raised:
        validate(text)
    assert (raised.value.index, raised.value.token) == (index, word)
    assert str(raised.value) == f"token {index} {word!r}: not a token of the vocabulary"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected piece"),
        ("piece style:none", "any tempo token"),
        (B1, "C4..G9"),
        (f"{H} bar", "@0..@3+23/24, bar"),
    ],
)
def test_text_ending_before_end_is_an_error_after_its_last_token(text, expected):
    count = len(text.split())
    with pytest.raises(GrammarError) as raised:
        validate(text)
    assert (raised.value.index, raised.value.token) == (count, None)
    assert str(raised.value).startswith(f"token {count}: the text ends before 'end'; expected ")
    assert expected in str(raised.value)


def test_whitespace_between_tokens_does_not_matter():
    squeezed = " ".join(MELODY.split())
    spread = "\n\n  " + MELODY.replace(" ", "\t  ").replace("\n", " \r\n ")
    assert encode(decode(squeezed)) == encode(decode(spread)) == MELODY


def test_no_allowed_token_leads_to_a_dead_end_when_every_pitch_still_sounds():
    # Every pitch of the track sounds for 4 quarters from @0. At @1 a note may not
    # end before them, so only durations of 3 quarters or more are offered, and
    # every token the grammar offers leaves a way to go on.
    state = GrammarState()
    for word in [*f"{H} bar @0 t1 d:4 v:80".split(), *map(pitch_to_name, range(128)), "@1"]:
        state.advance(VOCAB.ids[word])
    assert not state.is_allowed(VOCAB.ids["d:1"])
    assert state.is_allowed(VOCAB.ids["d:3"])
    assert state.is_allowed(VOCAB.ids["v:64"])  # keeps d:4, which ends after them
    for token_id in (i for lo, hi in state.allowed_ranges() for i in range(lo, hi)):
        after = state.copy()
        after.advance(token_id)
        assert after.done or after.allowed_ranges(), f"dead end after {VOCAB.tokens[token_id]!r}"


# ---- random walks through the automaton ----

END_ID, BAR_ID, DRUMS_ID = VOCAB.ids["end"], VOCAB.ids["bar"], VOCAB.ids["inst:drums"]
WALK_LENGTH = 400


def _ids_in(ranges: list[tuple[int, int]]) -> list[int]:
    return [i for lo, hi in ranges for i in range(lo, hi)]


def _closing_choice(state: GrammarState, ranges: list[tuple[int, int]]) -> list[int] | None:
    """Tokens that bring the walk towards 'end' (None: any token will do)."""
    allowed = set(_ids_in(ranges))
    if END_ID in allowed:
        return [END_ID]
    track_start = VOCAB.ranges["track"].start
    unused = [track_start + t for t in range(state.n_tracks) if not state.used_tracks >> t & 1]
    for candidates in (
        [t for t in unused if t in allowed],
        [BAR_ID] if BAR_ID in allowed and state.phase.name != "BAR_START" else [],
        [i for i in allowed if VOCAB.family_of[i] in ("pitch", "drum")],
        [i for i in allowed if VOCAB.family_of[i] in ("vel", "dur", "pos")],
    ):
        if candidates:
            return candidates
    return None


@st.composite
def grammar_walks(draw) -> list[str]:
    """A random piece: at each step a random allowed token; 'end' is held back until
    the walk reaches a length drawn at the start, then the walk is steered to it."""
    target = draw(st.integers(0, WALK_LENGTH), label="length")
    state = GrammarState()
    words: list[str] = []
    while not state.done:
        ranges = state.allowed_ranges()
        assert ranges, f"dead end after {' '.join(words)!r}"
        choice = _closing_choice(state, ranges) if len(words) >= target else None
        if choice is None:
            if len(words) < target and len(ranges) > 1:
                ranges = [r for r in ranges if r != (END_ID, END_ID + 1)]
            choice = _ids_in([ranges[draw(st.integers(0, len(ranges) - 1))]])
            if DRUMS_ID in choice and draw(st.integers(0, 3), label="drums") == 0:
                choice = [DRUMS_ID]  # one instrument in 129 would make drum tracks rare
        token_id = choice[draw(st.integers(0, len(choice) - 1))]
        state.advance(token_id)
        words.append(VOCAB.tokens[token_id])
        assert len(words) < 4 * WALK_LENGTH, "the walk does not terminate"
    return words


WALK_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@WALK_SETTINGS
@given(grammar_walks())
def test_random_grammar_walks_always_decode_and_encode_back(words):
    text = " ".join(words)
    assert validate(text) == [VOCAB.ids[w] for w in words]
    score = decode(text)
    assert encode(score).split() == words
    back = read_midi(write_midi(score))
    grid, changes = to_grid(back.score)
    assert changes.notes == changes.notes_exact == score.note_count
    assert encode(grid).split() == words


@WALK_SETTINGS
@given(grammar_walks())
def test_random_grammar_walks_never_reach_a_dead_end(words):
    state = GrammarState()
    for word in words:
        assert state.allowed_ranges()
        assert state.is_allowed(VOCAB.ids[word])
        state.advance(VOCAB.ids[word])
    assert state.done
    assert state.allowed_ranges() == []


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_is_allowed_agrees_with_allowed_ranges_on_every_token(seed):
    # advance() and is_allowed() check note tokens without building ranges; the two
    # readings of the rule must never disagree.
    rng = random.Random(seed)
    state = GrammarState()
    for _ in range(120):
        ranges = state.allowed_ranges()
        if not ranges:
            break
        allowed = {i for lo, hi in ranges for i in range(lo, hi)}
        assert {i for i in range(len(VOCAB)) if state.is_allowed(i)} == allowed
        # Favour notes and long durations so that overlaps and held notes occur.
        notes = [i for i in allowed if VOCAB.family_of[i] in ("pitch", "drum", "dur_long")]
        state.advance(rng.choice(notes) if notes and rng.random() < 0.6 else rng.choice([*allowed]))
