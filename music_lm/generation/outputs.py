"""What a generation gives back: its variants, the post-check that has a variant drawn
again, the settings and model records, and the three files written for each variant."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from music_lm.generation.constraints import Constraints
from music_lm.generation.settings import Sampling
from music_lm.midi.score import Score
from music_lm.midi.write import write_midi
from music_lm.tokens.codec import decode, encode
from music_lm.tokens.grammar import GrammarState
from music_lm.tokens.rules import BAR, END
from music_lm.tokens.vocab import GRID_PER_QUARTER, VOCAB


@dataclass
class Variant:
    """One continuation: the whole piece (seed + new bars) and how it was made."""

    index: int
    ids: list[int]
    seed_length: int  # tokens of the seed (the header and its bars)
    continuation_tick: int  # grid tick where the new bars start
    continuation_bar: int  # 1-based bar number of the first new bar
    retries: int = 0
    seconds: float = 0.0
    post_check: str = "ok"  # or why the last retry still failed (then kept)
    attention: np.ndarray | None = None  # [layers, heads, new tokens, tokens] when captured
    hold_past_end: bool = False  # True: seed notes may ring past the end, as they were

    @property
    def text(self) -> str:
        """The piece's token text; a seed note that would ring past the end of the last new
        bar ends there (new notes already do), unless notes may ring past the end."""
        score = decode(" ".join(VOCAB.tokens[t] for t in self.ids))
        if not self.hold_past_end:
            end_notes_by(score, piece_end_tick(self.ids))
        return encode(score)

    @property
    def new_tokens(self) -> int:
        return len(self.ids) - self.seed_length


@dataclass
class Generation:
    variants: list[Variant]
    settings: dict
    seconds: float
    tokens_per_s: float
    models: list[dict] = field(default_factory=list)


def model_fingerprint(path: str | Path) -> str:
    """sha256 of a model folder's weights (the first 16 hex digits)."""
    files = sorted(Path(path).glob("*.safetensors"))
    # Kept per file size and time: a `continue` over a folder records it for every file,
    # and a run that saves again gets a new one.
    return _fingerprint(tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@functools.lru_cache(maxsize=16)
def _fingerprint(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _size, _mtime in files:
        with open(name, "rb") as handle:
            for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def piece_end_tick(ids: Sequence[int]) -> int:
    """The grid tick where the last bar of a whole piece's ids ends."""
    state = GrammarState()
    for token in ids:
        state.advance(token)
    return state.bar_start + state.bar_length


def end_notes_by(score: Score, end_tick: int) -> None:
    """End every note of `score` that rings past `end_tick` there (in place)."""
    for track in score.tracks:
        if any(n.end_tick > end_tick for n in track.notes):
            track.notes = [
                n if n.end_tick <= end_tick else n._replace(duration_tick=end_tick - n.onset_tick)
                for n in track.notes
            ]


# ---- post-checks ----


def _bars_of(ids: Sequence[int]) -> list[tuple[int, ...]]:
    bars: list[list[int]] = []
    for token in ids:
        if token == BAR:
            bars.append([])
        elif bars and token != END:
            bars[-1].append(token)
    return [tuple(b) for b in bars]


def post_check(ids: Sequence[int], seed_length: int) -> str:
    """'ok', or why a continuation is re-drawn: it is silent (no new note), or it copies
    the seed bar for bar (every new bar is one of the seed's bars)."""
    new = ids[seed_length:]
    if not any(VOCAB.is_note[t] for t in new):
        return "silent"
    seed_bars = set(_bars_of(ids[:seed_length]))
    new_bars = _bars_of(new)
    if seed_bars and new_bars and all(b in seed_bars for b in new_bars):
        return "copies the seed"
    return "ok"


# ---- records ----


def settings_record(
    *,
    seed_name: str | None,
    seed_bars: int | None,
    seed_ids: Sequence[int],
    constraints: Constraints,
    sampling: Sampling,
    mix: str | None,
    weights: list[float],
    random_seed: int,
    variants: int,
    budget: int,
    retries: int,
    device: object,
    adaptation: list[dict] | None = None,
) -> dict:
    """The settings of a generation as its JSON records keep them. `adaptation`: per model,
    what `--adapt` did (steps, method, seconds, ...); None without it."""
    return {
        "seed": seed_name,
        "seed_bars": seed_bars,
        "seed_tokens": len(seed_ids),
        "style": VOCAB.tokens[seed_ids[1]][6:],
        "constraints": constraints.to_json(),
        "sampling": asdict(sampling),
        "mix": mix,
        "mix_weights": weights if mix == "weights" else None,
        "random_seed": random_seed,
        "variants": variants,
        "max_new_tokens": budget,
        "retries": retries,
        "device": str(device),
        "adaptation": adaptation,
    }


def model_records(names: Sequence[str | Path], loaded: Sequence) -> list[dict]:
    """Per model: the name it was asked by, its folder, its weights' hash and its step."""
    return [
        {"model": str(name), "path": model.path,
         "sha256": model_fingerprint(model.path),
         "step": model.meta.get("step")}
        for name, model in zip(names, loaded, strict=True)
    ]  # fmt: skip


# ---- writing ----


def take_files(
    generation: Generation,
    variant: Variant,
    stem: str,
    command: str,
    markers: list[tuple[int, str]],
    fields: dict,
) -> dict[str, bytes]:
    """The three files of a take of `music-lm COMMAND`: MIDI (with `markers`, and the model
    and random seed as a text event), token text and a JSON record of the settings, the
    models and `fields`."""
    text = variant.text
    score = decode(text)
    record = {
        "variant": variant.index,
        "file": f"{stem}-{variant.index}",
        **generation.settings,
        "models": generation.models,
        **fields,
        "seconds": round(variant.seconds, 3),
        "notes": score.note_count,
    }
    hashes = "+".join(m["sha256"] for m in generation.models)
    summary = (f"music_lm {command}: model {hashes}, random seed "
               f"{generation.settings['random_seed']}, variant {variant.index}")  # fmt: skip
    return {
        ".mid": write_midi(score, markers=markers, texts=[summary]),
        ".txt": text.encode("utf-8"),
        ".json": (json.dumps(record, indent=2) + "\n").encode("utf-8"),
    }


def variant_files(generation: Generation, variant: Variant, stem: str) -> dict[str, bytes]:
    """The three files of a variant: MIDI (with a marker where the continuation starts and
    the settings as a text event), token text and a JSON record."""
    fields = {
        "continuation_bar": variant.continuation_bar,
        "continuation_beat": variant.continuation_tick / GRID_PER_QUARTER,
        "new_tokens": variant.new_tokens,
        "retries": variant.retries,
        "post_check": variant.post_check,
    }
    markers = [(variant.continuation_tick, "music_lm continuation")]
    return take_files(generation, variant, stem, "generate", markers, fields)
