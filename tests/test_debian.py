"""The Debian package source: fetch (the download is faked: no network), unpack without
installing, list MIDI files with their licence, and refuse packages outside the list."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import mido
import pytest

from music_lm.corpus import debian
from music_lm.corpus.debian import (
    ALLOWED_PACKAGES,
    DebianError,
    fetch_package,
    licence_of,
    package_midi_files,
)

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


def test_a_dep5_licence_without_short_name_is_named_by_its_first_line():
    text = DEP5.replace("License: CC-BY-SA-3.0", "License:\n   Music licence\n   .\n   more")
    assert licence_of(text, f"{MUSIC}/theme.mid") == "Music licence"
