"""The Debian package source: fetch (the download is faked: no network), unpack without
installing, list MIDI files with their licence, and refuse packages outside the list; and
as a corpus source (`--source debian:PACKAGE`): every piece's origin in the manifest,
unreadable files counted as failures, a test split even for a small package."""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
from pathlib import Path

import mido
import pytest
from cli_runner import run_cli

from music_lm.corpus import debian
from music_lm.corpus.build import build_corpus
from music_lm.corpus.config import BuildConfig
from music_lm.corpus.dataset import Corpus, WindowSampler
from music_lm.corpus.debian import (
    ALLOWED_PACKAGES,
    DebianError,
    fetch_package,
    licence_of,
    package_midi_files,
    replacement_licences,
)
from music_lm.corpus.hf_dataset import build_corpus_datasets
from music_lm.corpus.sources import SourceError, parse_source, style_of_tag
from music_lm.corpus.stats import manifest_table
from music_lm.corpus.write import iter_failures
from music_lm.tokens.vocab import VOCAB

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None, reason="needs dpkg"
)

PACKAGE = "crimson"  # any allowed name: the .deb is built here
VERSION = "1.0-1"
MUSIC = "usr/share/games/crimson/music"

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: Test

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: music/theme.mid
Copyright: 2004 A Composer
License: CC-BY-SA-3.0

Files: debian/*
License: PD
"""


def _midi(path: Path) -> None:
    track = mido.MidiTrack(
        [mido.Message("note_on", note=60, velocity=80), mido.Message("note_off", note=60, time=480)]
    )
    mido.MidiFile(tracks=[track]).save(path)


@pytest.fixture(scope="module")
def built_deb(tmp_path_factory) -> Path:
    """A tiny .deb of PACKAGE: two MIDI files (one `.MID`), a text file, a DEP-5 copyright."""
    tree = tmp_path_factory.mktemp("tree")
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {PACKAGE}\nVersion: {VERSION}\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: a test package\n"
    )
    music = tree / MUSIC
    music.mkdir(parents=True)
    _midi(music / "theme.mid")
    _midi(music / "BATTLE.MID")
    (music / "readme.txt").write_text("not music\n")
    doc = tree / "usr" / "share" / "doc" / PACKAGE
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(DEP5)
    deb = tmp_path_factory.mktemp("deb") / f"{PACKAGE}_{VERSION}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


@pytest.fixture
def downloads(monkeypatch, built_deb) -> list[str]:
    """Fake `apt-get download`: copies the built .deb into the cache; records each call."""
    calls: list[str] = []

    def download(package: str, cache: Path) -> Path:
        calls.append(package)
        return Path(shutil.copy(built_deb, cache / built_deb.name))

    monkeypatch.setattr(debian, "download_deb", download)
    return calls


def test_lists_midi_files_of_any_case_with_their_licence(tmp_path, downloads):
    files = package_midi_files(PACKAGE, tmp_path)
    assert [f.relative_path for f in files] == [f"{MUSIC}/BATTLE.MID", f"{MUSIC}/theme.mid"]
    assert all(f.path.is_file() and f.package == PACKAGE for f in files)
    assert all(f.version == VERSION for f in files)
    # the stanza naming the file wins over `*`; other files get `*`'s licence
    assert [f.licence for f in files] == ["GPL-2+", "CC-BY-SA-3.0"]
    assert mido.MidiFile(files[1].path).tracks[0][0].note == 60


def test_the_package_licence_names_every_licence_once(tmp_path, downloads):
    fetched = fetch_package(PACKAGE, tmp_path)
    assert fetched.licence == "GPL-2+, CC-BY-SA-3.0, PD"
    assert fetched.root.parent == tmp_path
    assert fetched.deb_path.parent == tmp_path


def test_a_cached_deb_is_not_downloaded_again(tmp_path, downloads):
    first = package_midi_files(PACKAGE, tmp_path)
    second = package_midi_files(PACKAGE, tmp_path)
    assert downloads == [PACKAGE]
    assert first == second


def test_an_interrupted_unpack_is_redone(tmp_path, downloads):
    fetched = fetch_package(PACKAGE, tmp_path)
    (fetched.root / ".unpacked").unlink()  # as if dpkg -x had stopped half-way
    assert len(package_midi_files(PACKAGE, tmp_path)) == 2
    assert downloads == [PACKAGE]


def test_a_package_outside_the_list_is_refused_before_any_download(tmp_path, downloads):
    with pytest.raises(DebianError, match=r"^debian:fretsonfire-songs-muldjord: not an allowed"):
        fetch_package("fretsonfire-songs-muldjord", tmp_path)
    assert downloads == []
    assert "pangzero" in ALLOWED_PACKAGES


def _fake_apt(tmp_path: Path, monkeypatch, script: str) -> None:
    """An `apt-get` on PATH that runs `script` (bash) instead of the real one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text("#!/bin/sh\n" + script)
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_apt_get_failing_is_one_line_naming_the_package_and_the_problem(tmp_path, monkeypatch):
    _fake_apt(tmp_path, monkeypatch, 'echo "E: Unable to locate package $2" >&2\nexit 100\n')
    with pytest.raises(DebianError) as raised:
        fetch_package("pangzero", tmp_path / "cache")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("debian:pangzero: apt-get download failed: Unable to locate")


def test_no_network_says_so(tmp_path, monkeypatch):
    _fake_apt(
        tmp_path,
        monkeypatch,
        'echo "E: Failed to fetch http://deb.debian.org/x.deb  Temporary failure resolving" >&2\n'
        "exit 100\n",
    )
    with pytest.raises(DebianError, match=r"^debian:crimson: .*Failed to fetch.*\(no network\?\)$"):
        fetch_package("crimson", tmp_path / "cache")


def test_missing_apt_get_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(DebianError, match=r"^debian:crimson: apt-get is not installed"):
        fetch_package("crimson", tmp_path)


def test_a_free_text_copyright_gives_its_licence_line():
    text = "This package was debianized by someone.\n\nLicense:\n\n   GNU GPL, version 2.\n"
    assert licence_of(text) == "GNU GPL, version 2."
    assert licence_of("Licensing summary:\n GNU General Public License\n") == (
        "GNU General Public License"
    )
    assert licence_of("") == "unknown"


def test_a_zlib_text_is_named_zlib_and_replaced_files_get_their_own_licence():
    text = "Copyright: 1997 Someone\n\nLicense:\n\n    This software is provided 'as-is', without\n"
    assert licence_of(text) == "Zlib"
    # freedink-data's README-REPLACEMENTS.txt: `+License:` is the version shipped
    replacements = (
        "- 1.mid (Terris)\n  +License: CC-BY-SA 3.0 Unported\n  Alternate:\n  License: Art Libre\n"
        "- 13.mid (Church)\n  +License: public domain\n- axe.wav\n  License: WTFPL\n"
    )
    expected = {"1.mid": "CC-BY-SA 3.0 Unported", "13.mid": "public domain", "axe.wav": "WTFPL"}
    assert replacement_licences(replacements) == expected


def test_a_dep5_licence_without_short_name_is_named_by_its_first_line():
    text = DEP5.replace("License: CC-BY-SA-3.0", "License:\n   Music licence\n   .\n   more")
    assert licence_of(text, f"{MUSIC}/theme.mid") == "Music licence"


# ---- as a corpus source: `corpus build --source debian:PACKAGE` ----

BAND_PACKAGE = "simutrans-data"
BAND_VERSION = "123.0-1"
BAND_MUSIC = "usr/share/games/simutrans/music"
BAND_COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
License: Artistic-1.0

Files: music/song2.mid
License: GPL-2+
"""


def _band_midi(path: Path, seed: int) -> None:
    """Two bars of a bass line over drums (channel 10), different for every seed."""
    rng = random.Random(seed)
    bass, drums = mido.MidiTrack([mido.Message("program_change", program=33)]), mido.MidiTrack()
    for _ in range(8):
        pitch = rng.choice((36, 38, 40, 41, 43, 45))
        bass += [mido.Message("note_on", note=pitch, velocity=rng.choice((70, 90, 110))),
                 mido.Message("note_off", note=pitch, time=rng.choice((240, 480)))]  # fmt: skip
    for _ in range(16):
        key = rng.choice((36, 38, 42))
        drums += [mido.Message("note_on", channel=9, note=key, velocity=100),
                  mido.Message("note_off", channel=9, note=key, time=240)]  # fmt: skip
    mido.MidiFile(tracks=[bass, drums]).save(path)


def _build_deb(root: Path, package: str, version: str, files: dict[str, bytes | None],
               copyright_text: str) -> Path:  # fmt: skip
    tree = root / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: a test package\n"
    )
    for relative, data in files.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            _band_midi(tree / relative, seed=len(relative) + sum(map(ord, relative)))
        else:
            (tree / relative).write_bytes(data)
    doc = tree / "usr" / "share" / "doc" / package
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(copyright_text)
    deb = root / f"{package}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)],
                   check=True, capture_output=True)  # fmt: skip
    return deb


@pytest.fixture(scope="module")
def band_deb(tmp_path_factory) -> Path:
    """A fake simutrans-data: four band MIDI files written with mido and one unreadable."""
    files: dict[str, bytes | None] = {f"{BAND_MUSIC}/song{i}.mid": None for i in range(1, 5)}
    files[f"{BAND_MUSIC}/broken.mid"] = b"MThd\x00\x00\x00\x06\x00\x01\x00\x02"
    return _build_deb(tmp_path_factory.mktemp("band"), BAND_PACKAGE, BAND_VERSION, files,
                      BAND_COPYRIGHT)  # fmt: skip


@pytest.fixture
def band_downloads(monkeypatch, band_deb) -> list[str]:
    """Fake `apt-get download` of the fake simutrans-data; records each call."""
    calls: list[str] = []

    def download(package: str, cache: Path) -> Path:
        calls.append(package)
        assert package == BAND_PACKAGE
        return Path(shutil.copy(band_deb, cache / band_deb.name))

    monkeypatch.setattr(debian, "download_deb", download)
    return calls


def _build(tmp_path: Path, *sources: str, **options):
    config = BuildConfig(sources, **options)
    return build_corpus(config, tmp_path / "corpus", cache_dir=tmp_path / "cache", workers=1,
                        debian_dir=tmp_path / "debian")  # fmt: skip


def test_a_package_builds_a_corpus_whose_manifest_names_every_pieces_origin(
    tmp_path, band_downloads
):
    _build(tmp_path, f"debian:{BAND_PACKAGE}")
    corpus = Corpus(tmp_path / "corpus")
    assert band_downloads == [BAND_PACKAGE]
    assert (tmp_path / "debian" / f"{BAND_PACKAGE}_{BAND_VERSION}_all.deb").is_file()
    names = [f"{BAND_MUSIC}/song{i}.mid" for i in range(1, 5)]
    assert sorted(p.name for p in corpus.pieces) == names
    assert all(p.source == BAND_PACKAGE and p.style == "none" for p in corpus.pieces)
    origins = {o["piece"]: o for o in corpus.manifest["origins"]}
    assert origins[names[0]] == {
        "source": BAND_PACKAGE,
        "piece": names[0],
        "split": origins[names[0]]["split"],
        "package": BAND_PACKAGE,
        "version": BAND_VERSION,
        "file": names[0],
        "licence": "Artistic-1.0",
    }
    assert origins[names[1]]["licence"] == "GPL-2+"  # its own stanza in the copyright file
    (source,) = corpus.manifest["sources"]
    assert source["spec"] == f"debian:{BAND_PACKAGE}"
    assert (source["package"], source["version"]) == (BAND_PACKAGE, BAND_VERSION)
    assert source["licences"] == {"Artistic-1.0": 3, "GPL-2+": 1}


def test_an_unreadable_file_of_a_package_is_a_failure_with_its_reason(tmp_path, band_downloads):
    result = _build(tmp_path, f"debian:{BAND_PACKAGE}")
    ((label, reason),) = result.failures
    assert label == f"{BAND_PACKAGE}:{BAND_MUSIC}/broken.mid"
    assert reason.startswith("MidiError:")
    assert dict(iter_failures(result.out))[label] == reason
    assert result.manifest["sources"][0]["failed"] == 1


def test_a_small_package_gets_a_test_and_a_validation_piece(tmp_path, band_downloads):
    # 4 pieces at 5 % + 5 %: the hash alone would most likely put them all in train
    _build(tmp_path, f"debian:{BAND_PACKAGE}")
    corpus = Corpus(tmp_path / "corpus")
    assert sorted(p.split for p in corpus.pieces) == ["test", "train", "train", "valid"]
    splits = {o["piece"]: o["split"] for o in corpus.manifest["origins"]}
    assert splits == {p.name: p.split for p in corpus.pieces}
    sampler = WindowSampler(corpus, "train", block_size=32, seed=0)
    batch = sampler.batch(4)
    assert batch.shape == (4, 33)
    test = WindowSampler(corpus, "test", block_size=32, seed=0).batch(1)
    assert VOCAB.tokens[test[0, 0]] == "piece"


def test_a_package_and_music21_mix_in_one_build(tmp_path, band_downloads):
    result = _build(tmp_path, "music21:ciconia", f"debian:{BAND_PACKAGE}:band")
    corpus = Corpus(tmp_path / "corpus")
    by_source = {s["source"]: s for s in result.manifest["sources"]}
    assert list(by_source) == ["music21", "band"]
    assert by_source["band"]["spec"] == f"debian:{BAND_PACKAGE}:band"
    assert "package" not in by_source["music21"]
    assert {p.source for p in corpus.pieces} == {"music21", "band"}
    # only the package's pieces have an origin; music21's are named by its corpus path
    assert {o["source"] for o in corpus.manifest["origins"]} == {"band"}
    assert len(corpus.manifest["origins"]) == 4
    sampler = WindowSampler(corpus, "train", 32, weights={"band": 0.8, "music21": 0.2}, seed=0)
    assert sampler.mixture() == pytest.approx({"band:none": 0.8, "music21:medieval": 0.2})


def test_a_package_source_is_parsed_without_fetching_anything(band_downloads):
    source = parse_source("debian:crimson")
    assert (source.kind, source.path, source.tag, source.spec()) == (
        "debian", "crimson", "crimson", "debian:crimson")  # fmt: skip
    assert parse_source("debian:crimson:games").spec() == "debian:crimson:games"
    with pytest.raises(DebianError) as raised:
        parse_source("debian:not-allowed")
    message = str(raised.value)
    assert message.startswith("debian:not-allowed: not an allowed package (allowed: ")
    assert "\n" not in message
    with pytest.raises(SourceError, match=r"tag 'a b'"):
        parse_source("debian:crimson:a b")
    assert band_downloads == []
    # a package's tag that is a style of the vocabulary is its style; any other: none
    assert style_of_tag("rock", otherwise="none") == "rock"
    assert style_of_tag("simutrans-data", otherwise="none") == "none"


def test_the_command_line_builds_from_a_package_into_its_cache(tmp_path, band_downloads,
                                                               monkeypatch, capsys):  # fmt: skip
    monkeypatch.setenv("MUSIC_LM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(debian.CACHE_ENV, str(tmp_path / "debs"))
    source = f"debian:{BAND_PACKAGE}"
    code, out, err = run_cli(monkeypatch, capsys, "corpus", "build", "-s", source,
                             "-o", str(tmp_path / "c"), "-j", "1")  # fmt: skip
    assert code == 0, err
    assert f"failed: {BAND_PACKAGE}:{BAND_MUSIC}/broken.mid: MidiError" in err
    assert (tmp_path / "debs" / f"{BAND_PACKAGE}_{BAND_VERSION}_all.deb").is_file()
    assert out.rstrip().endswith("(5 encoded, 0 from the cache)")
    code, out, err = run_cli(monkeypatch, capsys, "corpus", "build", "-s", "debian:fretsonfire",
                             "-o", str(tmp_path / "d"))  # fmt: skip
    assert code == 2
    assert "debian:fretsonfire: not an allowed package" in err


def test_the_datasets_engine_builds_a_package_too(tmp_path, band_downloads):
    config = BuildConfig((f"debian:{BAND_PACKAGE}",))
    local = _build(tmp_path / "local", f"debian:{BAND_PACKAGE}")
    built = build_corpus_datasets(config, tmp_path / "hf", workers=1, cache_dir=tmp_path / "c",
                                  debian_dir=tmp_path / "local" / "debian")  # fmt: skip
    assert built.manifest["origins"] == local.manifest["origins"]
    assert built.failures == local.failures


def test_a_corpus_built_before_origins_were_recorded_still_loads(tmp_path, band_downloads):
    _build(tmp_path, f"debian:{BAND_PACKAGE}")
    path = tmp_path / "corpus" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["origins"]
    for source in manifest["sources"]:
        for key in ("package", "version", "licences"):
            del source[key]
    path.write_text(json.dumps(manifest))
    corpus = Corpus(tmp_path / "corpus")
    assert len(corpus) == 4
    assert BAND_PACKAGE in manifest_table(corpus.manifest)
