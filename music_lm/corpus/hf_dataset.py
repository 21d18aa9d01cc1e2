"""The corpus build on Hugging Face `datasets`, for Lakh-size folders.

    music-lm corpus build --engine datasets --source ~/lmd_full:lakh -o data/lakh -j 16

The same steps and the same output as `music_lm.corpus.build` (shards, index, manifest,
tokenizer), with the encoding done by `Dataset.map(num_proc=...)`, whose workers write
their Arrow files straight to disk (in the cache folder, named by a hash of every
input's content key): the encodings are then read back memory-mapped, one piece at a
time, so a 180,000-file folder never sits in one process's memory. Run again on the
same files, the build loads that Arrow cache instead of encoding (a changed file means
encoding everything again: the local engine is the one that is incremental per file).
The encoded pieces are also kept as Parquet shards per split in `parquet/` (columns
name, source, style, split, ids), for `datasets.load_dataset("parquet", data_dir=...)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from music_lm.corpus.build import BuildResult, list_sources
from music_lm.corpus.cache import content_keys, default_cache_dir
from music_lm.corpus.config import BuildConfig
from music_lm.corpus.dataset import SPLITS
from music_lm.corpus.encoding import ENCODER_VERSION, Encoding, encode_job
from music_lm.corpus.sources import CorpusError, Item
from music_lm.corpus.split import assemble, piece_ids
from music_lm.corpus.write import check_output, write_corpus
from music_lm.tokens.vocab import VOCAB

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
        _, enc = encode_job((key, item, sustain))
        out["ids"].append(np.frombuffer(enc.ids, dtype="<u2"))
        out["notes"].append(enc.notes)
        out["tracks"].append(json.dumps(enc.tracks))
        out["error"].append(enc.error)
    return out


class _ArrowEncodings(Mapping):
    """The encoded table as a read-only mapping key -> Encoding. Rows are read a block at a
    time and the last block is kept: the build reads them in order, twice."""

    BLOCK = 1024

    def __init__(self, table) -> None:
        self.table = table
        self.rows = {key: row for row, key in enumerate(table["key"])}
        self._block_start = -1
        self._block: dict[str, list] = {}

    def __getitem__(self, key: str) -> Encoding:
        row = self.rows[key]
        start = row - row % self.BLOCK
        if start != self._block_start:
            self._block = self.table[start : start + self.BLOCK]
            self._block_start = start
        i = row - start
        tracks = [tuple(t) for t in json.loads(self._block["tracks"][i])]
        ids = np.asarray(self._block["ids"][i], dtype="<u2").tobytes()
        return Encoding(ids, int(self._block["notes"][i]), tracks, str(self._block["error"][i]))

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def build_corpus_datasets(
    config: BuildConfig,
    out: Path,
    workers: int | None = None,
    log=lambda _message: None,
    cache_dir: Path | None = None,
    debian_dir: Path | None = None,
) -> BuildResult:
    """Build the corpus folder `out` with `datasets.Dataset.map` doing the encoding (a
    Debian package's files are plain MIDI files once unpacked: they go through it too)."""
    # datasets (and pyarrow) only for --engine datasets
    import datasets

    started = time.perf_counter()
    check_output(out)
    sources, items = list_sources(config, log, debian_dir)
    keys = content_keys(items)
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
    features = datasets.Features(
        {
            "key": datasets.Value("string"),
            "ids": datasets.List(datasets.Value("uint16")),
            "notes": datasets.Value("int64"),
            "tracks": datasets.Value("string"),
            "error": datasets.Value("string"),
        }
    )
    workers = workers or os.cpu_count() or 1
    # Dataset.map runs num_proc processes as one build, each on its share of the rows;
    # fewer rows than workers: one process (num_proc None), and the manifest says so.
    num_proc = workers if workers > 1 and len(table) >= workers else None
    recipe = [ENCODER_VERSION, VOCAB.sha256, str(config.sustain), *todo]
    inputs = hashlib.sha256("\n".join(recipe).encode())
    arrow = (cache_dir or default_cache_dir()) / "datasets" / f"{inputs.hexdigest()[:24]}.arrow"
    arrow.parent.mkdir(parents=True, exist_ok=True)
    cached = any(arrow.parent.glob(f"{arrow.stem}*.arrow"))
    encoded = table.map(
        _encode_batch,
        batched=True,
        batch_size=32,
        num_proc=num_proc,
        fn_kwargs={"sustain": config.sustain},
        features=features,
        remove_columns=["kind", "path", "name", "number", "source", "style"],
        cache_file_name=str(arrow),
        load_from_cache_file=True,
        new_fingerprint=inputs.hexdigest()[:32],
        desc="encoding",
    )
    results = _ArrowEncodings(encoded.with_format("numpy"))
    where = "from the Arrow cache" if cached else f"written by {num_proc or 1} process(es)"
    log(f"{len(results)} encodings {where} in {arrow.parent}")
    encode_seconds = time.perf_counter() - started

    pieces, piece_keys, failures, duplicates = assemble(items, keys, results, config)
    if not pieces:
        raise CorpusError(f"{out}: none of the {len(items)} pieces could be encoded")

    def fetch(index: int) -> np.ndarray:
        return piece_ids(results[piece_keys[index]], pieces[index].style)

    def write_parquet(folder: Path) -> None:
        # pyarrow only for --engine datasets
        import pyarrow as pa
        import pyarrow.parquet as pq

        (folder / PARQUET).mkdir()
        schema = pa.schema([("name", pa.string()), ("source", pa.string()),
                            ("style", pa.string()), ("split", pa.string()),
                            ("ids", pa.list_(pa.uint16()))])  # fmt: skip
        for split in SPLITS:
            members = [i for i, p in enumerate(pieces) if p.split == split]
            for shard, start in enumerate(range(0, len(members), PARQUET_ROWS_PER_SHARD)):
                path = folder / PARQUET / f"{split}-{shard:05d}.parquet"
                with pq.ParquetWriter(path, schema) as writer:
                    chunk = members[start : start + PARQUET_ROWS_PER_SHARD]
                    for at in range(0, len(chunk), 1000):
                        rows = [pieces[i] for i in chunk[at : at + 1000]]
                        batch = {
                            "name": [p.name for p in rows],
                            "source": [p.source for p in rows],
                            "style": [p.style for p in rows],
                            "split": [p.split for p in rows],
                            "ids": [fetch(i) for i in chunk[at : at + 1000]],
                        }
                        writer.write_table(pa.table(batch, schema=schema))

    counts = {"encoded": 0 if cached else len(todo), "cached": len(todo) if cached else 0}
    manifest = write_corpus(out, config, sources, items, pieces, fetch, failures, duplicates,
                            encode_seconds, started, extra=write_parquet,
                            engine=f"datasets-{datasets.__version__}", workers=num_proc or 1,
                            counts=counts)  # fmt: skip
    return BuildResult(out, manifest, failures, duplicates, counts["encoded"], counts["cached"])
