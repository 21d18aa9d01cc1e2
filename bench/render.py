"""Benchmark audio rendering: music_lm.render.audio against pretty_midi's fluidsynth() and the
fluidsynth command-line player, on one core, the same soundfont and sample rate.

    .venv/bin/python bench/render.py

Files: the four examples of midi_in/ and a 3-minute band piece (flute, bass, piano,
drums; written here). Goal: at least 30x real time on one core. Figures (best of 3) go to
the "## Rendering" section of RESULTS.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from train import device_name, write_section  # noqa: E402

from music_lm.midi.score import Note, Score, TempoChange, TimeSignature, Track  # noqa: E402
from music_lm.midi.write import write_midi  # noqa: E402
from music_lm.render.audio import _Synth, encode_audio, find_soundfont, render_midi  # noqa: E402

SECTION = "## Rendering"
RATE = 44100


def band_piece(minutes: float = 3.0) -> bytes:
    """Flute, bass, piano chords and drums at 120 bpm for `minutes`."""
    ppq, quarters = 480, int(minutes * 120)
    flute = [Note(i * ppq, ppq, 72 + (i * 5) % 12, 90) for i in range(quarters)]
    bass = [Note(i * 2 * ppq, 2 * ppq, 36 + (i * 7) % 12, 100) for i in range(quarters // 2)]
    piano = [Note(i * 4 * ppq, 4 * ppq, p, 70) for i in range(quarters // 4) for p in (60, 64, 67)]
    drums = [
        Note(i * ppq // 2, ppq // 4, (36, 42, 38, 42)[i % 4], 100) for i in range(quarters * 2)
    ]
    tracks = [Track(73, False, flute), Track(33, False, bass), Track(0, False, piano),
              Track(0, True, drums)]  # fmt: skip
    score = Score(ppq, tracks, [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)])
    return write_midi(score)


def best(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    import pretty_midi

    font = find_soundfont()
    files = {p.name: p.read_bytes() for p in sorted((ROOT / "midi_in").glob("*.mid"))}
    files["band, 3 minutes (written here)"] = band_piece()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            path = Path(tmp) / "in.mid"
            path.write_bytes(data)
            audio_s = render_midi(data, sample_rate=RATE).seconds
            ours = best(lambda d=data: encode_audio(render_midi(d, sample_rate=RATE)))
            pm = pretty_midi.PrettyMIDI(str(path))
            theirs = best(lambda pm=pm: pm.fluidsynth(fs=RATE, synthesizer=str(font)))
            out = Path(tmp) / "out.wav"
            cli = best(lambda p=path, o=out: subprocess.run(
                ["fluidsynth", "-ni", "-q", "-r", str(RATE), "-F", str(o), str(font), str(p)],
                check=True, capture_output=True))  # fmt: skip
            rows.append((name, audio_s, ours, theirs, cli))
            print(f"{name}: {audio_s:.1f} s audio; ours {ours:.3f} s, pretty_midi {theirs:.3f} s,"
                  f" fluidsynth CLI {cli:.3f} s", flush=True)  # fmt: skip
    setup = best(lambda: _Synth(font, RATE).delete())
    lines = [
        SECTION,
        "",
        "`bench/render.py`: MIDI to a 44.1 kHz stereo WAV, one core, soundfont "
        f"{font.name}; best of 3; each time includes reading the MIDI, the synth's setup "
        "(soundfont load) and, for ours, normalising, trimming and WAV encoding. "
        "Anchors in the same run: pretty_midi's `fluidsynth()` (one synth per instrument, "
        "float samples) and the `fluidsynth` command-line player (`-F`, C, writes a file). "
        "Goal: ours ≥ 30× real time.",
        "",
        f"**{device_name()}**, {time.strftime('%Y-%m-%d')}; one synth's setup (FluidR3 load): "
        f"{setup * 1000:.0f} ms",
        "",
        "| file | audio s | ours × real time | pretty_midi × real time | fluidsynth CLI × real "
        "time | ours' speed / pretty_midi's | ours' speed / CLI's |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, audio_s, ours, theirs, cli in rows:
        lines.append(
            f"| {name} | {audio_s:.1f} | {audio_s / ours:.0f}× | {audio_s / theirs:.0f}× "
            f"| {audio_s / cli:.0f}× | {theirs / ours:.2f}× | {cli / ours:.2f}× |"
        )
    lines.append("")
    write_section("\n".join(lines))


if __name__ == "__main__":
    main()
