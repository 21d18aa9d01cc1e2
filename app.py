"""music_lm's page (minimal until the page issue): a MIDI file in, its token text, its
round-trip report, and the text edited and turned back into MIDI.

UI only: every piece of work is a music_lm function the CLI also calls.
Run with `streamlit run app.py`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from music_lm import GrammarError, MidiError, encode_midi, text_to_midi
from music_lm.codec import CodecError
from music_lm.report import format_report, format_summary, verify_round_trip

EXAMPLES = Path(__file__).parent / "midi_in"
MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # also server.maxUploadSize in .streamlit/config.toml


def choose_source() -> tuple[str, bytes] | None:
    """The MIDI file to work on: an upload or one of the bundled examples."""
    uploaded = st.file_uploader("Upload a MIDI file", type=["mid", "midi"])
    if uploaded is not None:
        data = uploaded.getvalue()
        if len(data) > MAX_UPLOAD_BYTES:
            st.error(f"{uploaded.name}: {len(data):,} bytes is over the 5 MB limit")
            return None
        return uploaded.name, data
    examples = sorted(p.name for p in EXAMPLES.glob("*.mid"))
    if not examples:
        st.info("No examples in midi_in/: upload a MIDI file.")
        return None
    name = st.selectbox("…or pick an example from midi_in/", examples)
    return name, (EXAMPLES / name).read_bytes()


def show_encoding(name: str, data: bytes, sustain: bool) -> str | None:
    """Summary, round-trip report and token text of a MIDI file; returns the text."""
    try:
        encoded = encode_midi(data, name=name, sustain=sustain)
    except (MidiError, CodecError) as err:
        st.error(str(err))
        return None
    st.subheader("Summary")
    st.code("\n".join(format_summary(encoded)), language=None)
    st.subheader("Round-trip report")
    st.code("\n".join(format_report(encoded, verify_round_trip(encoded))), language=None)
    return encoded.text


def show_editor(name: str, text: str) -> None:
    """An editable token text, validated on submit, downloadable as MIDI."""
    st.subheader("Token text")
    with st.form("editor"):
        edited = st.text_area("Edit the text, then decode it", text, height=300, key=f"text-{name}")
        submitted = st.form_submit_button("Validate and decode")
    if not submitted:
        edited = text
    try:
        midi = text_to_midi(edited)
    except GrammarError as err:
        st.error(f"Invalid token text: {err}")
        return
    st.success(f"Valid: {len(edited.split())} tokens")
    stem = Path(name).stem
    st.download_button("Download MIDI", midi, file_name=f"{stem}-music_lm.mid", mime="audio/midi")
    st.download_button("Download token text", edited, file_name=f"{stem}.txt", mime="text/plain")


def main() -> None:
    st.set_page_config(page_title="music_lm", layout="wide")
    st.title("music_lm")
    st.caption("MIDI ⇄ token text, exactly at the grid. Generation arrives with the model.")
    source = choose_source()
    if source is None:
        return
    name, data = source
    sustain = st.checkbox(
        "Apply the sustain pedal", help="Notes sound on while the pedal (CC64) is down."
    )
    text = show_encoding(name, data, sustain)
    if text is not None:
        show_editor(name, text)


if __name__ == "__main__":
    main()
