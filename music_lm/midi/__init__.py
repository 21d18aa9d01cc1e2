"""Stage 1, MIDI: Standard MIDI Files <-> scores (notes, tempi, meters, keys, tracks).

`score` holds the score types, `io` reads and writes MIDI bytes (no mido at run
time: mido is the reference the tests compare with), `gm` the General MIDI tables,
`instruments` the playable range of each GM program. Pure Python; imports only
`music_lm.errors` and `music_lm.limits`.
"""
