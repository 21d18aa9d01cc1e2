"""`music-lm render | pianoroll | export`: hear it, see it, take it to a DAW."""

from __future__ import annotations

from pathlib import Path

import typer

from music_lm.cli.root import (
    DEFAULT_OUTPUT,
    FORCE,
    app,
    batch_target,
    debug_on,
    finish_batch,
)
from music_lm.files import (
    MIDI_SUFFIXES,
    BatchResult,
    find_inputs,
    output_for,
    run_batch,
    single_output,
)

MIDI_SOURCE_HELP = "A MIDI file or a folder of them (recursive)."


def _outputs_of(source: Path, output: Path | None, suffix: str):
    """Inputs and where each one's output goes (as for encode)."""
    inputs = find_inputs(source, MIDI_SUFFIXES, exclude=output)
    return inputs, lambda path: batch_target(source, path, output, suffix)


@app.command()
def render(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help=MIDI_SOURCE_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output audio file or folder (default: midi_out/)."
    ),
    soundfont: Path | None = typer.Option(
        None, "--soundfont", help="A .sf2 soundfont (default: FluidR3_GM, else TimGM6mb)."
    ),
    sample_rate: int = typer.Option(44100, "--sample-rate", help="Samples per second."),
    audio_format: str | None = typer.Option(
        None, "--format", help="wav, flac or ogg (default: from -o's suffix, else wav)."
    ),
    force: bool = FORCE,
) -> None:
    """MIDI -> audio through FluidSynth and a General MIDI soundfont."""
    # the command's stage loads when it runs, so --help and the codec commands stay fast
    from music_lm.render.audio import (
        FORMATS,
        AudioError,
        audio_format_of,
        encode_audio,
        render_midi,
    )

    fmt = audio_format or (
        audio_format_of(output) if output is not None and output.suffix else "wav"
    )
    if fmt not in FORMATS:  # before any work
        raise AudioError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    inputs, target = _outputs_of(source, output, f".{fmt}")

    def job(path: Path) -> list:
        rendered = render_midi(path, soundfont, sample_rate)
        typer.echo(f"{path}: {rendered.seconds:.1f} s of audio, {rendered.notes} notes", err=True)
        return [(target(path), encode_audio(rendered, fmt))]

    finish_batch(
        run_batch(inputs, job, BatchResult(), force, errors=(AudioError,), debug=debug_on(ctx)),
        "rendered",
    )


@app.command()
def pianoroll(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help=MIDI_SOURCE_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output .png file or folder (default: midi_out/)."
    ),
    continuation_from: int | None = typer.Option(
        None,
        "--continuation-from",
        help="Shade the bars before this one as the seed "
        "(default: where a generated file's continuation marker is).",
    ),
    width: int = typer.Option(1600, "--width", help="Width in pixels."),
    height: int = typer.Option(900, "--height", help="Height in pixels."),
    force: bool = FORCE,
) -> None:
    """MIDI -> a piano-roll PNG: a colour per track, drums in their own lane, bar lines."""
    # the command's stage loads when it runs, so --help and the codec commands stay fast
    from music_lm.render.pianoroll import PianoRollError, midi_pianoroll

    inputs, target = _outputs_of(source, output, ".png")

    def job(path: Path) -> list:
        png = midi_pianoroll(path, continuation_from, width_px=width, height_px=height)
        return [(target(path), png)]

    finish_batch(
        run_batch(inputs, job, BatchResult(), force, errors=(PianoRollError,), debug=debug_on(ctx)),
        "drew",
    )


@app.command()
def export(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help=MIDI_SOURCE_HELP),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Output .mid file or folder (default: midi_out/)."
    ),
    type0: bool = typer.Option(False, "--type0", help="Format 0: every event in one track."),
    musicxml_path: Path | None = typer.Option(
        None, "--musicxml", help="Also write MusicXML (a file, or a folder for a folder)."
    ),
    force: bool = FORCE,
) -> None:
    """MIDI -> DAW-ready MIDI (and MusicXML for notation programs)."""
    # the command's stage loads when it runs, so --help and the codec commands stay fast
    from music_lm.render.export import ExportError, daw_midi, export_midi, musicxml

    inputs, target = _outputs_of(source, output, ".mid")
    single = source.is_file()

    def job(path: Path) -> list:
        midi, read = export_midi(path)
        out = [(target(path), daw_midi(read, midi_format=0) if type0 else midi)]
        if musicxml_path is not None:
            xml_target = (
                single_output(path, musicxml_path, DEFAULT_OUTPUT, ".musicxml")
                if single
                else output_for(source, path, musicxml_path, ".musicxml")
            )
            # from the format 1 file: music21 wants a track per part
            out.append((xml_target, musicxml(midi, str(path))))
        return out

    finish_batch(
        run_batch(inputs, job, BatchResult(), force, errors=(ExportError,), debug=debug_on(ctx)),
        "exported",
    )
