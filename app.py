"""music_lm's page: a seed in, constrained continuations out, to hear, see, compare, edit
and download.

UI only: the work is done by music_lm functions the CLI also calls; the session's state
(seed, takes, undo, the background job) lives in `music_lm.page`.
Run with `streamlit run app.py` (`make run`).

MUSIC_LM_MODEL names the model offered as the default (the tests put a tiny one there);
MUSIC_LM_RUNS the folder searched for trained runs (default: runs/); MUSIC_LM_EXAMPLES the
folder of example seeds (default: midi_in/). MUSIC_LM_PAGE_DEBUG=1
lets an unexpected error through as Streamlit's own error box with its traceback, instead of
one line (the traceback then goes to the server's log only).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import streamlit as st

from music_lm.generation.constraints import LOOP_GUARD_TOKENS, SCALES, ConstraintError
from music_lm.generation.options import header_from_options, parse_meter
from music_lm.generation.seeds import SUSTAIN_SEEDS
from music_lm.generation.settings import GenerationError
from music_lm.midi.gm import GM_PROGRAMS
from music_lm.page.history import History
from music_lm.page.jobs import GenerationJob, generate_takes
from music_lm.page.limits import LIMITS
from music_lm.page.models import model_choices, run_metrics
from music_lm.page.options import (
    KEY_SCALE_LABEL,
    OPTION_ERRORS,
    SEED_KEY_LABEL,
    SEED_STYLE_LABEL,
    FormValues,
    generation_options,
    redraw_constraints,
)
from music_lm.page.process import warm_up
from music_lm.page.redraw import (
    bars_words,
    redraw_summary,
    redraw_takes,
    region_beats,
    take_bar_count,
    take_model,
    track_choices,
    tracks_words,
)
from music_lm.page.seeds import Seed, SeedError, seed_from_header, seed_from_midi, seed_summary
from music_lm.page.takes import Take, check_text, edited_take, render_wav
from music_lm.render.export import ExportError
from music_lm.tokens.vocab import VOCAB

ROOT = Path(__file__).parent
EXAMPLES = Path(os.environ.get("MUSIC_LM_EXAMPLES", ROOT / "midi_in"))
RUNS = Path(os.environ.get("MUSIC_LM_RUNS", ROOT / "runs"))
DEFAULT_MODEL = os.environ.get("MUSIC_LM_MODEL", "default")
STYLES = [VOCAB.values[i] for i in VOCAB.ranges["style"]]
METERS = ["4/4", "3/4", "2/4", "6/8", "9/8", "12/8", "5/4", "7/8", "2/2", "3/8"]
KEYS = [VOCAB.tokens[i][4:] for i in VOCAB.ranges["key"]]  # "C:major", "F#:minor", ...
INSTRUMENTS = ["drums", *GM_PROGRAMS]
POLL_S = 0.5  # the progress panel's refresh while a job generates
WAIT_POLL_S = 1.0  # and while it waits in line (each refresh is a script run on the server)
GONE_GRACE_S = 5.0  # a session disconnected this long (its tab closed) gives up its job
LOG = logging.getLogger("music_lm.page")
PLAYER_HEIGHT_PX = 260
DEFAULT_SEED_BARS = 4
DEFAULT_ADAPT_STEPS = 20  # bench/RESULTS.md, "Adaptation to the seed"
ADAPT_SECONDS_PER_STEP = 0.15


# ---- session state ----


def history() -> History:
    """This browser session's history (Streamlit keeps session_state per session)."""
    if "history" not in st.session_state:
        st.session_state.history = History()
    return st.session_state.history


def running_job() -> GenerationJob | None:
    return st.session_state.get("job")


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def loaded_model(path: str, attention: bool):
    """A model shared by the sessions; one with attention weights is kept apart, because
    capturing attention switches its kernel."""
    from music_lm.model.folder import load_model

    return load_model(path)


@st.cache_data(max_entries=32, show_spinner=False)
def _wav(midi: bytes, name: str) -> tuple[bytes | None, str | None]:
    """(WAV, None) or (None, why not): a failure is cached too, so a machine without a
    soundfont does not try FluidSynth again on every rerun."""
    from music_lm.render.audio import AudioError

    try:
        return render_wav(midi, name), None
    except AudioError as err:
        return None, str(err)


def play(midi: bytes, name: str) -> bytes | None:
    """An audio player for a MIDI file (rendered once), or a warning saying why there is none."""
    wav, problem = _wav(midi, name)
    if wav is None:
        st.warning(f"No audio: {problem}")
    else:
        st.audio(wav, format="audio/wav")  # WAV bytes: played as rendered, not re-normalised
    return wav


@st.cache_data(max_entries=32, show_spinner=False)
def example_seed(name: str, sustain: bool) -> Seed:
    return seed_from_midi((EXAMPLES / name).read_bytes(), name, "example", sustain=sustain)


def model_path(choice: str) -> str:
    return DEFAULT_MODEL if choice == "default" else choice


# ---- the seed ----


def seed_widgets() -> Seed | None:
    """The seed the user chose: an example, an upload, or settings only."""
    source = st.radio("Seed", ["Example", "Upload", "Settings only"], horizontal=True)
    if source != "Settings only":
        # the same reading as `music-lm generate --sustain/--no-sustain`, and its default
        sustain = st.checkbox(
            "Apply the sustain pedal",
            value=SUSTAIN_SEEDS,
            key="sustain",
            help="Notes sound on while the pedal (CC64) is down, as the file is heard: the "
            "takes have no pedal, so without it a pedalled piano's held notes are cut short.",
        )
    if source == "Example":
        names = sorted(p.name for p in EXAMPLES.glob("*.mid"))
        if not names:
            st.info(f"No examples in {EXAMPLES}: upload a MIDI file.")
            return None
        return example_seed(st.selectbox("Example seed", names), sustain)
    if source == "Upload":
        uploaded = st.file_uploader(
            f"MIDI file (up to {LIMITS.upload_bytes // 2**20} MB, {LIMITS.seed_bars} bars)",
            type=["mid", "midi"],
        )
        if uploaded is None:
            return None
        # Read once per upload, kept in this session's memory only (never on disk).
        cached = st.session_state.get("upload")
        if cached is None or cached[0] != (uploaded.file_id, sustain):
            try:
                made: Seed | str = seed_from_midi(uploaded.getvalue(), uploaded.name,
                                                  sustain=sustain)  # fmt: skip
            except SeedError as err:
                made = str(err)
            st.session_state.upload = cached = ((uploaded.file_id, sustain), made)
        if isinstance(cached[1], str):
            st.error(cached[1])
            return None
        return cached[1]
    return settings_seed()


def settings_seed() -> Seed | None:
    cols = st.columns(5)
    style = cols[0].selectbox("Style", STYLES, index=STYLES.index("none"))
    tempo = cols[1].number_input("Tempo (BPM)", 20.0, 300.0, 110.0, step=1.0)
    meter = cols[2].selectbox("Meter", METERS)
    key = cols[3].selectbox("Key", ["none", *KEYS], index=1 + KEYS.index("C:major"))
    names = cols[4].multiselect("Instruments", INSTRUMENTS, default=["acoustic-grand-piano"])
    if not names:
        st.info("Choose at least one instrument.")
        return None
    try:
        header = header_from_options(style, tempo, parse_meter(meter),
                                     None if key == "none" else key, names)  # fmt: skip
    except (ConstraintError, GenerationError) as err:
        st.error(str(err))
        return None
    return seed_from_header(header)


def seed_section() -> Seed | None:
    """Choose the seed and its bars; show its summary, piano roll and audio."""
    st.header("Seed")
    hist = history()
    if hist.seed is not None:
        st.info(f"Continuing from {hist.seed.name}.")
        if st.button("Back to the seed of my choice"):
            hist.forget_seed()
            st.rerun()
        # Drawn still, folded away: widgets not drawn lose their values, and "Back" and
        # Undo must find the seed the user chose as it was.
        with st.expander("The seed of my choice", expanded=False):
            seed_widgets()
        seed = hist.seed
    else:
        seed = seed_widgets()
    if seed is None:
        return None
    if seed.bars:
        keep = st.number_input(
            "Seed bars to keep",
            min_value=0,
            max_value=seed.bars,
            value=seed.bars if seed.origin == "take" else min(seed.bars, DEFAULT_SEED_BARS),
            help="The continuation starts after these bars (0: the header only).",
            key=f"seed-bars-{seed.name}",
        )
        seed = seed.cut(int(keep))
    show_seed(seed)
    return seed


def show_seed(seed: Seed) -> None:
    summary = seed_summary(seed)
    cols = st.columns(6)
    cols[0].metric("Bars", summary["bars"])
    cols[1].metric("Notes", summary["notes"])
    cols[2].metric("Tempo", f"{summary['tempo_bpm']:g} BPM")
    cols[3].metric("Meter", summary["meter"])
    cols[4].metric("Key", summary["key"])
    cols[5].metric("Length", f"{summary['seconds']:g} s")
    st.caption("Tracks: " + ", ".join(summary["tracks"]) + f" · style: {summary['style']}")
    if summary["notes"]:
        from music_lm.midi.write import write_midi
        from music_lm.render.pianoroll import pianoroll_figure

        with st.expander("Seed: piano roll and audio", expanded=True):
            st.plotly_chart(pianoroll_figure(seed.score, title=seed.name), key="seed-roll")
            play(write_midi(seed.score), seed.name)


# ---- the options ----


def options_form(seed: Seed | None) -> dict | None:
    """The generation options, in a form: changing one never aborts a running generation.
    Drawn even without a seed, so that the options keep their values meanwhile. Returns
    the arguments of `generate_takes` when Generate was pressed."""
    choices = model_choices([RUNS])
    labels = {c.label: c.path for c in choices}
    tracks = [] if seed is None else seed.score.tracks
    seed_tracks = sorted({"drums" if t.is_drum else t.instrument_name for t in tracks})
    with st.form("options"):
        st.header("Options")
        top = st.columns([3, 1, 1, 1])
        models = top[0].multiselect(
            "Models",
            list(labels),
            default=[choices[0].label],
            help="The shipped model, a run or its checkpoints. Several are mixed.",
        )
        mix = top[1].selectbox("Mix", ["weights", "schedule"], help="With several models.")
        weights = top[2].text_input(
            "Mix weights", "", placeholder="equal", help="With Mix: weights, e.g. 0.3,0.7."
        )
        style = top[3].selectbox("Style", [SEED_STYLE_LABEL, *STYLES])
        row = st.columns(4)
        bars = row[0].number_input("Bars to generate", 1, 64, 4)
        variants = row[1].number_input("Variants", 1, 4, 2)
        temperature = row[2].slider("Temperature (first → last new bar)", 0.1, 2.0, (1.0, 1.0))
        top_k = row[3].number_input("Top-k (0: off)", 0, len(VOCAB), 0)
        row = st.columns(4)
        top_p = row[0].slider("Top-p", 0.05, 1.0, 0.95)
        min_p = row[1].slider("Min-p", 0.0, 0.5, 0.0)
        random = row[2].checkbox("Random seed", value=True, help="Off: use the number.")
        number = row[3].number_input("Seed number", 0, 2**31 - 1, 1234)
        st.subheader("Constraints")
        row = st.columns(4)
        key = row[0].selectbox("Keep to a key", ["off", SEED_KEY_LABEL, *KEYS])
        scale = row[1].selectbox("Scale", [KEY_SCALE_LABEL, *SCALES])
        instruments = row[2].multiselect(
            "Instruments that may play", seed_tracks, help="Empty: all of the seed's."
        )
        polyphony = row[3].number_input("Most notes at once (0: any)", 0, 64, 0)
        row = st.columns(4)
        pitch_range = row[0].text_input("Pitch range", "", placeholder="C3-C6")
        instrument_ranges = row[1].checkbox("Playable ranges", value=True)
        attention = row[2].checkbox(
            "Keep attention",
            help=f"For the Attention view: the first variant's, up to {LIMITS.attention_bars} "
            "new bars (it takes memory).",
        )
        locks = row[3].multiselect(
            "Locked", ["tempo", "meter", "key"], default=["tempo", "meter", "key"],
            help="No tempo, meter or key change in the new bars.",
        )  # fmt: skip
        chords, chord_strict = chord_widgets("options", "Chords", "Chord tones only")
        adapt = adaptation_widgets()
        decoding = decoding_widgets()
        submitted = st.form_submit_button("Generate", type="primary")
    if not submitted:
        return None
    if seed is None:
        st.error("Choose a seed first.")
        return None
    if not models:
        st.error("Choose a model.")
        return None
    form = FormValues(
        models=tuple(model_path(labels[m]) for m in models), mix=mix, mix_weights=weights,
        style=style, bars=int(bars), variants=int(variants),
        temperature=(float(temperature[0]), float(temperature[1])), top_k=int(top_k),
        top_p=float(top_p), min_p=float(min_p), random_seed=None if random else int(number),
        key=key, scale=scale, instruments=tuple(instruments), max_polyphony=int(polyphony),
        pitch_range=pitch_range, instrument_ranges=instrument_ranges, attention=attention,
        locks=tuple(locks), chords=chords, chord_strict=chord_strict, adapt_steps=adapt,
        decoding=decoding,
    )  # fmt: skip
    try:
        return generation_options(seed, form)
    except OPTION_ERRORS as err:
        st.error(str(err))
        return None


def chord_widgets(form: str, chords_label: str, strict_label: str) -> tuple[str, bool]:
    """The chord chart box and "Chord tones only", as `--chords` and `--chord-strict` take
    them (the box's words are read by the same function, so a bad chord fails as there)."""
    row = st.columns([3, 1])
    chords = row[0].text_input(
        chords_label,
        "",
        placeholder="C G Am F",
        key=f"{form}-chords",
        help="One chord per bar, cycling; | splits a bar (C|G Am: C then G in bar 1, A "
        "minor in bar 2). Melodic notes on the beat keep to the chord.",
    )
    strict = row[1].checkbox(
        strict_label,
        key=f"{form}-chord-strict",
        help="Every note keeps to the chord, off-beat passing notes too.",
    )
    return chords, strict


def adaptation_widgets() -> int:
    """The "Adapt to the seed" checkbox and its steps: the steps of `generate(adapt=...)`."""
    row = st.columns(4)
    adapt = row[0].checkbox(
        "Adapt to the seed",
        help="First fine-tune a copy of the model on the seed and its transpositions (about "
        f"{ADAPT_SECONDS_PER_STEP} s a step on two cores): the continuation keeps closer to "
        "the seed's own instruments, drums and patterns. The model itself is not changed.",
    )
    steps = row[1].number_input("Adaptation steps", 1, LIMITS.adapt_steps, DEFAULT_ADAPT_STEPS)
    return int(steps) if adapt else 0


def decoding_widgets() -> dict:
    """The decoding defaults that keep band MIDI sane, as `constraints_from_options` takes
    them; the form opens with the command line's defaults."""
    with st.expander("Decoding"):
        row = st.columns(5)
        unisons = row[0].checkbox("Allow unisons", help="A pitch twice at one onset on a track.")
        drum_keys = row[1].selectbox(
            "Drum keys", ["gm", "seed", "any"],
            help="gm: General MIDI's kit; seed: the keys the seed's drums play; any.",
        )  # fmt: skip
        drum_length = row[2].text_input(
            "Drum length", "auto", help="auto (the seed's), any, or quarter notes such as 1/4."
        )
        hold = row[3].checkbox("Ring past the end", help="Notes may sound past the last bar.")
        loop_guard = row[4].number_input(
            "Loop guard (0: off)", 0, 4096, LOOP_GUARD_TOKENS,
            help="The longest run of one repeated block of tokens.",
        )  # fmt: skip
    return {"unisons": unisons, "drum_keys": drum_keys, "drum_length": drum_length,
            "hold_past_end": hold, "loop_guard": int(loop_guard)}  # fmt: skip


def start_job(seed: Seed, options: dict) -> None:
    hist = history()
    try:
        loaded = [loaded_model(p, options["attention"]) for p in options["models"]]
    except Exception as err:  # ModelError and friends: one line
        st.error(f"Cannot load the model: {err}")
        return
    first = hist.reserve(options["variants"])
    st.session_state.job = GenerationJob(
        generate_takes,
        alive=session_alive(),
        seed=seed,
        first_number=first,
        run=hist.new_run(),
        parent=seed.take,
        loaded=loaded,
        **options,
    )


def session_alive():
    """A callable telling whether this browser session is still connected, for the job it
    starts: a tab closed for GONE_GRACE_S gives up its place in line or its generation
    (a reconnect within the grace keeps it). Always True outside `streamlit run`."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    if context is None or not runtime.exists():
        return lambda: True
    server, session_id = runtime.get_instance(), context.session_id
    gone_since: float | None = None

    def alive() -> bool:
        nonlocal gone_since
        if server.is_active_session(session_id):
            gone_since = None
            return True
        gone_since = gone_since or time.monotonic()
        return time.monotonic() - gone_since < GONE_GRACE_S

    return alive


# ---- the running job ----


def collect_job() -> None:
    """Move a finished job's takes into the history (or show why it ended)."""
    job = running_job()
    if job is None or not job.done:
        return
    del st.session_state["job"]
    if job.takes is not None:
        history().add_run(job.takes)
        st.session_state.last_message = None
    else:
        st.session_state.last_message = ("stopped" if job.stopped else "error", job.error)


def progress_panel() -> None:
    """Progress of the running job, refreshed every POLL_S; a Stop button."""
    job = running_job()
    if job is None:
        return
    if job.done:
        st.rerun()  # the whole page: the results are ready
    progress = job.progress
    place = job.place
    if place is None and st.session_state.get("job_was_waiting"):
        st.rerun()  # its turn came: the whole page, to poll at the generating pace
    if place is not None:
        estimate = job.wait_estimate_s
        about = f", about {estimate:.0f} s" if estimate is not None else ""
        st.progress(0.0, text=f"Waiting for other sessions' generations: {ordinal(place)} in "
                    f"line{about}. Yours starts when it is first.")  # fmt: skip
    elif progress is None:
        st.progress(0.0, text=f"{job.stage}…")
    elif progress.phase == "adapting":
        st.progress(
            progress.fraction,
            text=f"Adapting to the seed: step {progress.adapt_step} of {progress.adapt_steps} · "
            f"{progress.seconds:.1f} s; then sampling",
        )
    else:
        st.progress(
            progress.fraction,
            text=f"{job.stage}: {progress.bars_done} of {progress.bars} bars · "
            f"{progress.new_tokens} tokens · {progress.tokens_per_s:,.0f} tokens/s",
        )
    if st.button("Stop", disabled=not job.can_stop):
        job.stop()


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# ---- the results ----


def show_takes(takes: list[Take]) -> None:
    if not takes:
        st.info("Press Generate: the takes appear here, side by side.")
        return
    columns = st.columns(len(takes))
    for column, take in zip(columns, takes, strict=True):
        with column:
            show_take(take)
    redraw_panel(takes)


def show_take(take: Take) -> None:
    from music_lm.page.player import midi_player_html, player_available
    from music_lm.render.pianoroll import pianoroll_figure

    st.subheader(take.label)
    record = take.record
    redrawn = redraw_summary(take)
    notes = [redrawn or f"{len(take.ids) - take.seed_length} new tokens from bar "
             f"{take.continuation_bar}"]  # fmt: skip
    if record.get("tokens_per_s"):
        notes.append(f"{record['tokens_per_s']:,.0f} tokens/s")
    if take.edited:
        notes = [f"an edit of take {take.parent}"]
    if record.get("retries"):
        notes.append(f"{record['retries']} retries")
    if record.get("post_check", "ok") != "ok":
        notes.append(f"kept although it {record['post_check']}")
    st.caption(" · ".join(notes))
    region = region_beats(take)  # a redraw marks its region, not a seed
    figure = pianoroll_figure(
        take.score,
        region_beats=region,
        continuation_at=None if region else take.continuation_tick or None,
    )
    st.plotly_chart(
        figure,
        key=f"roll-{take.number}",
        on_select="rerun",  # a note clicked here is picked in the Attention view
        selection_mode="points",
    )
    # One player per take: FluidSynth's WAV (the GM soundfont the downloads sound like). The
    # in-browser MIDI player, with its own synth, only stands in when there is no WAV.
    if take.wav is not None:
        st.audio(take.wav, format="audio/wav")
    else:
        st.warning(f"No audio: {take.audio_error}")
        if player_available():
            st.iframe(midi_player_html(take.files[".mid"], height_px=PLAYER_HEIGHT_PX),
                      height=PLAYER_HEIGHT_PX)  # fmt: skip
    downloads(take)
    if st.button("Continue from this", key=f"continue-{take.number}"):
        history().continue_from(take.number)
        st.rerun()


def redraw_panel(takes: list[Take]) -> None:
    """Draw part of a shown take anew: some of its tracks (or new ones) over a range of its
    bars, the rest kept note for note (`music_lm.infill`, in the same line as Generate)."""
    st.subheader("Redraw")
    by_number = {t.number: t for t in takes}
    number = st.selectbox("Take to redraw", list(by_number), key="redraw-take",
                          format_func=lambda n: by_number[n].label)  # fmt: skip
    take = by_number[number]
    bar_count = take_bar_count(take)
    with st.form(f"redraw-{number}"):
        row = st.columns([2, 3, 1])
        if bar_count > 1:
            first, last = row[0].slider("Bars to redraw", 1, bar_count, (1, bar_count),
                                        key=f"redraw-bars-{number}")  # fmt: skip
        else:  # a slider needs two ends
            first = last = 1
            row[0].caption("Bars to redraw: bar 1, the take's only bar")
        chosen = row[1].multiselect(
            "Tracks to redraw",
            track_choices(take),
            key=f"redraw-tracks-{number}",
            help="The take's tracks, numbered as in its token text, or an instrument to add as "
            "a new track. The other tracks stay note for note.",
        )
        variants = row[2].number_input("Takes to draw", 1, 4, 1, key=f"redraw-variants-{number}")
        chords, chord_strict = chord_widgets(
            f"redraw-{number}", "Chords over the redrawn bars", "Redrawn notes: chord tones only"
        )
        pressed = st.form_submit_button("Redraw", type="primary")
    if not pressed:
        return
    if not chosen:
        st.error("Choose a track to redraw, or an instrument to add.")
        return
    try:
        constraints = redraw_constraints(last - first + 1, chords, chord_strict)
    except OPTION_ERRORS as err:
        st.error(str(err))
        return
    if running_job() is not None:
        st.warning("A generation is running: stop it or wait for it first.")
        return
    start_redraw(take, tracks_words(chosen), bars_words(first, last), constraints, int(variants))


def start_redraw(take: Take, tracks: list[str], bars: str, constraints, variants: int) -> None:
    hist = history()
    model = take_model(take, DEFAULT_MODEL)
    try:
        loaded = [loaded_model(model, False)]
    except Exception as err:  # ModelError and friends: one line
        st.error(f"Cannot load the model: {err}")
        return
    st.session_state.job = GenerationJob(
        redraw_takes, alive=session_alive(), take=take, tracks=tracks, bars=bars,
        first_number=hist.reserve(variants), run=hist.new_run(), models=[model], loaded=loaded,
        constraints=constraints, variants=variants,
    )  # fmt: skip
    st.rerun()  # the progress panel, above the results


def downloads(take: Take) -> None:
    """Six downloads. MusicXML is made on request: music21 takes a while, and it cannot
    write every piece (a note held far past the last bar), which deserves a message."""
    xml_key = f"musicxml-{take.number}"
    xml = st.session_state.get(xml_key)  # bytes, or the reason there are none
    files = [
        ("MIDI", take.files[".mid"], ".mid", "audio/midi"),
        ("DAW MIDI", take.daw_midi, "-daw.mid", "audio/midi"),
        ("WAV", take.wav, ".wav", "audio/wav"),
        ("MusicXML", xml, ".musicxml", "application/vnd.recordare.musicxml+xml"),
        ("Token text", take.files[".txt"], ".txt", "text/plain"),
        ("Settings JSON", take.files[".json"], ".json", "application/json"),
    ]
    columns = st.columns(3)
    for index, (label, data, suffix, mime) in enumerate(files):
        column = columns[index % 3]
        if label == "MusicXML" and not isinstance(data, bytes):
            if isinstance(data, str):
                column.caption(f"No MusicXML: {data}")
            elif column.button("Make MusicXML", key=f"make-{xml_key}"):
                try:
                    st.session_state[xml_key] = take.musicxml()
                except ExportError as err:
                    st.session_state[xml_key] = str(err)
                st.rerun()
            continue
        if data is None:  # no audio without a soundfont
            continue
        column.download_button(
            label,
            data,
            file_name=f"{take.stem}{suffix}",
            mime=mime,
            key=f"{label}-{take.number}",
            on_click="ignore",  # a download does not re-run the page
        )


# ---- the token text view ----


def token_view() -> None:
    hist = history()
    if not hist.takes:
        st.info("Generate first: each take's token text can be read and edited here.")
        return
    numbers = sorted(hist.takes, reverse=True)
    if st.session_state.get("token-take") not in numbers:  # the first time: the shown take
        st.session_state["token-take"] = hist.shown[0] if hist.shown else numbers[0]
    # Keyed, so it stays on the take being edited when a run ends or the history is used.
    number = st.selectbox(
        "Take", numbers, key="token-take", format_func=lambda n: hist.takes[n].label
    )
    take = hist.takes[number]
    text = st.text_area(
        "Token text of the take",
        take.text,
        height=320,
        key=f"text-{number}",
        help="Checked against the grammar as you go (Ctrl+Enter or click away to check).",
    )
    problem = check_text(text)
    if problem is not None:
        st.error(f"Invalid token text: {problem}")
        return
    if text.split() == take.text.split():
        st.success(f"Valid: {len(text.split())} tokens (unchanged)")
        return
    edited = edited_take(take, text, number=0)  # numbered when saved
    st.success(f"Valid: {len(text.split())} tokens; the edit is rendered below")
    from music_lm.render.pianoroll import pianoroll_figure

    figure = pianoroll_figure(edited.score, continuation_at=edited.continuation_tick or None)
    st.plotly_chart(figure, key=f"edit-roll-{number}")
    wav = play(edited.files[".mid"], f"edit of take {number}")
    if st.button("Save the edit as a new take"):
        saved = edited_take(take, text, number=hist.reserve(1))
        saved.wav = wav  # the same notes: the same audio
        if wav is None:
            saved.audio_error = _wav(edited.files[".mid"], f"edit of take {number}")[1]
        hist.add_edit(saved)
        st.rerun()


# ---- the attention view ----


def attention_view() -> None:
    from music_lm.page.attention import (
        attention_figure,
        attention_summary_figure,
        generated_notes,
        note_attention,
    )

    hist = history()
    numbers = [n for n in sorted(hist.takes, reverse=True) if hist.takes[n].attention is not None]
    if not numbers:
        st.info(
            "Tick “Keep attention” in the options and generate: the first variant's "
            "attention is kept for this view."
        )
        return
    number = st.selectbox("Take with attention", numbers, format_func=lambda n: hist.takes[n].label)
    take = hist.takes[number]
    notes = generated_notes(take.ids, take.seed_length)
    if not notes:
        st.info("This take has no new notes.")
        return
    key = f"attention-note-{take.number}"
    picked = note_picked_on_roll(take, notes)
    # A keyed widget ignores a new `index`: a click on the roll sets its value instead,
    # once per click (the selection stays in the roll's state across reruns).
    if picked is not None and st.session_state.get(f"{key}-clicked") != picked:
        st.session_state[key] = st.session_state[f"{key}-clicked"] = picked
    index = st.selectbox(
        "Generated note",
        range(len(notes)),
        format_func=lambda i: notes[i].label,
        help="Or click a note on the take's piano roll in Results.",
        key=key,
    )
    note = notes[index]
    weights = note_attention(take.attention, take.ids, take.seed_length, note)
    st.plotly_chart(attention_summary_figure(weights, note), key="attention-summary")
    st.plotly_chart(attention_figure(weights, note), key="attention-heads")


def note_picked_on_roll(take: Take, notes) -> int | None:
    """The index in `notes` of the generated note clicked on the take's piano roll, if any."""
    from music_lm.page.attention import note_at_roll_point

    selection = st.session_state.get(f"roll-{take.number}")
    points = (selection or {}).get("selection", {}).get("points", [])
    if not points:
        return None
    curve, index = points[0].get("curve_number", 0), points[0].get("point_index", 0)
    return note_at_roll_point(take.score, notes, curve, index)


# ---- the training view ----


def training_view() -> None:
    import plotly.graph_objects as go

    from music_lm.model.folder import ModelError, resolve_model_path

    choices = model_choices([RUNS])
    choice = st.selectbox("Run", choices, format_func=lambda c: c.label)
    try:
        folder = Path(resolve_model_path(model_path(choice.path)))
    except ModelError as err:  # a broken model folder: one line, as Generate says it
        st.warning(f"No training view: {err}")
        return
    rows = run_metrics(folder)
    if rows:
        fig = go.Figure()
        for column, name in (("train_loss", "train loss"), ("val_loss", "validation loss")):
            points = [(r["step"], r[column]) for r in rows if r.get(column) is not None]
            if points:
                steps, values = zip(*points, strict=True)
                mode = "lines" if column == "train_loss" else "lines+markers"
                fig.add_trace(go.Scatter(x=steps, y=values, name=name, mode=mode))
        fig.update_layout(xaxis_title="step", yaxis_title="loss (nats per token)", height=380)
        st.plotly_chart(fig, key="loss-curves")
        last = rows[-1]
        shown = {k: v for k, v in last.items() if isinstance(v, (int, float))}
        st.caption(f"Last logged step: {last.get('step')}")
        st.dataframe([{"metric": k, "value": v} for k, v in shown.items()], hide_index=True)
    else:
        st.info(f"{choice.label}: no training curves here (no metrics.jsonl).")
    if (folder / "eval.json").is_file():
        with st.expander("Evaluation on the test split (eval.json)"):
            st.json(json.loads((folder / "eval.json").read_text(encoding="utf-8")))


# ---- the history ----


def history_sidebar() -> None:
    hist = history()
    st.sidebar.header("History")
    if st.sidebar.button("Undo", disabled=not hist.can_undo, help="Back to what was shown before."):
        hist.undo()
        st.rerun()
    if not hist.takes:
        st.sidebar.caption("The takes of this session appear here.")
    for number in sorted(hist.takes, reverse=True):
        take = hist.takes[number]
        mark = " ◀" if number in hist.shown else ""
        if st.sidebar.button(take.label + mark, key=f"show-{number}"):
            hist.show(number)
            st.rerun()


# ---- the page ----


def main() -> None:
    st.set_page_config(page_title="music_lm", layout="wide")
    st.title("music_lm")
    st.caption(
        "Continue a seed with a GPT-2 whose every output keeps the grammar and your "
        "constraints; hear it, see it, edit its token text, take it to your DAW."
    )
    with st.spinner("Starting the page (the first visit after a restart takes a few seconds)…"):
        warm_up()
    try:
        page()
    except Exception as err:  # st.rerun/st.stop are BaseExceptions and pass through
        if os.environ.get("MUSIC_LM_PAGE_DEBUG"):
            raise  # the tests (and a developer) see the exception itself
        LOG.exception("the page failed")  # the traceback stays in the server's log
        st.error(
            f"Something went wrong on the server ({type(err).__name__}). Press Undo in the "
            "sidebar if your last change caused it, or reload the page to start afresh."
        )


def page() -> None:
    collect_job()
    history_sidebar()
    seed = seed_section()
    options = options_form(seed)
    if options is not None:
        if running_job() is not None:
            st.warning("A generation is running: stop it or wait for it first.")
        else:
            start_job(seed, options)
    job = running_job()
    every = None
    if job is not None:  # a waiting job is looked at less often: its line moves slowly
        waiting = job.place is not None
        every = WAIT_POLL_S if waiting else POLL_S
        st.session_state.job_was_waiting = waiting
    st.fragment(progress_panel, run_every=every)()
    message = st.session_state.get("last_message")
    if message:
        kind, text = message
        (st.warning if kind == "stopped" else st.error)(text)
    results, tokens, attention, training = st.tabs(
        ["Results", "Token text", "Attention", "Training"]
    )
    with results:
        show_takes(history().shown_takes)
    with tokens:
        token_view()
    with attention:
        attention_view()
    with training:
        training_view()


main()
