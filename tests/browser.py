"""A page opened in headless Chromium, driven over the DevTools protocol on a pipe (no network, no
websocket): what its <img> elements loaded, what it logged as errors, and a full-page screenshot.

    python tests/browser.py report/index.html shot.png     (prints what `render` found)

Chromium writes the protocol's messages as JSON, each ended by a NUL byte, to its fd 4, and reads
them from its fd 3 (--remote-debugging-pipe).
"""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without the networking flags Chromium tries Google's hosts at every start; this machine has none.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)
WIDTH_PX = 1400
IMAGES = (
    "JSON.stringify([...document.images].map(i => "
    "({src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth})))"
)


@dataclass
class Page:
    images: list[dict]  # {src, complete, width: naturalWidth} of every <img>
    errors: list[str]  # console errors, uncaught exceptions, failed loads
    height: int  # of the whole page, in CSS pixels


class DevTools:
    """One Chromium and its protocol: send(method, params, session) -> the result."""

    def __init__(self, profile: str):
        to_chromium, self._out = os.pipe()
        self._in, from_chromium = os.pipe()

        def onto_3_and_4():  # by way of fds >= 10, so that neither overwrites the other
            reads, writes = (
                fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chromium, from_chromium)
            )
            os.dup2(reads, 3)
            os.dup2(writes, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(3, 4),  # kept open past the exec (subprocess closes the others)
            preexec_fn=onto_3_and_4,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chromium)
        os.close(from_chromium)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _receive(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._receive()
            if event.get("method") == method:
                return event
            self.events.append(event)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._out)
        os.close(self._in)


def _errors(events: list[dict]) -> list[str]:
    """What the page logged as an error: console.error, an uncaught exception, a failed load."""
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(f"{params['entry']['text']} {params['entry'].get('url', '')}".strip())
    return errors


def render(html: Path, screenshot: Path) -> Page:
    """Open the page, wait for it to load, and save a screenshot of all of it."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        tools = DevTools(profile)
        try:
            target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})
            session = session["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                tools.send(f"{domain}.enable", session=session)
            metrics = {"width": WIDTH_PX, "height": 900, "deviceScaleFactor": 1, "mobile": False}
            tools.send("Emulation.setDeviceMetricsOverride", metrics, session)
            tools.send("Emulation.setScrollbarsHidden", {"hidden": True}, session)
            tools.send("Page.navigate", {"url": html.resolve().as_uri()}, session)
            tools.wait_for("Page.loadEventFired")
            found = tools.send("Runtime.evaluate", {"expression": IMAGES}, session)
            height = tools.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            height = int(height["height"])
            tools.send("Emulation.setDeviceMetricsOverride", {**metrics, "height": height}, session)
            shot = tools.send("Page.captureScreenshot", {"format": "png"}, session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            images = json.loads(found["result"]["value"])
            return Page(images, _errors(tools.events), height)
        finally:
            tools.close()


if __name__ == "__main__":
    page = render(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{len(page.images)} images, {sum(i['width'] > 0 for i in page.images)} loaded")
    print(f"height {page.height} px; errors: {page.errors or 'none'}")
