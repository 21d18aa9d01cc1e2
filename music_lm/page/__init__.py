"""Stage 8, page: what the Streamlit page (`app.py`) needs beyond the CLI's functions. No
Streamlit in here: app.py draws what these modules hold, and the tests drive them directly.

limits (the page's own limits) -> seeds -> takes -> history (undo) -> jobs (the background
generation and the line of them over all sessions); models (the model choices and a run's
metrics), process (the heavy imports, once), attention (attention maps), player (the
in-browser MIDI player).
"""
