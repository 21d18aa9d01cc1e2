"""Track infilling: draw some tracks anew over a region of bars (or the whole piece) while
every other track stays note for note, and write each take as generate does.

    song -> ids -> prefix | region | suffix -> InfillState (generation/infill_state.py)
        -> the sampler of generation/sampling.py -> the piece with the region redrawn

The named tracks hear the rest of the piece up to the present: the kept tracks' words are
forced through the same masks as the sampled ones (an allowed set of one token), so the
model reads them as it goes. It does not look ahead past the present word.

Without tracks (bars mode), every track is drawn anew over the region, and the bars after
it are then put back word for word. A model trained on the fill-in-the-middle form
(`--fim-share`, music_lm.tokens.fim) reads the bars after the region first: its prompt is
the prefix, `hole`, the suffix and `fill`, and it writes the middle knowing both sides
(`knows_fim`). A model without it draws the region from what came before only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from music_lm.corpus.dataset import FIM_MAX_BARS
from music_lm.corpus.windows import window_of
from music_lm.generation.chord_state import chord_tracks
from music_lm.generation.constraints import ConstraintError, Constraints
from music_lm.generation.infill_state import (
    InfillState,
    KeptBar,
    infill_budget,
    owners,
    region_template,
)
from music_lm.generation.models import load_runners
from music_lm.generation.options import instrument_program, parse_instrument
from music_lm.generation.outputs import (
    Generation,
    Variant,
    model_records,
    settings_record,
    take_files,
)
from music_lm.generation.runner import (
    _checked_request,
    _device_of,
    _time_limit,
    _with_decode_threads,
)
from music_lm.generation.sampling import _sample_rows, _Watch
from music_lm.generation.seeds import SUSTAIN_SEEDS, seed_from_file, seed_from_text
from music_lm.generation.settings import GenerationError, Progress, Sampling
from music_lm.midi.gm import GM_PROGRAMS, MAX_MELODIC_TRACKS, MAX_TRACKS
from music_lm.tokens.fim import FILL, HOLE, to_fim
from music_lm.tokens.grammar import GrammarError, GrammarState
from music_lm.tokens.rules import BAR, END
from music_lm.tokens.vocab import GRID_PER_QUARTER, VOCAB

_FAM = VOCAB.family_of
_VAL = VOCAB.values


class InfillError(GenerationError):
    """An infill request that does not fit the piece; names the file and the problem."""


@dataclass(frozen=True)
class InfillPlan:
    """A piece cut for infilling: its words with any new track declared, the prefix
    (seed), the region's template and words, the suffix, and which tracks are drawn anew."""

    name: str
    ids: list[int]  # the whole piece, `end` included
    prefix: list[int]
    region: list[int]
    suffix: list[int]
    template: list[KeptBar]
    regenerated: frozenset[int]  # 0-based tracks
    added: tuple[int, ...]  # 0-based tracks declared anew
    must_play: frozenset[int]
    first_bar: int  # 1-based, inclusive
    last_bar: int
    start_tick: int
    end_tick: int

    def track_records(self) -> list[dict]:
        programs = header_programs(self.ids)
        return [{"track": t + 1, "instrument": _program_name(programs[t]), "new": t in self.added}
                for t in sorted(self.regenerated)]  # fmt: skip


def header_programs(ids: Sequence[int]) -> list[int]:
    end = ids.index(BAR) if BAR in ids else len(ids)
    return [_VAL[t] for t in ids[:end] if _FAM[t] == "inst"]


def _program_name(program: int) -> str:
    return "drums" if program < 0 else GM_PROGRAMS[program]


def parse_bar_range(text: str | None, bar_count: int, name: str) -> tuple[int, int]:
    """--bars 'A-B' (or 'A') -> (A, B), 1-based and inclusive; None: the whole piece."""
    if text is None or not text.strip():
        return 1, bar_count
    parts = text.strip().split("-")
    try:
        first, last = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, -1)
    except ValueError:
        first, last = 0, -1
    if len(parts) > 2 or (first < 1 and last < 0):
        raise InfillError(f"{name}: --bars takes A-B such as 3-6, got {text!r}")
    if first > last:
        raise InfillError(f"{name}: --bars {text}: the first bar comes after the last")
    if first < 1 or last > bar_count:
        raise InfillError(f"{name}: --bars {text} is outside the piece's bars 1-{bar_count}")
    return first, last


def resolve_tracks(
    words: str | Sequence[str], programs: Sequence[int], name: str
) -> tuple[list[int], list[int]]:
    """(0-based tracks to redraw, programs of tracks to add) of --tracks: a number as in the
    token text (1 is t1), or an instrument name: the piece's tracks of that instrument, or
    a new track when it has none."""
    names = words.split(",") if isinstance(words, str) else list(words)
    names = [w.strip() for w in names if w.strip()]
    if not names:
        raise InfillError(f"{name}: --tracks names no track")
    chosen: list[int] = []
    added: list[int] = []
    for word in names:
        if word.isdigit():
            number = int(word)
            if not 1 <= number <= len(programs):
                raise InfillError(f"{name}: there is no track {number} (the piece has tracks "
                                  f"1-{len(programs)})")  # fmt: skip
            chosen.append(number - 1)
            continue
        try:
            wanted = parse_instrument(word)
            program = instrument_program(word)
        except ConstraintError as err:
            raise InfillError(f"{name}: --tracks: {err}") from None
        found = [i for i, p in enumerate(programs) if p in wanted]
        if found:
            chosen += found
        elif program not in added:
            added.append(program)
    return sorted(set(chosen)), added


def plan_infill(
    ids: Sequence[int], tracks: str | Sequence[str] | None, bars: str | None, name: str
) -> InfillPlan:
    """Cut the piece `ids` (a whole piece, `end` included) for infilling `tracks` over
    `bars`; tracks None: every track (bars mode, which needs `bars`). InfillError names the
    file and what does not fit."""
    ids = list(ids)
    if not ids or ids[-1] != END:
        ids = [*ids, END]
    programs = header_programs(ids)
    if tracks is None:
        if bars is None:
            raise InfillError(f"{name}: give --bars, --tracks or both")
        chosen, added = list(range(len(programs))), []
    else:
        chosen, added = resolve_tracks(tracks, programs, name)
    all_programs = programs + added
    if len(all_programs) > MAX_TRACKS or sum(p >= 0 for p in all_programs) > MAX_MELODIC_TRACKS:
        raise InfillError(
            f"{name}: a piece holds at most {MAX_TRACKS} tracks, {MAX_MELODIC_TRACKS} of them "
            "melodic: no room to add a track"
        )
    bar_starts = [i for i, t in enumerate(ids) if t == BAR]
    if not bar_starts:
        raise InfillError(f"{name}: the piece has no bars to fill")
    first, last = parse_bar_range(bars, len(bar_starts), name)
    start = bar_starts[first - 1]
    stop = bar_starts[last] if last < len(bar_starts) else len(ids) - 1
    # read before a new track is declared: the piece is whole only without it
    owner, ticks = owners(ids), _ticks(ids, start, stop)
    outside = set(owner[:start]) | set(owner[stop:])
    header_end, shift = bar_starts[0], len(added)
    ids = ids[:header_end] + [VOCAB.id_of("inst", p) for p in added] + ids[header_end:]
    owner = owner[:header_end] + [None] * shift + owner[header_end:]
    start, stop = start + shift, stop + shift
    regenerated = frozenset(chosen) | frozenset(range(len(programs), len(all_programs)))
    return InfillPlan(
        name=name, ids=ids, prefix=ids[:start], region=ids[start:stop], suffix=ids[stop:],
        template=region_template(ids[start:stop], owner[start:stop], regenerated),
        regenerated=regenerated, added=tuple(range(len(programs), len(all_programs))),
        must_play=frozenset(t for t in regenerated if t not in outside),
        first_bar=first, last_bar=last, start_tick=ticks[0], end_tick=ticks[1],
    )  # fmt: skip


def _ticks(ids: list[int], start: int, stop: int) -> tuple[int, int]:
    """Grid ticks where the region (words start..stop) begins and ends."""
    state = GrammarState()
    for token in ids[: start + 1]:
        state.advance(token)
    begin = state.bar_start
    for token in ids[start + 1 : stop + 1]:
        state.advance(token)
    end = state.bar_start if ids[stop] == BAR else state.bar_start + state.bar_length
    return begin, end


def infill_state(plan: InfillPlan, constraints: Constraints) -> InfillState:
    """The decoding state of `plan`; a chord lock holds the redrawn tracks it names (all of
    the melodic ones by default; the kept ones are kept as they are). InfillError names the
    file when the constraints cannot hold."""
    try:
        if constraints.chords is not None:
            named = chord_tracks(constraints, header_programs(plan.ids))
            if constraints.chord_tracks is not None and not named & plan.regenerated:
                raise ConstraintError("--chord-tracks names none of the tracks redrawn")
            held = tuple((str(t + 1), None) for t in sorted(named & plan.regenerated))
            # drums alone: nothing to lock
            constraints = replace(constraints, chord_tracks=held or None,
                                  chords=constraints.chords if held else None)  # fmt: skip
        return InfillState(plan.prefix, plan.template, plan.suffix, plan.regenerated,
                           plan.must_play, plan.end_tick, constraints)  # fmt: skip
    except (ConstraintError, GrammarError) as err:
        raise InfillError(f"{plan.name}: {err}") from None


def read_song(
    song: str | Path | Sequence[int], sustain: bool = SUSTAIN_SEEDS
) -> tuple[list[int], str]:
    """(ids with `end`, name) of a MIDI or token-text file, or of ids: a whole piece (text
    may leave out its final `end`)."""
    if isinstance(song, (str, Path)):
        ids, _stem = seed_from_file(song, sustain)
        name = str(song)
    else:
        ids, name = seed_from_text(" ".join(VOCAB.tokens[t] for t in song)), "<song>"
    ids = [*ids, END]
    state = GrammarState()
    try:
        for token in ids:
            state.advance(token)
    except GrammarError as err:
        raise InfillError(f"{name}: not a whole piece: at its end, {err}") from None
    return ids, name


@_with_decode_threads
def infill(
    song: str | Path | Sequence[int],
    tracks: str | Sequence[str] | None = None,
    *,
    bars: str | None = None,
    constraints: Constraints | None = None,
    sampling: Sampling | None = None,
    models: Sequence[str | Path] | str | Path = ("default",),
    variants: int = 1,
    random_seed: int | None = None,
    device: str | torch.device | None = None,
    loaded: Sequence | None = None,
    progress: Callable[[Progress], None] | None = None,
    stop: Callable[[], bool] | None = None,
    time_limit_s: float | None = None,
    sustain: bool = SUSTAIN_SEEDS,
) -> Generation:
    """Redraw `tracks` of `song` over `bars` ('A-B', 1-based, inclusive; None: the whole
    piece), `variants` times; every other track, and everything outside the region, stays
    word for word. tracks: numbers as in the token text (1 is t1) or instrument names (a
    name the piece does not play adds a track); None: every track over `bars` (bars mode:
    a model trained on the fill-in-the-middle form reads the bars after the region too, for
    a region of up to FIM_MAX_BARS bars with bars after it; see the module's doc).
    constraints: generate's (its `bars`, its instruments and the tempo/meter/key locks do
    not apply: the region keeps the piece's bars, tempo, meter and key). Returns a
    Generation whose settings record the region, the tracks and the mode."""
    started = time.perf_counter()
    ids, name = read_song(song, sustain)
    plan = plan_infill(ids, tracks, bars, name)
    constraints = replace(constraints or Constraints(), bars=len(plan.template))
    sampling = sampling or Sampling()
    names, weights = _checked_request(models, None, None, variants, 0, constraints)
    if len(names) > 1:
        raise InfillError("infill takes one model")
    if random_seed is None:
        random_seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    state = infill_state(plan, constraints)
    device = _device_of(device, loaded, len(names))
    runners = load_runners(names, loaded, device, False)
    budget = infill_budget(plan.template, len(plan.region))
    # Bars mode with a model that reads the form: the prompt holds the suffix too. The
    # state reads the plain piece all the same (`state` was made from the prefix).
    # A region longer than the form's training middles (FIM_MAX_BARS), or with no bars
    # after it, is drawn from the prefix alone.
    both_sides = (tracks is None and knows_fim(runners[0].loaded) and plan.suffix[0] == BAR
                  and len(plan.template) <= FIM_MAX_BARS)  # fmt: skip
    prompt = fim_prompt(plan, runners[0].context) if both_sides else plan.prefix
    both_sides = both_sides and HOLE in prompt
    state.fim_prompt = both_sides
    generator = torch.Generator().manual_seed(random_seed)
    sampling_started = time.perf_counter()
    watch = _Watch(progress, stop, _time_limit(time_limit_s), len(plan.template), budget)
    rows = _sample_rows(runners, state, prompt, variants, budget, state.constraints,
                        sampling, weights, None, generator, 1.0, watch)  # fmt: skip
    results = [
        Variant(index=k + 1, ids=state.finished(plan.prefix + row_ids[len(prompt) :]),
                seed_length=len(plan.prefix),
                continuation_tick=plan.start_tick, continuation_bar=plan.first_bar,
                seconds=seconds, hold_past_end=True)
        for k, (row_ids, seconds, _attn) in enumerate(rows)
    ]  # fmt: skip
    settings = settings_record(seed_name=name, seed_bars=None, seed_ids=plan.ids,
                               constraints=state.constraints, sampling=sampling, mix=None,
                               weights=weights, random_seed=random_seed, variants=variants,
                               budget=budget, retries=0, device=device)  # fmt: skip
    settings["region"] = region_record(plan)
    settings["tracks"] = plan.track_records()
    settings["mode"] = "bars" if tracks is None else "tracks"
    # Whether the model read the music after the region (bars mode: a model of the form).
    settings["both_sides"] = both_sides
    sampling_seconds = time.perf_counter() - sampling_started
    return Generation(
        variants=results,
        settings=settings,
        seconds=time.perf_counter() - started,
        tokens_per_s=watch.new_tokens / sampling_seconds if sampling_seconds > 0 else 0.0,
        models=model_records(names, [runner.loaded for runner in runners]),
    )


def knows_fim(loaded) -> bool:
    """Whether a loaded model was trained on the fill-in-the-middle form: its vocabulary
    holds `hole` and `fill`, and its run drew some windows in the form (or its base did)."""
    from music_lm.model.folder import trained_on_fim

    vocabulary = getattr(loaded, "music_vocab_size", len(VOCAB))
    return vocabulary > VOCAB.ids["fill"] and trained_on_fim(loaded.meta)


def fim_prompt(plan: InfillPlan, context: int) -> list[int]:
    """The prompt of a bars-mode infill in the fill-in-the-middle form: the prefix, `hole`,
    the suffix and `fill`. Where it is long, it keeps room for about the region's words
    again (at most half the window): the prefix loses its earliest bars, the suffix its
    latest (`window_of`, as the sampler cuts a long sequence)."""
    start, stop = len(plan.prefix), len(plan.prefix) + len(plan.region)
    fim = to_fim(plan.ids, start, stop)
    prompt = fim[: fim.index(FILL) + 1]
    limit = context - max(1, context // 4)  # as the sampler: room to generate
    middle = min(len(plan.region) + len(plan.region) // 4 + 16, limit // 2)
    window, _first = window_of(prompt + [BAR] * middle, limit)
    return window[: len(window) - middle]


def region_record(plan: InfillPlan) -> dict:
    return {"bars": [plan.first_bar, plan.last_bar],
            "start_beat": plan.start_tick / GRID_PER_QUARTER,
            "end_beat": plan.end_tick / GRID_PER_QUARTER}  # fmt: skip


def infill_files(generation: Generation, variant: Variant, stem: str) -> dict[str, bytes]:
    """The three files of a take: MIDI (markers where the region starts and ends, the
    settings as a text event), token text and a JSON record of the region, the tracks,
    the model and the random seed."""
    region = generation.settings["region"]
    first, last = region["bars"]
    start, end = (round(region[k] * GRID_PER_QUARTER) for k in ("start_beat", "end_beat"))
    # render/pianoroll.py reads them back (infill_region) to shade the region
    markers = [(start, f"music_lm infill: bar {first}"), (end, f"music_lm infill end: bar {last}")]
    return take_files(generation, variant, stem, "infill", markers, {})
