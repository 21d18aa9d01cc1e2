"""Exports for other programs: DAW-ready MIDI (format 1 or 0) and MusicXML for notation.

DAW-ready is the layout `write_midi` writes: PPQ 480, the tempo map, time and key
signatures in track 0, then one named track per instrument on its own channel with its
program change at tick 0, drums on channel 10. The sustain pedal is applied to the notes
(a DAW gets notes that sound as long as they were heard), and markers, such as the start
of a generated continuation, are kept.

MusicXML goes through music21 (its MIDI import quantises to the nearest 16th note or
triplet 8th, then its MusicXML writer): parts named by instrument, a percussion part for
the drums, tempo marks and time signatures.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from music_lm.errors import MusicLmError
from music_lm.limits import check_length
from music_lm.midi.read import MidiRead, read_midi
from music_lm.midi.write import write_midi


class ExportError(MusicLmError, RuntimeError):
    """An export that cannot be made; names the file and the reason."""


def daw_midi(read: MidiRead, midi_format: int = 1) -> bytes:
    """The DAW-ready MIDI file of a score read from MIDI (markers kept)."""
    return write_midi(read.score, markers=read.markers, midi_format=midi_format)


def musicxml(midi: bytes, name: str = "<bytes>") -> bytes:
    """MusicXML (uncompressed, .musicxml) of a MIDI file's bytes, through music21."""
    try:
        # music21 takes seconds to import: only when a music21 piece is read
        from music21 import midi as m21midi
    except ImportError as err:
        raise ExportError(
            f"MusicXML needs music21 ({err}); pip install 'music-lm[corpus]'"
        ) from None
    midi_file = m21midi.MidiFile()
    try:
        midi_file.readstr(midi)
        stream = m21midi.translate.midiFileToStream(midi_file, quantizePost=True)
    except Exception as err:  # music21 raises many kinds; say which file
        raise ExportError(f"{name}: music21 cannot read it for MusicXML ({err})") from None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "score.musicxml"
        try:
            stream.write("musicxml", fp=str(out))
        except Exception as err:
            raise ExportError(f"{name}: music21 cannot write MusicXML ({err})") from None
        return out.read_bytes()


def export_midi(
    source: str | Path | bytes, midi_format: int = 1, name: str | None = None
) -> tuple[bytes, MidiRead]:
    """(DAW-ready MIDI bytes, what was read) of a MIDI file; MidiError names a bad one."""

    read = read_midi(source, name=name, sustain=True)
    # A corrupt length would make music21 (MusicXML) run for ever on the export.
    check_length(read.score.end_tick / read.score.ticks_per_beat, read.source_name, ExportError)
    return daw_midi(read, midi_format), read


__all__ = ["ExportError", "daw_midi", "export_midi", "musicxml"]
