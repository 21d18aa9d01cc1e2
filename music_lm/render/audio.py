"""MIDI -> audio with FluidSynth, in process, through a General MIDI soundfont.

The score is read with music_lm's own reader (the sustain pedal applied, so a pedalled
piano rings as played), each track gets a FluidSynth channel of its own (drum tracks a
percussion channel, the GM kit of bank 128), and the notes are played into a float
buffer (FluidSynth starts an event at its next 64-frame block, 1.5 ms at 44.1 kHz):
nothing clips inside the synth. The result is normalised to a peak
of -1 dBFS, the release tail is kept until it falls below -60 dB of the peak and the
silence after it trimmed.

Each render makes its own synth and deletes it after. A synth reused across renders,
even after FluidSynth's full reset, gave samples that differed from a fresh one's by up to
-51 dB (reverb and voice state), while loading FluidR3_GM costs 0.14 s: a render is
therefore exactly reproducible and independent of any other, in any thread, at that price
(bench/RESULTS.md gives both figures).
"""

from __future__ import annotations

import ctypes
import io
import os
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from music_lm.errors import MusicLmError
from music_lm.limits import limits
from music_lm.midi.read import read_midi
from music_lm.midi.score import Score

SAMPLE_RATES = (22050, 32000, 44100, 48000, 96000)
FORMATS = ("wav", "flac", "ogg")
HEADROOM_DB = -1.0  # the peak after normalising
TAIL_FLOOR_DB = -60.0  # relative to the peak: quieter than this at the end is silence
SILENCE = 1e-4  # a peak below this (-80 dBFS) is silence, not quiet music
MAX_TAIL_S = 6.0  # release and reverb rendered after the last note-off, at most
_BLOCK = 512  # frames per synthesis call while rendering the tail
DEBIAN_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)


class AudioError(MusicLmError, RuntimeError):
    """Rendering cannot run (no FluidSynth, no soundfont, a bad option); names the cause."""


@dataclass(frozen=True)
class Rendered:
    samples: np.ndarray  # float32 [frames, 2], peak at HEADROOM_DB (or silent)
    sample_rate: int
    soundfont: str
    notes: int
    gain: float  # the factor normalising applied

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def find_soundfont(path: str | Path | None = None) -> Path:
    """The soundfont to use: `path`, else $MUSIC_LM_SOUNDFONT, else Debian's FluidR3_GM
    when installed, else the TimGM6mb that ships inside pretty_midi."""
    if path is not None:
        chosen = Path(path)
        if not chosen.is_file():
            raise AudioError(f"{chosen}: soundfont not found")
        return chosen
    env = os.environ.get("MUSIC_LM_SOUNDFONT")
    if env:
        return find_soundfont(env)
    for candidate in DEBIAN_SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    try:
        # pretty_midi only to find its bundled soundfont
        import pretty_midi
    except ImportError:
        pretty_midi = None
    if pretty_midi is not None:
        bundled = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
        if bundled.is_file():
            return bundled
    raise AudioError(
        "no General MIDI soundfont: install Debian's fluid-soundfont-gm, pass --soundfont, "
        "or install pretty_midi (it ships TimGM6mb)"
    )


# ---- the synth ----


class _Synth:
    """A FluidSynth synth with one soundfont loaded, writing float samples."""

    def __init__(self, soundfont: Path, sample_rate: int) -> None:
        try:
            # libfluidsynth only when audio is rendered
            import fluidsynth
        except (ImportError, OSError) as err:  # OSError: pyfluidsynth without libfluidsynth
            raise AudioError(
                f"FluidSynth is not available ({err}); install Debian's fluidsynth and pip's "
                "pyfluidsynth (make setup does both)"
            ) from None
        self.fs = fluidsynth
        # 256 channels: every track its own, so programs never collide.
        self.synth = fluidsynth.Synth(gain=0.5, samplerate=sample_rate, channels=256)
        self.synth.setting("synth.polyphony", 1024)
        self.sfid = self.synth.sfload(str(soundfont))
        if self.sfid == -1:
            self.synth.delete()
            raise AudioError(f"{soundfont}: FluidSynth cannot load this soundfont")
        lib = fluidsynth._fl
        self._write = lib.fluid_synth_write_float
        self._write.restype = ctypes.c_int
        self._write.argtypes = [ctypes.c_void_p, ctypes.c_int] + [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
        ] * 2
        self._channel_type = getattr(lib, "fluid_synth_set_channel_type", None)
        if self._channel_type is not None:  # (without argtypes a pointer is cut to an int)
            self._channel_type.restype = ctypes.c_int
            self._channel_type.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]

    def delete(self) -> None:
        self.synth.delete()

    def drums(self, channel: int, kit: int) -> None:
        if self._channel_type is not None:
            self._channel_type(self.synth.synth, channel, 1)  # CHANNEL_TYPE_DRUM
        if self.synth.program_select(channel, self.sfid, 128, kit) != 0:
            self.synth.program_select(channel, self.sfid, 128, 0)  # the standard kit

    def program(self, channel: int, program: int) -> None:
        if self._channel_type is not None:
            self._channel_type(self.synth.synth, channel, 0)  # CHANNEL_TYPE_MELODIC
        self.synth.program_select(channel, self.sfid, 0, program)

    def write(self, out: np.ndarray) -> None:
        """Fill `out` (float32 [frames, 2], C-contiguous) with the next frames."""
        frames = out.shape[0]
        if frames == 0:
            return
        pointer = out.ctypes.data
        if self._write(self.synth.synth, frames, pointer, 0, 2, pointer + 4, 0, 2) != 0:
            raise AudioError("FluidSynth failed to write samples")


# ---- rendering ----


def tick_seconds(score: Score) -> Callable[[Any], Any]:
    """A function tick -> seconds, by the score's tempo map (120 bpm before the first)."""
    ppq = score.ticks_per_beat
    points = [(0, 0.0, 120.0)]  # (tick, seconds at it, bpm from it)
    for tempo in sorted(score.tempos, key=lambda t: t.tick):
        tick, seconds, bpm = points[-1]
        at = seconds + (tempo.tick - tick) * 60.0 / (bpm * ppq)
        if tempo.tick == tick:
            points[-1] = (tick, seconds, tempo.bpm)
        else:
            points.append((tempo.tick, at, tempo.bpm))
    ticks = np.array([p[0] for p in points])
    starts = np.array([p[1] for p in points])
    scale = np.array([60.0 / (p[2] * ppq) for p in points])

    def convert(tick):
        index = np.searchsorted(ticks, tick, side="right") - 1
        return starts[index] + (tick - ticks[index]) * scale[index]

    return convert


def _events(score: Score, sample_rate: int) -> tuple[np.ndarray, list[tuple[int, bool, int]]]:
    """Note events as rows (frame, on?, channel, pitch, velocity), sorted: offs before
    ons on the same frame; and the channel setup (channel, drums?, program) per track."""
    to_seconds = tick_seconds(score)
    rows = []
    setup = []
    melodic = (c for c in range(256) if c % 16 != 9)
    percussion = (c for c in range(9, 256, 16))
    for track in score.tracks:
        channel = next(percussion if track.is_drum else melodic)
        setup.append((channel, track.is_drum, track.program))
        if not track.notes:
            continue
        notes = np.array(track.notes, dtype=np.int64)  # onset, duration, pitch, velocity
        on = np.rint(to_seconds(notes[:, 0]) * sample_rate).astype(np.int64)
        off = np.rint(to_seconds(notes[:, 0] + notes[:, 1]) * sample_rate).astype(np.int64)
        off = np.maximum(off, on + 1)
        count = len(notes)
        rows.append(np.stack([on, np.ones(count, np.int64), np.full(count, channel),
                              notes[:, 2], notes[:, 3]], axis=1))  # fmt: skip
        rows.append(np.stack([off, np.zeros(count, np.int64), np.full(count, channel),
                              notes[:, 2], np.zeros(count, np.int64)], axis=1))  # fmt: skip
    if not rows:
        return np.zeros((0, 5), np.int64), setup
    events = np.concatenate(rows)
    events = events[np.lexsort((events[:, 1], events[:, 0]))]
    return events, setup


def render_score(
    score: Score, soundfont: str | Path | None = None, sample_rate: int = 44100
) -> Rendered:
    """Render a score to stereo float samples at `sample_rate` (see the module doc)."""
    if sample_rate not in SAMPLE_RATES:
        raise AudioError(f"--sample-rate must be one of {SAMPLE_RATES}, got {sample_rate}")

    seconds = tick_seconds(score)(score.end_tick) if score.end_tick else 0.0
    most = limits().audio_s
    if seconds > most:  # before the buffer is made: a corrupt file would ask for terabytes
        raise AudioError(
            f"{seconds:,.0f} s of audio is over the limit of {most:,.0f} s "
            "(raise it with --limit audio_s=N)"
        )
    font = find_soundfont(soundfont)
    events, setup = _events(score, sample_rate)
    last_frame = int(events[-1, 0]) if len(events) else 0
    max_frames = last_frame + int(MAX_TAIL_S * sample_rate) if len(events) else 0
    out = np.zeros((max_frames + _BLOCK, 2), dtype=np.float32)
    synth = _Synth(font, sample_rate)
    try:
        for channel, drums, program in setup:
            if drums:
                synth.drums(channel, program)
            else:
                synth.program(channel, program)
        noteon, noteoff = synth.synth.noteon, synth.synth.noteoff
        frame = 0
        for at, on, channel, pitch, velocity in events.tolist():
            if at > frame:
                synth.write(out[frame:at])
                frame = at
            if on:
                noteon(channel, pitch, velocity)
            else:
                noteoff(channel, pitch)
        # The tail: release and reverb, until a block is silent (or MAX_TAIL_S).
        peak = float(np.abs(out[:frame]).max()) if frame else 0.0
        while frame < max_frames:
            block = out[frame : frame + _BLOCK]
            synth.write(block)
            frame += _BLOCK
            level = float(np.abs(block).max())
            peak = max(peak, level)
            if level <= peak * 10 ** (TAIL_FLOOR_DB / 20):
                break
    finally:
        synth.delete()
    samples = out[:frame]
    peak = float(np.abs(samples).max()) if frame else 0.0
    gain = 1.0
    if peak < SILENCE:  # no note sounded: nothing to normalise (only the synth's noise)
        samples = samples[:0]
    else:
        floor = peak * 10 ** (TAIL_FLOOR_DB / 20)
        loud = np.flatnonzero(np.abs(samples).max(axis=1) > floor)
        samples = samples[: loud[-1] + 1] if len(loud) else samples[:0]
        gain = 10 ** (HEADROOM_DB / 20) / peak
        samples = samples * np.float32(gain)
    return Rendered(np.ascontiguousarray(samples), sample_rate, str(font), score.note_count, gain)


def render_midi(
    source: str | Path | bytes,
    soundfont: str | Path | None = None,
    sample_rate: int = 44100,
    name: str | None = None,
) -> Rendered:
    """Render a MIDI file (path or bytes); MidiError names a bad file."""
    read = read_midi(source, name=name, sustain=True)
    try:
        return render_score(read.score, soundfont, sample_rate)
    except AudioError as err:
        message = str(err)
        if message.startswith(read.source_name):
            raise
        raise AudioError(f"{read.source_name}: {message}") from None


def encode_audio(rendered: Rendered, audio_format: str = "wav") -> bytes:
    """The samples as a WAV (16-bit PCM), FLAC (16-bit) or Ogg Vorbis file, in bytes."""
    if audio_format not in FORMATS:
        raise AudioError(f"--format must be one of {', '.join(FORMATS)}, got {audio_format!r}")
    pcm = np.clip(np.rint(rendered.samples * 32767.0), -32768, 32767).astype("<i2")
    if audio_format == "wav":
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(rendered.sample_rate)
            out.writeframes(pcm.tobytes())
        return buffer.getvalue()
    try:
        # soundfile (libsndfile) only for FLAC and Ogg
        import soundfile
    except (ImportError, OSError) as err:
        raise AudioError(f"{audio_format} needs the soundfile package ({err})") from None
    buffer = io.BytesIO()
    if audio_format == "flac":
        soundfile.write(buffer, pcm, rendered.sample_rate, format="FLAC", subtype="PCM_16")
    else:
        soundfile.write(buffer, rendered.samples, rendered.sample_rate, format="OGG",
                        subtype="VORBIS")  # fmt: skip
    return buffer.getvalue()


def audio_format_of(path: str | Path, given: str | None = None) -> str:
    """The format named by `given`, else by the file's suffix (.wav, .flac, .ogg)."""
    if given is not None:
        return given
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    raise AudioError(f"{path}: cannot tell the audio format from the suffix; pass --format")


__all__ = [
    "FORMATS",
    "AudioError",
    "Rendered",
    "audio_format_of",
    "encode_audio",
    "find_soundfont",
    "render_midi",
    "render_score",
    "tick_seconds",
]
