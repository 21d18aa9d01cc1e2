"""Stage 7, render: what a score sounds and looks like outside the model: audio
(FluidSynth and a GM soundfont), piano rolls (matplotlib, plotly) and DAW and
MusicXML exports.
"""
