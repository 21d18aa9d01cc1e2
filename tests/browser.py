"""Helpers for end-to-end tests of the page in a real browser: Playwright driving the system's
Chromium (Debian's `chromium` package, see the Makefile's APT_TEST), never a browser that
Playwright downloads, because the tests must run offline.

Not a test module: a page test imports what it needs, e.g.

    from browser import browser_page, chromium_path, streamlit_server, wait_for_script
    from external import requires

    @requires("Chromium and Playwright", chromium_path(), "make setup installs both")
    def test_the_page_plays(tmp_path: Path) -> None:
        with streamlit_server(REPO / "app.py", {"MUSIC_LM_CACHE": str(tmp_path)}) as url, \
                browser_page(tmp_path) as page:
            page.goto(url)
            wait_for_script(page)
            ...

The browser blocks every request that leaves the machine (and lists them), so a page that would
need a CDN or a SoundFont download fails here rather than on an offline laptop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

REPO = Path(__file__).resolve().parent.parent
# --no-sandbox: Chromium's sandbox needs user namespaces, which containers and CI often lack.
# --disable-gpu: no GPU here. --disable-dev-shm-usage: Docker's 64 MB /dev/shm crashes tabs.
# --autoplay-policy: lets the MIDI player's AudioContext start without a real user gesture.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--autoplay-policy=no-user-gesture-required",
)
# The binary itself first: Debian's /usr/bin/chromium is a shell script that adds flags from
# /etc/chromium.d and execs /usr/lib/chromium/chromium. $MUSIC_LM_CHROMIUM overrides both.
CHROMIUM_CANDIDATES = (
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
)
HEALTH_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# Hosts the browser may reach; anything else is aborted and recorded.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def chromium_path() -> str | None:
    """The Chromium executable to drive, or None when there is none (or no Playwright)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None
    override = os.environ.get("MUSIC_LM_CHROMIUM")
    if override:
        if not os.access(override, os.X_OK):
            raise FileNotFoundError(f"MUSIC_LM_CHROMIUM={override!r} is not an executable file")
        return override
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium")


def free_port() -> int:
    """A TCP port that was free a moment ago (the server binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _streamlit_command() -> list[str]:
    # The venv's console script when the tests run from the venv; `-m streamlit` otherwise.
    script = Path(sys.executable).parent / "streamlit"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "streamlit"]


def _tail(log: IO[bytes], limit: int = 4000) -> str:
    log.flush()
    log.seek(0)
    text = log.read().decode("utf-8", "replace")
    return text[-limit:]


def _health(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
            return response.status == 200 and response.read().strip() == b"ok"
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class ServerURL(str):
    """The base URL of a running server, which also knows the server's process id (for
    benchmarks that read its CPU time)."""

    pid: int


@contextlib.contextmanager
def streamlit_server(
    app_path: Path | str,
    env: Mapping[str, str],
    port: int | None = None,
    *,
    timeout_s: float = HEALTH_TIMEOUT_S,
) -> Iterator[ServerURL]:
    """Runs `streamlit run` on `app_path` (from its folder, so its .streamlit/config.toml and
    static/ apply) with `env` added to this process's environment; yields the base URL once
    /_stcore/health answers "ok", and stops the server on exit.

    Raises RuntimeError with the server's output when it exits or is not healthy in time.
    """
    app = Path(app_path).resolve()
    if not app.is_file():
        raise FileNotFoundError(f"no Streamlit app at {app}")
    port = free_port() if port is None else port
    base_url = f"http://127.0.0.1:{port}"
    command = [
        *_streamlit_command(),
        "run",
        app.name,
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]
    # A file rather than a pipe: nobody reads the server's output while it runs, and a full
    # pipe would stall it.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            cwd=app.parent,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while not _health(base_url):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"streamlit exited with {process.returncode} before {base_url} was "
                        f"healthy; command {command}; output:\n{_tail(log)}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{base_url}/_stcore/health did not answer 'ok' within {timeout_s:g} s; "
                        f"output:\n{_tail(log)}"
                    )
                time.sleep(0.25)
            served = ServerURL(base_url)
            served.pid = process.pid
            yield served
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=STOP_TIMEOUT_S)


def _is_local(url: str) -> bool:
    if url.startswith(("data:", "blob:", "about:")):
        return True
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return host in LOCAL_HOSTS


@contextlib.contextmanager
def browser_page(
    artifact_dir: Path | str,
    *,
    name: str = "page",
    viewport: tuple[int, int] = (1280, 900),
    blocked: list[str] | None = None,
) -> Iterator[Page]:
    """Headless Chromium (with `CHROMIUM_ARGS`) and one page in it, offline: requests to any host
    but this machine are aborted and appended to `blocked` when a list is given.

    On exit, even after a failure, saves `<artifact_dir>/<name>.png` (the full page) and
    `<name>-console.txt` (console messages, page errors, blocked requests) for a post-mortem.
    """
    with browser_sessions(artifact_dir, 1, name=name, viewport=viewport, blocked=blocked) as pages:
        yield pages[0]


@contextlib.contextmanager
def browser_sessions(
    artifact_dir: Path | str,
    count: int,
    *,
    name: str = "session",
    viewport: tuple[int, int] = (1280, 900),
    blocked: list[str] | None = None,
) -> Iterator[list[Page]]:
    """`count` pages in one headless Chromium, each in a browser context of its own (as
    separate users: no shared cookies or storage), all offline as in `browser_page`.

    On exit each page leaves `<name>.png` and `<name>-console.txt` (one page) or
    `<name>-<k>.png` and `<name>-<k>-console.txt` (k = 1..count) in `artifact_dir`.
    """
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError(
            "no Chromium to drive: install Debian's chromium package (make system) and "
            "playwright (the dev extra), or set MUSIC_LM_CHROMIUM"
        )
    artifacts = Path(artifact_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    refused = blocked if blocked is not None else []
    logs: list[list[str]] = [[] for _ in range(count)]

    def offline(log: list[str]) -> Callable[[Route], None]:
        def route_one(route: Route) -> None:
            url = route.request.url
            if _is_local(url):
                route.continue_()
            else:
                refused.append(url)
                log.append(f"blocked: {url}")
                route.abort("internetdisconnected")

        return route_one

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            pages = []
            for log in logs:
                context = browser.new_context(
                    viewport={"width": viewport[0], "height": viewport[1]}
                )
                page = context.new_page()
                page.on(
                    "console",
                    lambda message, log=log: log.append(f"{message.type}: {message.text}"),
                )
                page.on("pageerror", lambda error, log=log: log.append(f"pageerror: {error}"))
                page.route("**/*", offline(log))
                pages.append(page)
            try:
                yield pages
            finally:
                for index, (page, log) in enumerate(zip(pages, logs, strict=True), start=1):
                    stem = name if count == 1 else f"{name}-{index}"
                    # A crashed or closed page cannot be photographed; the log still helps, and
                    # the test's own exception must not be replaced by this one.
                    with contextlib.suppress(Exception):
                        page.screenshot(path=str(artifacts / f"{stem}.png"), full_page=True)
                    (artifacts / f"{stem}-console.txt").write_text("\n".join(log) + "\n")
        finally:
            browser.close()


def wait_for_script(page: Page, timeout_ms: float = 60_000) -> None:
    """Waits until the Streamlit script has finished its first run after `page.goto`.

    The app root's data-test-script-state is "initial" until the first run starts, so this does
    not pass too early after a page load. After a widget interaction it may still read
    "notRunning" before the rerun begins: wait for the element the rerun should show instead.
    """
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms
    )


def takes_drawn(page: Page, variants: int) -> bool:
    """Every take of the session's last run is drawn: its heading, its audio (the seed's player
    is one more) and its downloads (the last of which is "Settings JSON")."""
    return page.evaluate(
        """variants => {
            const json = [...document.querySelectorAll('[data-testid="stDownloadButton"]')]
                .filter(b => b.innerText.trim() === 'Settings JSON').length;
            const headings = [...document.querySelectorAll('h3')]
                .filter(h => h.innerText.startsWith('Take ')).length;
            return json >= variants && headings >= variants
                && document.querySelectorAll('audio').length >= variants + 1;
        }""",
        variants,
    )


def page_problems(page: Page) -> list[str]:
    """What a user must never see: an exception box, a traceback, a generic failure."""
    found = []
    if page.locator('[data-testid="stException"]').count():
        found.append("an exception box")
    text = page.locator("body").inner_text()
    for sign in ("Traceback", "Something went wrong", 'File "/'):
        if sign in text:
            found.append(sign)
    return found
