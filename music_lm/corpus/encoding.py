"""Encoding one piece of a corpus build with the codec: token ids, note count and track
ranges, or the reason it failed. These functions run in the build's worker processes
(`music_lm.corpus.build.encode_all` runs them on a pool; the `datasets` engine in
`Dataset.map`), so they are top-level and take plain, picklable arguments.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from music_lm.corpus.sources import Item, content_key, item_midi

# Bump when the codec's output for the same file changes: old cache entries are then unused.
ENCODER_VERSION = "codec-1"


@dataclass
class Encoding:
    """What the codec made of one file: token ids, or the reason it failed."""

    ids: bytes = b""  # uint16, little-endian
    notes: int = 0
    # (program, is_drum, lowest pitch, highest pitch) per track
    tracks: list[tuple[int, bool, int, int]] = field(default_factory=list)
    error: str = ""
    transient: bool = False  # a failure that may not happen again: never cached


def encode_item(item: Item, data: bytes, sustain: bool = False) -> Encoding:
    """Encode one piece; any failure becomes Encoding(error=...)."""
    # the codec is imported when a piece is first encoded, not with the build's modules
    from music_lm.tokens.encoded import encode_midi
    from music_lm.tokens.validate import words_to_ids

    try:
        midi = data if item.kind == "midi" else item_midi(item)
        encoded = encode_midi(midi, name=item.name, sustain=sustain)
    except Exception as err:  # a bad file is reported, never fatal
        message = str(err).replace(f"{item.name}: ", "").replace("\n", " ").strip()
        transient = isinstance(err, (MemoryError, OSError))
        return Encoding(error=f"{type(err).__name__}: {message}"[:300], transient=transient)
    grid = encoded.grid
    if not grid.note_count:
        return Encoding(error="no notes")
    tracks = []
    for track in grid.tracks:
        pitches = [n.pitch for n in track.notes]
        tracks.append((track.program, track.is_drum, min(pitches), max(pitches)))
    ids = np.asarray(words_to_ids(encoded.text.split()), dtype="<u2")
    return Encoding(ids.tobytes(), grid.note_count, tracks)


def encode_job(job: tuple[str, Item, bool]) -> tuple[str, Encoding]:
    """Encode the item of one job (cache key, item, sustain), reading its file."""
    key, item, sustain = job
    try:
        data = b"" if item.kind != "midi" else Path(item.path).read_bytes()
    except OSError as err:
        return key, Encoding(error=f"cannot read: {err.strerror or err}", transient=True)
    if item.kind == "midi" and not key.startswith(content_key(item, data)):
        # the file changed since the build hashed it: its encoding would be cached under
        # the old content's key
        return key, Encoding(error="changed during the build: build again", transient=True)
    return key, encode_item(item, data, sustain)


def encode_chunk(jobs: list[tuple[str, Item, bool]]) -> list[tuple[str, Encoding]]:
    """Encode a chunk of jobs: what one worker process is handed at a time."""
    return [encode_job(job) for job in jobs]


def quiet_worker() -> None:
    """A worker process's initializer: no warnings from the files it reads."""

    warnings.simplefilter("ignore")
