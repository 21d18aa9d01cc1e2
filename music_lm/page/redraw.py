"""Redraw part of a take: the page's side of `music_lm.infill`. The choices the Redraw
panel offers for a take (its bars, its tracks, instruments to add), the words `infill`
takes for them, and the work of a redraw on the job's worker thread (`redraw_takes`), which
makes takes as `generate_takes` does. No Streamlit here.
"""

from __future__ import annotations

from collections.abc import Sequence

from music_lm.midi.gm import GM_PROGRAMS
from music_lm.page.limits import LIMITS, PageLimits
from music_lm.page.takes import Take, render_audio, takes_of
from music_lm.tokens.rules import BAR, END
from music_lm.tokens.vocab import VOCAB

ADD_PREFIX = "add "  # an instrument to add, as the track choice shows it


def take_bar_count(take: Take) -> int:
    """The bars of the take (a pickup is bar 1), as `--bars` counts them."""
    return sum(1 for t in take.ids if t == BAR)


def take_programs(take: Take) -> list[int]:
    """The take's tracks in header order: their programs (-1: drums)."""
    end = take.ids.index(BAR) if BAR in take.ids else len(take.ids)
    return [VOCAB.values[t] for t in take.ids[:end] if VOCAB.family_of[t] == "inst"]


def _instrument(program: int) -> str:
    return "drums" if program < 0 else GM_PROGRAMS[program]


def track_choices(take: Take) -> list[str]:
    """The take's tracks ('1 violin', numbered as in the token text), then the instruments
    it does not play, to add as new tracks ('add flute')."""
    programs = take_programs(take)
    own = [f"{i + 1} {_instrument(p)}" for i, p in enumerate(programs)]
    playing = {_instrument(p) for p in programs}
    others = [f"{ADD_PREFIX}{name}" for name in ("drums", *GM_PROGRAMS) if name not in playing]
    return own + others


def tracks_words(chosen: Sequence[str]) -> list[str]:
    """The choices of `track_choices` as `infill`'s tracks: a number for a track of the
    take ('1 violin' -> '1'), an instrument name for one to add ('add flute' -> 'flute')."""
    return [c[len(ADD_PREFIX) :] if c.startswith(ADD_PREFIX) else c.split()[0] for c in chosen]


def bars_words(first: int, last: int) -> str:
    """The bar range slider's (first, last) as `--bars` words: '3-4'."""
    return f"{first}-{last}"


def take_model(take: Take, default: str) -> str:
    """The model that made the take (the first of a mix: `infill` takes one), by the name
    it was asked by; `default` for a take whose record names none."""
    models = take.record.get("models") or []
    return str(models[0]["model"]) if models else default


def region_beats(take: Take) -> tuple[float, float] | None:
    """(start, end) in quarter notes of the bars a redraw drew anew; None for another take."""
    region = take.record.get("region")
    if not region:
        return None
    return float(region["start_beat"]), float(region["end_beat"])


def redraw_summary(take: Take) -> str | None:
    """'tracks 2 (electric-bass-finger) redrawn over bars 3-4', as the command line says
    it; None for a take that is no redraw."""
    region = take.record.get("region")
    if not region:
        return None
    first, last = region["bars"]
    where = f"bar {first}" if first == last else f"bars {first}-{last}"
    if take.record.get("mode") == "bars":
        sides = "both sides" if take.record.get("both_sides") else "what came before"
        return f"every track (from {sides}) redrawn over {where}"
    tracks = ", ".join(
        f"{t['track']} ({t['instrument']}{', new' if t['new'] else ''})"
        for t in take.record.get("tracks", [])
    )
    return f"tracks {tracks} redrawn over {where}"


def redraw_takes(
    job,
    take: Take,
    tracks: Sequence[str],
    bars: str,
    first_number: int,
    run: int,
    limits: PageLimits | None = None,
    **options,
) -> list[Take]:
    """The work of a redraw (on a `GenerationJob`'s thread): `infill` of `take` with the
    job's progress, Stop and time limit, then the takes (each a child of `take`) and their
    audio. `options` go to `infill` as they are."""
    # on use: infill imports torch (seconds); this module imports without it
    from music_lm.generation.infill import infill, infill_files

    ids = take.ids[:-1] if take.ids and take.ids[-1] == END else take.ids
    generation = infill(
        list(ids),
        list(tracks),
        bars=bars,
        progress=job.report,
        stop=lambda: job.stop_requested,
        time_limit_s=(limits or LIMITS).generation_seconds,
        **options,
    )
    takes = takes_of(generation, first_number, run, take.number, infill_files,
                     {"redrawn_from": take.number})  # fmt: skip
    job.stage = "rendering the audio"
    render_audio(takes)
    return takes


__all__ = [
    "bars_words",
    "redraw_summary",
    "redraw_takes",
    "region_beats",
    "take_bar_count",
    "take_model",
    "track_choices",
    "tracks_words",
]
