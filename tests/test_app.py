"""The minimal page, driven through Streamlit's AppTest (no browser)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _run() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception
    return app


def test_example_shows_summary_report_and_valid_text() -> None:
    app = _run()
    assert app.selectbox[0].value.endswith(".mid")
    code = "\n".join(block.value for block in app.code)
    assert "round trip verified" in code
    assert "kept exactly" in code
    assert app.text_area[0].value.startswith("piece ")
    assert any("Valid:" in s.value for s in app.success)


def test_edited_invalid_text_names_the_bad_token() -> None:
    app = _run()
    app.text_area[0].set_value("piece style:none tempo:120 ts:4/4 inst:flute bar @0 C4 end")
    app.button[0].click().run()
    assert not app.exception
    assert any("token 7 'C4'" in e.value for e in app.error)


def test_every_example_can_be_chosen() -> None:
    app = _run()
    for option in app.selectbox[0].options:
        app.selectbox[0].select(option).run()
        assert not app.exception
        assert not app.error, option
