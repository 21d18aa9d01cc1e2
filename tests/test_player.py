"""The page's MIDI player document, read back with an HTML parser: it loads the vendored scripts
that are on disk, in order; it carries the MIDI intact; caller values cannot break out of their
attributes. Where Chromium and Playwright are installed, one test also loads it in an iframe the
way st.iframe does, offline, and checks that it draws the notes and plays.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import io
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path

import mido
import pytest
from browser import browser_page, chromium_path
from external import requires

from music_lm.page.player import (
    DEFAULT_STATIC_URL,
    PLAYER_DIR,
    PLAYER_ID,
    PLAYER_SCRIPTS,
    VISUALIZER_ID,
    VISUALIZERS,
    midi_player_html,
    player_available,
)

REPO = Path(__file__).resolve().parent.parent
FOLK_TUNE = REPO / "midi_in" / "folk_tune.mid"


class _Elements(HTMLParser):
    """Every start tag with its attributes, in document order, and the inline scripts' text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)

    def find(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def parse(document: str) -> _Elements:
    elements = _Elements()
    elements.feed(document)
    elements.close()
    return elements


def test_the_vendored_scripts_are_all_on_disk_and_match_their_checksums() -> None:
    assert player_available()
    listed = {}
    for line in (PLAYER_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    assert list(listed) == list(PLAYER_SCRIPTS)
    for name, digest in listed.items():
        assert hashlib.sha256((PLAYER_DIR / name).read_bytes()).hexdigest() == digest, name


def test_the_document_loads_each_vendored_script_in_order() -> None:
    elements = parse(midi_player_html(FOLK_TUNE.read_bytes()))
    sources = [attrs["src"] for attrs in elements.find("script") if "src" in attrs]
    assert sources == [f"{DEFAULT_STATIC_URL}/{name}" for name in PLAYER_SCRIPTS]
    for source in sources:
        assert source is not None
        assert (PLAYER_DIR / source.rsplit("/", 1)[1]).is_file(), source


def test_a_trailing_slash_on_the_static_url_makes_no_double_slash() -> None:
    elements = parse(midi_player_html(FOLK_TUNE.read_bytes(), static_url="/x/player/"))
    sources = [attrs["src"] for attrs in elements.find("script") if "src" in attrs]
    assert sources == [f"/x/player/{name}" for name in PLAYER_SCRIPTS]


def test_the_player_carries_the_midi_intact_and_drives_the_visualizer() -> None:
    midi = FOLK_TUNE.read_bytes()
    elements = parse(midi_player_html(midi, visualizer="staff"))
    [player] = elements.find("midi-player")
    [visualizer] = elements.find("midi-visualizer")

    src = player["src"]
    assert src is not None
    prefix = "data:audio/midi;base64,"
    assert src.startswith(prefix)
    assert base64.b64decode(src[len(prefix) :], validate=True) == midi

    assert player["id"] == PLAYER_ID
    assert visualizer["id"] == VISUALIZER_ID
    assert player["visualizer"] == f"#{VISUALIZER_ID}"
    assert visualizer["type"] == "staff"
    # No SoundFont: the default one would be fetched from the network.
    assert "sound-font" not in player


def test_the_document_is_as_tall_as_asked() -> None:
    document = midi_player_html(FOLK_TUNE.read_bytes(), height_px=400)
    assert "height: 400px;" in document


@pytest.mark.parametrize(
    "static_url",
    [
        '"><script>alert(1)</script>',
        "/app/static/x' onload='alert(1)",
        "/a&b<c>",
    ],
)
def test_a_hostile_static_url_stays_inside_its_attributes(static_url: str) -> None:
    document = midi_player_html(FOLK_TUNE.read_bytes(), static_url=static_url)
    elements = parse(document)
    assert "<script>alert" not in document
    # Exactly the four vendored scripts and the one inline script: nothing injected.
    scripts = elements.find("script")
    assert len(scripts) == len(PLAYER_SCRIPTS) + 1
    assert [attrs.get("src") for attrs in scripts[:-1]] == [
        f"{static_url}/{name}" for name in PLAYER_SCRIPTS
    ]
    assert all(set(attrs) == {"src"} for attrs in scripts[:-1])
    assert len(elements.inline_scripts) == 1


def test_ids_are_safe_as_attribute_values_and_as_selectors() -> None:
    # Nothing a caller passes reaches an id; the fixed ones need no escaping anywhere.
    for element_id in (PLAYER_ID, VISUALIZER_ID):
        assert element_id.replace("-", "").isalnum()
        assert element_id[0].isalpha()


@pytest.mark.parametrize("visualizer", VISUALIZERS)
def test_each_visualizer_type_is_accepted(visualizer: str) -> None:
    [element] = parse(midi_player_html(FOLK_TUNE.read_bytes(), visualizer=visualizer)).find(
        "midi-visualizer"
    )
    assert element["type"] == visualizer


def test_bad_arguments_are_refused_naming_the_value() -> None:
    midi = FOLK_TUNE.read_bytes()
    with pytest.raises(ValueError, match="'pianoroll'"):
        midi_player_html(midi, visualizer="pianoroll")
    with pytest.raises(ValueError, match="got 50"):
        midi_player_html(midi, height_px=50)
    with pytest.raises(ValueError, match="got True"):
        midi_player_html(midi, height_px=True)
    with pytest.raises(ValueError, match="RIFF"):
        midi_player_html(b"RIFF\x00\x00\x00\x00WAVE")
    with pytest.raises(TypeError, match="str"):
        midi_player_html("midi_in/folk_tune.mid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="static_url"):
        midi_player_html(midi, static_url=" ")


def test_the_player_is_unavailable_when_a_script_is_missing(tmp_path: Path) -> None:
    assert not player_available(tmp_path)
    for name in PLAYER_SCRIPTS:
        shutil.copy(PLAYER_DIR / name, tmp_path / name)
    assert player_available(tmp_path)
    (tmp_path / PLAYER_SCRIPTS[-1]).unlink()
    assert not player_available(tmp_path)


class _StaticHandler(http.server.SimpleHTTPRequestHandler):
    """Serves static/ at /app/static/ as Streamlit does, and `page` at /."""

    page = b""

    def translate_path(self, path: str) -> str:
        prefix = "/app/static/"
        path = path.split("?", 1)[0]
        if not path.startswith(prefix):
            return "/nonexistent"
        return str(REPO / "static" / path[len(prefix) :])

    def do_GET(self) -> None:
        if self.path != "/":
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: object) -> None:
        pass


@requires("Chromium and Playwright", chromium_path(), "make setup installs both")
def test_the_player_draws_and_plays_offline_in_an_iframe_like_streamlits(tmp_path: Path) -> None:
    # st.iframe puts an HTML string in srcdoc with this sandbox (Streamlit 1.67's IFrameUtil);
    # /app/static/... in it then resolves against the parent page's URL.
    sandbox = (
        "allow-forms allow-modals allow-popups allow-popups-to-escape-sandbox "
        "allow-same-origin allow-scripts allow-downloads"
    )
    midi = FOLK_TUNE.read_bytes()
    notes = sum(
        message.type == "note_on" and message.velocity > 0
        for message in mido.MidiFile(file=io.BytesIO(midi))
    )
    handler = type("Handler", (_StaticHandler,), {})
    handler.page = (
        f'<!doctype html><iframe sandbox="{sandbox}" allow="autoplay" width="700" height="330" '
        f'srcdoc="{html.escape(midi_player_html(midi), quote=True)}"></iframe>'
    ).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    blocked: list[str] = []
    player = f"document.getElementById('{PLAYER_ID}')"
    try:
        with browser_page(tmp_path, name="player", blocked=blocked) as page:
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            iframe = page.wait_for_selector("iframe")
            assert iframe is not None
            frame = iframe.content_frame()
            assert frame is not None
            # Loaded (the duration comes from the parsed MIDI) and drawn before any play.
            frame.wait_for_function(f"{player} && {player}.duration > 0", timeout=15_000)
            frame.wait_for_function(
                f"document.querySelectorAll('#{VISUALIZER_ID} svg rect').length == {notes}",
                timeout=15_000,
            )
            assert frame.evaluate(f"{player}.currentTime") == 0
            frame.click("midi-player button.play")
            frame.wait_for_function(f"{player}.currentTime > 1", timeout=15_000)
            assert frame.evaluate(f"{player}.playing")
    finally:
        server.shutdown()
        server.server_close()
    assert blocked == []
