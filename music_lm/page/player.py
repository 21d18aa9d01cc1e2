"""The page's in-browser MIDI player: html-midi-player's `<midi-player>` and `<midi-visualizer>`.

`midi_player_html` writes a small, complete HTML document for `st.iframe` (which embeds an HTML
string as an iframe `srcdoc` with scripts allowed). The player's scripts are vendored under
`static/html-midi-player/` and served by Streamlit's static serving at `/app/static/...`, so the
page works offline: an iframe's `srcdoc` document resolves `/app/static/...` against the page's
own URL. See `static/html-midi-player/README.md` for where the scripts come from.

The MIDI travels inside the document as a `data:` URL, so the page needs no file endpoint, and
no `sound-font` attribute is set: the default oscillator synth needs no downloads, whereas a
SoundFont would be fetched from Google's storage.

No streamlit import here: the page imports this, and the tests check the HTML without a browser.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

# static/ sits beside app.py at the repo root, which is where Streamlit serves it from. An
# installed wheel does not carry it, hence `player_available()`.
PLAYER_DIR = Path(__file__).resolve().parents[2] / "static" / "html-midi-player"
DEFAULT_STATIC_URL = "/app/static/html-midi-player"
# In load order: Magenta's core.js needs window.Tone, and midi-player.min.js needs window.core
# (Magenta) when it runs, because it defines the custom elements at once.
PLAYER_SCRIPTS = ("Tone.js", "core.js", "focus-visible.min.js", "midi-player.min.js")
VISUALIZERS = ("piano-roll", "waterfall", "staff")
DEFAULT_HEIGHT_PX = 320
# Below this the control bar (about 50 px) leaves no room for any visualizer.
MIN_HEIGHT_PX = 120
# Fixed ids: each st.iframe is a document of its own, so two players on a page cannot clash, and
# nothing a caller passes ever reaches an id or a selector.
PLAYER_ID = "music-lm-player"
VISUALIZER_ID = "music-lm-visualizer"


def player_available(player_dir: Path = PLAYER_DIR) -> bool:
    """Whether every vendored script is on disk (a wheel install or a bad checkout has none)."""
    return all((player_dir / name).is_file() for name in PLAYER_SCRIPTS)


def midi_data_url(midi: bytes) -> str:
    """`midi` as a `data:audio/midi;base64,...` URL, which the player fetches like a file."""
    return "data:audio/midi;base64," + base64.b64encode(midi).decode("ascii")


# Sizes the piano roll to the box once the player has parsed the file: one row per pitch from the
# lowest to the highest note, as tall as fits (2 to 12 px), and wide enough to fill the box for a
# short piece (a long one scrolls sideways and follows the playback). Magenta's piano roll is
# (maxPitch - minPitch) rows tall and puts minPitch's notes below its last row, where the SVG
# clips them, hence minPitch one below the lowest note. The visualizer is given the
# player's NoteSequence so it draws before anyone presses play (html-midi-player otherwise hands
# it over only on "start") without parsing the MIDI a second time.
_SCRIPT = """
(function () {
  var player = document.getElementById("%(player_id)s");
  var visualizer = document.getElementById("%(visualizer_id)s");
  var box = visualizer.parentElement;
  function show() {
    var ns = player.noteSequence;
    if (!ns || visualizer.noteSequence === ns) return;
    if (visualizer.type === "piano-roll" && ns.notes.length && ns.totalTime > 0) {
      var low = 127, high = 0;
      ns.notes.forEach(function (note) {
        low = Math.min(low, note.pitch);
        high = Math.max(high, note.pitch);
      });
      var rows = high - low + 1;
      var noteHeight = Math.floor((box.clientHeight - 16) / rows);
      visualizer.config = {
        // Magenta draws the lowest pitch one row below minPitch's, off the bottom of the SVG.
        minPitch: low - 1,
        maxPitch: high,
        noteHeight: Math.max(2, Math.min(12, noteHeight)),
        pixelsPerTimeStep: Math.max(30, (box.clientWidth - 2) / ns.totalTime)
      };
    }
    visualizer.noteSequence = ns;
  }
  player.addEventListener("load", show);
  show();
})();
"""


def midi_player_html(
    midi: bytes,
    *,
    static_url: str = DEFAULT_STATIC_URL,
    visualizer: str = "piano-roll",
    height_px: int = DEFAULT_HEIGHT_PX,
) -> str:
    """A complete HTML document that plays `midi` and draws it, `height_px` tall.

    `static_url` is where the vendored scripts are served (no trailing slash needed);
    `visualizer` is one of `VISUALIZERS`. The document is exactly `height_px` high, so
    `st.iframe(html, height=height_px)` and `st.iframe(html)` (Streamlit then measures the
    content) both show it whole.
    """
    if not isinstance(midi, bytes | bytearray):
        raise TypeError(f"midi must be the file's bytes, got {type(midi).__name__}: {midi!r:.80}")
    if not midi.startswith(b"MThd"):
        raise ValueError(
            f"midi is not a Standard MIDI File (it should start with b'MThd'): "
            f"{len(midi)} bytes starting {bytes(midi[:8])!r}"
        )
    if visualizer not in VISUALIZERS:
        raise ValueError(f"visualizer must be one of {', '.join(VISUALIZERS)}; got {visualizer!r}")
    if isinstance(height_px, bool) or not isinstance(height_px, int) or height_px < MIN_HEIGHT_PX:
        raise ValueError(f"height_px must be an int of at least {MIN_HEIGHT_PX}; got {height_px!r}")
    if not isinstance(static_url, str) or not static_url.strip():
        raise ValueError(f"static_url must be a non-empty URL or path; got {static_url!r}")

    base = static_url.rstrip("/")
    scripts = "\n".join(
        f'<script src="{html.escape(f"{base}/{name}", quote=True)}"></script>'
        for name in PLAYER_SCRIPTS
    )
    script = _SCRIPT % {"player_id": PLAYER_ID, "visualizer_id": VISUALIZER_ID}
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>MIDI player</title>
<style>
html, body {{ margin: 0; padding: 0; background: transparent; font-family: sans-serif; }}
.music-lm-player {{
  box-sizing: border-box; height: {height_px}px; display: flex; flex-direction: column; gap: 6px;
}}
midi-player {{ display: block; width: 100%; margin: 0; }}
.music-lm-roll {{
  flex: 1 1 auto; min-height: 0; overflow-x: hidden; overflow-y: auto;
  background: #ffffff; border: 1px solid #e6e9ef; border-radius: 6px;
}}
</style>
{scripts}
</head>
<body>
<div class="music-lm-player">
<midi-player id="{PLAYER_ID}" src="{midi_data_url(bytes(midi))}" visualizer="#{VISUALIZER_ID}">
</midi-player>
<div class="music-lm-roll">
<midi-visualizer id="{VISUALIZER_ID}" type="{visualizer}"></midi-visualizer>
</div>
</div>
<script>{script}</script>
</body>
</html>
"""
