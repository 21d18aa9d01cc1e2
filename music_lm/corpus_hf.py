"""The corpus build on Hugging Face `datasets`, for Lakh-size folders.

    music-lm corpus build --engine datasets --source ~/lmd_full:lakh -o data/lakh -j 16

The same steps and the same output as `music_lm.corpus` (shards, index, manifest,
tokenizer), with the encoding done by `Dataset.map(num_proc=...)`: Arrow tables
written shard by shard on disk, so a 180,000-file folder never sits in one process's
memory while it is encoded, and the job can be moved to any machine (or cluster) that
runs `datasets`. The encoded table is also kept as Parquet shards per split in
`parquet/` (columns name, source, style, split, ids), loadable with
`datasets.load_dataset("parquet", data_dir=...)`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from music_lm.corpus import (
    BuildConfig,
    BuildResult,
    Encoding,
    _assemble,
    _check_output,
    _content_keys,
    _encode_job,
    _write_corpus,
    list_sources,
)
from music_lm.dataset import SPLITS
from music_lm.sources import CorpusError, Item

PARQUET = "parquet"
PARQUET_ROWS_PER_SHARD = 20_000


def _encode_batch(batch: dict[str, list], sustain: bool) -> dict[str, list]:
    """Dataset.map function: encode a batch of items, one output row per input row."""
    out: dict[str, list] = {"ids": [], "notes": [], "tracks": [], "error": []}
    for kind, path, name, number, source, style, key in zip(
        batch["kind"], batch["path"], batch["name"], batch["number"], batch["source"],
        batch["style"], batch["key"], strict=True,
    ):  # fmt: skip
        item = Item(source, kind, path, name, style, number if number >= 0 else None)
        _, enc = _encode_job((key, item, sustain))
        out["ids"].append(np.frombuffer(enc.ids, dtype="<u2"))
        out["notes"].append(enc.notes)
        out["tracks"].append(json.dumps(enc.tracks))
        out["error"].append(enc.error)
    return out


def build_corpus_datasets(
    config: BuildConfig,
    out: Path,
    workers: int | None = None,
    log=lambda _message: None,
) -> BuildResult:
    """Build the corpus folder `out` with `datasets.Dataset.map` doing the encoding."""
    import datasets

    started = time.perf_counter()
    _check_output(out)
    sources, items = list_sources(config, log)
    keys = _content_keys(items)
    todo: dict[str, Item] = {}
    for item, key in zip(items, keys, strict=True):
        if key:
            todo.setdefault(key, item)
    table = datasets.Dataset.from_dict(
        {
            "key": list(todo),
            "kind": [i.kind for i in todo.values()],
            "path": [i.path for i in todo.values()],
            "name": [i.name for i in todo.values()],
            "number": [i.number if i.number is not None else -1 for i in todo.values()],
            "source": [i.source for i in todo.values()],
            "style": [i.style for i in todo.values()],
        }
    )
    features = table.features.copy()
    features.update(
        {
            "ids": datasets.List(datasets.Value("uint16")),
            "notes": datasets.Value("int64"),
            "tracks": datasets.Value("string"),
            "error": datasets.Value("string"),
        }
    )
    workers = workers or os.cpu_count() or 1
    encoded = table.map(
        _encode_batch,
        batched=True,
        batch_size=32,
        num_proc=workers if workers > 1 and len(table) >= workers else None,
        fn_kwargs={"sustain": config.sustain},
        features=features,
        desc="encoding",
    )
    results: dict[str, Encoding] = {}
    for row in encoded.with_format("numpy").select_columns(["key", "ids", "notes", "tracks",
                                                            "error"]):  # fmt: skip
        tracks = [tuple(t) for t in json.loads(row["tracks"])]
        ids = np.asarray(row["ids"], dtype="<u2").tobytes()
        results[str(row["key"])] = Encoding(ids, int(row["notes"]), tracks, str(row["error"]))
    encode_seconds = time.perf_counter() - started

    pieces, arrays, failures, duplicates = _assemble(items, keys, results, config)
    if not pieces:
        raise CorpusError(f"{out}: none of the {len(items)} pieces could be encoded")

    def write_parquet(folder: Path) -> None:
        (folder / PARQUET).mkdir()
        for split in SPLITS:
            rows = [(p, a) for p, a in zip(pieces, arrays, strict=True) if p.split == split]
            for shard, start in enumerate(range(0, len(rows), PARQUET_ROWS_PER_SHARD)):
                chunk = rows[start : start + PARQUET_ROWS_PER_SHARD]
                part = datasets.Dataset.from_dict(
                    {
                        "name": [p.name for p, _ in chunk],
                        "source": [p.source for p, _ in chunk],
                        "style": [p.style for p, _ in chunk],
                        "split": [p.split for p, _ in chunk],
                        "ids": [a for _, a in chunk],
                    },
                    features=datasets.Features(
                        {
                            "name": datasets.Value("string"),
                            "source": datasets.Value("string"),
                            "style": datasets.Value("string"),
                            "split": datasets.Value("string"),
                            "ids": datasets.List(datasets.Value("uint16")),
                        }
                    ),
                )
                part.to_parquet(str(folder / PARQUET / f"{split}-{shard:05d}.parquet"))

    manifest = _write_corpus(out, config, sources, items, pieces, arrays, failures, duplicates,
                             encode_seconds, started, extra=write_parquet,
                             engine=f"datasets-{datasets.__version__}",
                             workers=workers)  # fmt: skip
    return BuildResult(out, manifest, failures, duplicates, len(todo), 0)
