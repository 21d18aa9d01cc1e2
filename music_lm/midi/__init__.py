"""Stage 1, MIDI: Standard MIDI Files <-> scores (notes, tempi, meters, keys, tracks).

`score` holds the score types, `read` and `write` read and write MIDI bytes (no mido at
run time: mido is the reference the tests compare with), `pairing` pairs note-ons with
note-offs (first-in first-out, or as a synthesizer plays a re-struck key), `sustain` applies
the pedal,
`gm` holds the General MIDI tables and pitch and key names, `instruments` the playable
range of each GM program. Pure Python; imports only `music_lm.errors` and `music_lm.limits`.
"""
