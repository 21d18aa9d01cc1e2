"""Stage 1, MIDI: Standard MIDI Files <-> scores (notes, tempi, meters, keys, tracks).

`score` holds the score types, `read` and `write` read and write MIDI bytes (no mido at
run time: mido is the reference the tests compare with), `sustain` applies the pedal,
`gm` holds the General MIDI tables and pitch and key names, `instruments` the playable
range of each GM program. Pure Python; imports only `music_lm.errors` and `music_lm.limits`.
"""
