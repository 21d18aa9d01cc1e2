"""Stage 8, page: what the Streamlit page (`app.py`) needs beyond the CLI's functions:
per-session takes and history, the shared generation queue, attention maps and the
in-browser MIDI player.
"""
