"""The page's takes. A *take* is one variant of one generation (or an edit of a take): the
whole piece, its files and its audio. Made here from a finished generation or from edited
token text; `check_text` says whether token text is one valid piece.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from music_lm.midi.score import Score
from music_lm.tokens.codec import decode, encode
from music_lm.tokens.grammar import GrammarError
from music_lm.tokens.validate import validate, words_to_ids


@dataclass(eq=False)  # a take is itself (its arrays do not compare)
class Take:
    """One piece the session made: a variant of a run, or an edit of a take."""

    number: int  # 1, 2, ... in the order the session made them
    run: int  # the run that made it (edits keep their take's run)
    variant: int
    ids: tuple[int, ...]  # the whole piece, `end` included
    seed_length: int
    continuation_tick: int  # grid tick where the new bars start
    continuation_bar: int
    record: dict  # the settings JSON (what `variant_files` writes)
    files: dict[str, bytes]  # ".mid", ".txt", ".json"
    parent: int | None = None  # the take it continued or edited
    edited: bool = False
    attention: np.ndarray | None = None  # [layers, heads, new tokens, tokens] when kept
    wav: bytes | None = None
    audio_error: str | None = None

    @property
    def random_seed(self) -> int | None:
        return self.record.get("random_seed")

    @property
    def label(self) -> str:
        how = "edit" if self.edited else f"run {self.run}, variant {self.variant}"
        seed = "" if self.random_seed is None else f", seed {self.random_seed}"
        return f"Take {self.number} ({how}{seed})"

    @property
    def stem(self) -> str:
        return f"take-{self.number}"

    @property
    def text(self) -> str:
        return self.files[".txt"].decode("utf-8")

    @cached_property
    def score(self) -> Score:
        # on use: only a take the page draws is decoded
        from music_lm.tokens.codec import decode

        return decode(self.text)

    @cached_property
    def daw_midi(self) -> bytes:
        """The DAW-ready export (made once: the page shows it on every rerun)."""
        # on use: only a take the page offers is exported
        from music_lm.render.export import export_midi

        return export_midi(self.files[".mid"], name=f"{self.stem}.mid")[0]

    def musicxml(self) -> bytes:
        """MusicXML of the DAW export; music21 takes a while, so only when downloaded."""
        # on use: only a MusicXML download needs it
        from music_lm.render.export import musicxml

        return musicxml(self.daw_midi, f"{self.stem}.mid")


def render_wav(midi: bytes, name: str) -> bytes:
    """WAV bytes of a MIDI file (FluidSynth, the GM soundfont); AudioError says why not."""
    # on use: only audio the page plays is rendered
    from music_lm.render.audio import encode_audio, render_midi

    return encode_audio(render_midi(midi, name=name), "wav")


def render_audio(takes) -> None:
    """Each take's WAV (`take.wav`); where the server cannot render (no soundfont), the
    reason in `take.audio_error` instead: the page still shows the rest."""
    from music_lm.render.audio import AudioError  # on use, as render_wav

    for take in takes:
        try:
            take.wav = render_wav(take.files[".mid"], f"{take.stem}.mid")
        except AudioError as err:
            take.audio_error = str(err)


def takes_of(
    generation,
    first_number: int,
    run: int,
    parent: int | None,
    files_of: Callable | None = None,
    fields: dict | None = None,
) -> list[Take]:
    """The takes of a finished generation, numbered from `first_number`: their files as
    `files_of` writes them (`variant_files`, or `infill_files` for a redraw), with `fields`
    added to each record."""
    if files_of is None:  # on use: only a finished generation's takes are written out
        from music_lm.generation.outputs import variant_files as files_of

    takes = []
    for offset, variant in enumerate(generation.variants):
        number = first_number + offset
        files = files_of(generation, variant, "take")
        # The page names its files after the take ("take-7.mid"), not the variant.
        record = {**json.loads(files[".json"]), "file": f"take-{number}", "take": number,
                  **(fields or {}), "tokens_per_s": round(generation.tokens_per_s, 1)}  # fmt: skip
        files[".json"] = (json.dumps(record, indent=2) + "\n").encode("utf-8")
        takes.append(
            Take(
                number=number,
                run=run,
                variant=variant.index,
                ids=tuple(variant.ids),
                seed_length=variant.seed_length,
                continuation_tick=variant.continuation_tick,
                continuation_bar=variant.continuation_bar,
                record=record,
                files=files,
                parent=parent,
                attention=variant.attention,
            )
        )
    return takes


def edited_take(take: Take, text: str, number: int) -> Take:
    """A new take of edited token text; GrammarError names the first bad token. The
    continuation stays marked when the edit left the seed's tokens as they were."""
    # on use: only a saved edit decodes text and writes MIDI
    from music_lm.midi.write import write_midi

    score = decode(text)  # GrammarError names the first bad token
    ids = words_to_ids(text.split())
    canonical = encode(score)  # the text as the codec writes it
    # An edit whose seed was changed has no continuation left to mark (seed_length 0).
    kept = take.seed_length > 0 and tuple(ids[: take.seed_length]) == take.ids[: take.seed_length]
    # What described the sampling of a variant no longer describes an edit of it.
    # (nor does a redraw's region: an edit may change any bar)
    stale = ("new_tokens", "retries", "post_check", "seconds", "continuation_bar",
             "continuation_beat", "region", "tracks", "mode", "both_sides",
             "redrawn_from")  # fmt: skip
    record = {k: v for k, v in take.record.items() if k not in stale}
    record.update({"file": f"take-{number}", "take": number, "edited_from": take.number,
                   "notes": score.note_count})  # fmt: skip
    if kept:
        record["continuation_bar"] = take.continuation_bar
        record["continuation_beat"] = take.record.get("continuation_beat")
    markers = [(take.continuation_tick, "music_lm continuation")] if kept else []
    files = {
        ".mid": write_midi(score, markers=markers),
        ".txt": canonical.encode("utf-8"),
        ".json": (json.dumps(record, indent=2) + "\n").encode("utf-8"),
    }
    return Take(
        number=number,
        run=take.run,
        variant=take.variant,
        ids=tuple(ids),
        seed_length=take.seed_length if kept else 0,
        continuation_tick=take.continuation_tick if kept else 0,
        continuation_bar=take.continuation_bar if kept else 1,
        record=record,
        files=files,
        parent=take.number,
        edited=True,
    )


def check_text(text: str) -> str | None:
    """None when `text` is one valid piece, else the grammar's message (it names the token,
    its index and what was expected there)."""
    try:
        validate(text)
    except GrammarError as err:
        return str(err)
    return None


__all__ = [
    "Take",
    "check_text",
    "edited_take",
    "render_wav",
    "takes_of",
]
