"""Fuzz targets for the two parsers that take outside input: MIDI bytes and token text.

Each target is a script for atheris (`python fuzz/midi_target.py -runs=N corpus/`) and a
module whose `check(data)` the tests call. `fuzz/run.py` runs both (`make fuzz`).
"""
