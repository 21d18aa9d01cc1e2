"""General MIDI and MIDI's own facts: channels, program and drum names, pitch and key names.

Pure data and pure functions; the token vocabulary (`music_lm.tokens.vocab`) builds its
instrument, drum, pitch and key families from these tables.
"""

from __future__ import annotations

MAX_TRACKS = 16
MAX_MELODIC_TRACKS = 15  # MIDI has 16 channels and channel 10 is for drums
DRUM_CHANNEL = 9  # channel 10, counted from one

# General MIDI program names (program number = index), as lowercase slugs.
GM_PROGRAMS: tuple[str, ...] = (
    "acoustic-grand-piano", "bright-acoustic-piano", "electric-grand-piano",
    "honky-tonk-piano", "electric-piano-1", "electric-piano-2", "harpsichord",
    "clavinet", "celesta", "glockenspiel", "music-box", "vibraphone", "marimba",
    "xylophone", "tubular-bells", "dulcimer", "drawbar-organ", "percussive-organ",
    "rock-organ", "church-organ", "reed-organ", "accordion", "harmonica",
    "tango-accordion", "acoustic-guitar-nylon", "acoustic-guitar-steel",
    "electric-guitar-jazz", "electric-guitar-clean", "electric-guitar-muted",
    "overdriven-guitar", "distortion-guitar", "guitar-harmonics", "acoustic-bass",
    "electric-bass-finger", "electric-bass-pick", "fretless-bass", "slap-bass-1",
    "slap-bass-2", "synth-bass-1", "synth-bass-2", "violin", "viola", "cello",
    "contrabass", "tremolo-strings", "pizzicato-strings", "orchestral-harp",
    "timpani", "string-ensemble-1", "string-ensemble-2", "synth-strings-1",
    "synth-strings-2", "choir-aahs", "voice-oohs", "synth-choir", "orchestra-hit",
    "trumpet", "trombone", "tuba", "muted-trumpet", "french-horn", "brass-section",
    "synth-brass-1", "synth-brass-2", "soprano-sax", "alto-sax", "tenor-sax",
    "baritone-sax", "oboe", "english-horn", "bassoon", "clarinet", "piccolo",
    "flute", "recorder", "pan-flute", "blown-bottle", "shakuhachi", "whistle",
    "ocarina", "lead-1-square", "lead-2-sawtooth", "lead-3-calliope",
    "lead-4-chiff", "lead-5-charang", "lead-6-voice", "lead-7-fifths",
    "lead-8-bass-lead", "pad-1-new-age", "pad-2-warm", "pad-3-polysynth",
    "pad-4-choir", "pad-5-bowed", "pad-6-metallic", "pad-7-halo", "pad-8-sweep",
    "fx-1-rain", "fx-2-soundtrack", "fx-3-crystal", "fx-4-atmosphere",
    "fx-5-brightness", "fx-6-goblins", "fx-7-echoes", "fx-8-sci-fi", "sitar",
    "banjo", "shamisen", "koto", "kalimba", "bagpipe", "fiddle", "shanai",
    "tinkle-bell", "agogo", "steel-drums", "woodblock", "taiko-drum",
    "melodic-tom", "synth-drum", "reverse-cymbal", "guitar-fret-noise",
    "breath-noise", "seashore", "bird-tweet", "telephone-ring", "helicopter",
    "applause", "gunshot",
)  # fmt: skip

# General MIDI percussion key map (channel 10), note number -> slug.
GM_DRUMS: dict[int, str] = {
    35: "acoustic-bass-drum", 36: "bass-drum-1", 37: "side-stick",
    38: "acoustic-snare", 39: "hand-clap", 40: "electric-snare",
    41: "low-floor-tom", 42: "closed-hi-hat", 43: "high-floor-tom",
    44: "pedal-hi-hat", 45: "low-tom", 46: "open-hi-hat", 47: "low-mid-tom",
    48: "hi-mid-tom", 49: "crash-cymbal-1", 50: "high-tom", 51: "ride-cymbal-1",
    52: "chinese-cymbal", 53: "ride-bell", 54: "tambourine", 55: "splash-cymbal",
    56: "cowbell", 57: "crash-cymbal-2", 58: "vibraslap", 59: "ride-cymbal-2",
    60: "hi-bongo", 61: "low-bongo", 62: "mute-hi-conga", 63: "open-hi-conga",
    64: "low-conga", 65: "high-timbale", 66: "low-timbale", 67: "high-agogo",
    68: "low-agogo", 69: "cabasa", 70: "maracas", 71: "short-whistle",
    72: "long-whistle", 73: "short-guiro", 74: "long-guiro", 75: "claves",
    76: "hi-wood-block", 77: "low-wood-block", 78: "mute-cuica", 79: "open-cuica",
    80: "mute-triangle", 81: "open-triangle",
}  # fmt: skip

PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# Key signatures as MIDI stores them: sharps (+) or flats (-), and the mode.
MAJOR_KEYS = ("Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#")
MINOR_KEYS = ("Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#", "C#", "G#", "D#", "A#")


def pitch_to_name(pitch: int) -> str:
    """MIDI note number -> scientific pitch name with sharps: 60 -> 'C4', 0 -> 'C-1'."""
    if not 0 <= pitch <= 127:
        raise ValueError(f"MIDI pitch must be in 0..127, got {pitch}")
    return f"{PITCH_CLASS_NAMES[pitch % 12]}{pitch // 12 - 1}"


def name_to_pitch(name: str) -> int:
    """Scientific pitch name -> MIDI note number: 'C4' -> 60, 'Db4' -> 61."""
    letter = name[:1].upper()
    rest = name[1:]
    if letter not in "CDEFGAB" or not rest:
        raise ValueError(f"not a pitch name: {name!r}")
    alter = 0
    while rest[:1] in ("#", "b"):
        alter += 1 if rest[0] == "#" else -1
        rest = rest[1:]
    try:
        octave = int(rest)
    except ValueError:
        raise ValueError(f"not a pitch name: {name!r}") from None
    pitch = PITCH_CLASS_NAMES.index(letter) + alter + 12 * (octave + 1)
    if not 0 <= pitch <= 127:
        raise ValueError(f"pitch {name!r} is outside MIDI's 0..127")
    return pitch
