"""The content-keyed cache of a corpus build: every piece's encoding, by a key made of
its file's content and the encoder's version, in one SQLite file per vocabulary. A second
build encodes only what changed; an interrupted one resumes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from music_lm.corpus.encoding import ENCODER_VERSION, Encoding
from music_lm.corpus.sources import Item, content_key
from music_lm.tokens.vocab import VOCAB


def default_cache_dir() -> Path:
    """$MUSIC_LM_CACHE, else $XDG_CACHE_HOME/music_lm, else ~/.cache/music_lm."""
    if os.environ.get("MUSIC_LM_CACHE"):
        return Path(os.environ["MUSIC_LM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "music_lm"


class EncodingCache:
    """Encodings by content key, in one SQLite file (written by the main process only)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # ids mean something only under one vocabulary: a cache per vocabulary
        self.path = folder / f"corpus-{ENCODER_VERSION}-{VOCAB.sha256[:12]}.sqlite"
        self._db = sqlite3.connect(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS encodings (key TEXT PRIMARY KEY, ids BLOB, "
            "notes INTEGER, tracks TEXT, error TEXT)"
        )

    def known(self, keys: Iterable[str]) -> set[str]:
        """Which of `keys` the cache holds."""
        found: set[str] = set()
        keys = list(keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key FROM encodings WHERE key IN ({marks})", chunk)
            found.update(key for (key,) in rows)
        return found

    def get(self, key: str) -> Encoding | None:
        row = self._db.execute(
            "SELECT ids, notes, tracks, error FROM encodings WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        ids, notes, tracks, error = row
        return Encoding(ids, notes, [tuple(t) for t in json.loads(tracks)], error)

    def put(self, key: str, enc: Encoding) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO encodings VALUES (?, ?, ?, ?, ?)",
            (key, enc.ids, enc.notes, json.dumps(enc.tracks), enc.error),
        )

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.commit()
        self._db.close()


class CacheView(Mapping):
    """The encodings of a build, read from the cache one at a time (plus this run's
    transient failures, which are not cached)."""

    def __init__(self, cache: EncodingCache, extra: dict[str, Encoding]) -> None:
        self.cache, self.extra = cache, extra

    def __getitem__(self, key: str) -> Encoding:
        enc = self.extra.get(key) or self.cache.get(key)
        if enc is None:
            raise KeyError(key)
        return enc

    def __iter__(self) -> Iterator[str]:
        raise TypeError("the cache view is read by key only")

    def __len__(self) -> int:
        raise TypeError("the cache view is read by key only")


def content_keys(items: list[Item]) -> list[str | None]:
    """Content key per item (None when the file cannot be read: reported later). The tunes
    of an ABC file are consecutive items, so the last file read is all there is to reuse."""
    keys: list[str | None] = []
    last_path, data = None, None
    for item in items:
        if item.path != last_path:
            try:
                data = Path(item.path).read_bytes()
            except OSError:
                data = None
            last_path = item.path
        keys.append(None if data is None else f"{content_key(item, data)}|{ENCODER_VERSION}")
    return keys
