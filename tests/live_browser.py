"""Drive headless Chromium through the DevTools protocol over a pipe (standard library only).

Chromium started with ``--remote-debugging-pipe`` reads protocol commands on fd 3 and writes
answers and events on fd 4, each a JSON message ended by a NUL byte
(https://chromedevtools.github.io/devtools-protocol/). No driver package, no websocket, no port.
Every request the page makes is recorded (``Network.requestWillBeSent``), and so are console
errors, CSP violations and uncaught exceptions.

Conditions are awaited inside the page (a promise that checks on every animation frame and
gives up after ``timeout`` seconds), so the tests never sleep.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--hide-scrollbars", "--remote-debugging-pipe"]
WAIT_SCRIPT = """new Promise((resolve) => {
  const until = performance.now() + %d * 1000;
  const check = () => {
    let value;
    try { value = (%s); } catch (error) { value = undefined; }
    if (value || performance.now() > until) resolve(value === undefined ? null : value);
    else requestAnimationFrame(check);
  };
  check();
})"""


def find_browser() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    assert found, "the live page tests need headless Chromium (apt-get install chromium)"
    return found


class Chromium:
    """One headless Chromium with a fresh profile in ``profile``; use as a context manager."""

    def __init__(self, profile: Path, *, width: int = 1280, height: int = 1800) -> None:
        to_browser, from_us = os.pipe()  # we write commands; Chromium reads them on fd 3
        to_us, from_browser = os.pipe()  # Chromium writes on fd 4; we read

        def plug_pipes() -> None:  # in the child, before exec: the pipes become fds 3 and 4
            read_end, write_end = os.dup(to_browser), os.dup(from_browser)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [find_browser(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, close_fds=False, preexec_fn=plug_pipes)
        os.close(to_browser)
        os.close(from_browser)
        self.writer, self.reader = os.fdopen(from_us, "wb"), os.fdopen(to_us, "rb")
        self.ids = itertools.count(1)
        self.answers: dict[int, queue.Queue] = {}
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.width, self.height = width, height
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # drain it

    def _read(self) -> None:
        buffer = b""
        while chunk := self.reader.read1(1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    self.answers[message["id"]].put(message)
                else:
                    with self.lock:
                        self.events.append(message)
        for waiting in list(self.answers.values()):
            waiting.put({"error": {"message": "Chromium closed the pipe"}})

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        """Send one command and return its result (AssertionError on a protocol error)."""
        number = next(self.ids)
        self.answers[number] = queue.Queue()
        message = {"id": number, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.writer.write(json.dumps(message).encode() + b"\0")
        self.writer.flush()
        answer = self.answers[number].get(timeout=timeout)
        assert "error" not in answer, f"{method}: {answer['error']}"
        return answer["result"]

    def open(self, url: str) -> str:
        """A new tab showing ``url``, with network, console and log events recorded; returns
        the tab's session id."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                  "deviceScaleFactor": 1, "mobile": False}, session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        return session

    def evaluate(self, session: str, expression: str) -> object:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=session)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: int = 30) -> object:
        """The first truthy value of ``expression`` within ``timeout`` s (None if never)."""
        return self.evaluate(session, WAIT_SCRIPT % (timeout, expression))

    def requested_urls(self) -> list[str]:
        with self.lock:
            return [e["params"]["request"]["url"] for e in self.events
                    if e.get("method") == "Network.requestWillBeSent"]

    def problems(self) -> list[str]:
        """Uncaught exceptions, console errors and browser log errors (CSP violations...)."""
        with self.lock:
            events = list(self.events)
        found = []
        for event in events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("text", "exception"))
            elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"].get("text", ""))
        return found

    def screenshot(self, session: str) -> bytes:
        """A PNG of the whole page."""
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                         session=session)["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (AssertionError, OSError, queue.Empty):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.writer.close()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
