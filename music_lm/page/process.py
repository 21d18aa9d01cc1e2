"""What the page's server process does once, before any session draws: import everything
heavy, on one thread and under a lock (`warm_up`).
"""

from __future__ import annotations

import threading

_WARM_UP = threading.Lock()
_warmed = False


def warm_up() -> None:
    """Import, once and on one thread, everything heavy the page's threads use, before any
    session draws. Streamlit runs each session's script on a thread of its own, and Plotly
    imports pandas lazily when it builds its first figure: three sessions doing that at once
    on a cold server crashed on a partly imported pandas. Later calls return at once."""
    global _warmed
    with _WARM_UP:
        if _warmed:
            return
        # the point of the warm-up: the heavy imports, once, under the lock
        import matplotlib

        matplotlib.use("Agg")  # no display on a server; set before pyplot is imported
        import matplotlib.pyplot
        import pandas  # noqa: F401
        import plotly.graph_objects as go
        import plotly.io
        import pyarrow  # noqa: F401  (st.dataframe)
        import torch  # noqa: F401
        import transformers  # noqa: F401
        from transformers import GPT2LMHeadModel  # noqa: F401  (transformers' lazy modules)

        # The page's own modules that use them, so no two sessions import one at once either.
        import music_lm.generation.budget
        import music_lm.generation.constraints
        import music_lm.generation.models
        import music_lm.generation.options
        import music_lm.generation.outputs
        import music_lm.generation.polyphony
        import music_lm.generation.processor
        import music_lm.generation.runner
        import music_lm.generation.sampling
        import music_lm.generation.seeds
        import music_lm.generation.settings
        import music_lm.generation.state
        import music_lm.model.folder
        import music_lm.page.attention
        import music_lm.page.player
        import music_lm.render.audio
        import music_lm.render.export
        import music_lm.render.pianoroll  # noqa: F401

        # A figure through the same path st.plotly_chart takes, so that Plotly's own lazy
        # imports (its validators, pandas' extension types) happen here too.
        plotly.io.to_json(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])), validate=True)
        _warmed = True


__all__ = [
    "warm_up",
]
