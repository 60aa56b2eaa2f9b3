"""The demo page's camera mode (crates/fovea-server/static/index.html) in a
real headless Chromium whose fake camera plays a REAL photo, against a real
`fovea serve` and its WebSocket endpoint GET /api/v1/stream.

The fake camera is a .y4m made with the system ffmpeg from a photo in
../shared (the photo rescaled to 640×480, looped); Chromium runs with
--use-fake-ui-for-media-stream --use-fake-device-for-media-stream
--use-file-for-fake-video-capture=<it>. The page must show live top-5 bars
whose top label is what POST /api/v1/predict answers for the same photo, a
status line with answers/s, latency, dropped frames and the model/version,
send frames at the chosen rate only, and on Stop close the socket and
release the camera. Errors are shown: a stream refused before the upgrade
and the server's limits closing it (servers of their own started with
--max-stream-duration-secs 2 and --max-frame-bytes 2048: close codes 1008
and 1009 with the server's reason) for real; camera permission denied, no
camera, a failed frame and each close code with its reason simulated in the
page (getUserMedia overridden, the socket routed by Playwright). Screenshots:
target/ui/demo-camera-1280x720.png and demo-camera-390x844.png.

Needs what tests/ui/test_demo_page.py needs, plus ffmpeg (apt-get install
ffmpeg): missing, the tests skip with the reason, or fail when
FOVEA_REQUIRE_FFMPEG=1 (CI).

    FOVEA_BIN=target/debug/fovea .venv/bin/python -m pytest tests/ui/test_camera.py -q -p no:cacheprovider
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_demo_page import (  # noqa: E402  (the same server, browser binary and helpers)
    CHROMIUM, MODELS, PHOTOS_DIR, SCREENSHOTS, TIMEOUT_MS, TOP_K, api_predict, boxes_overlap, open_page,
    require_chromium, server, stop, upload,  # noqa: F401  (server: the module-scoped fovea serve fixture)
)
from test_demo_page import wait_until as wait_for_process  # noqa: E402
from fovea_env import fovea_binary, free_port, ort_environment, require_shared  # noqa: E402

# The photo the fake camera shows: the API answers it with a clear top-1
# (cat, about 0.5 against 0.2 for the runner-up), and rescaled to 640×480 it
# is still a cat.
PHOTO_NAME = "tabby_kitten.jpg"
STATS = re.compile(r"(\d+(?:\.\d+)?) answers/s")
PERCENT = re.compile(r"\d+\.\d%")



# ----------------------------------------------------------------- helpers

def require_ffmpeg() -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        reason = "no ffmpeg on PATH to make the fake camera's video (apt-get install ffmpeg)"
        if os.environ.get("FOVEA_REQUIRE_FFMPEG") == "1":
            pytest.fail(f"FOVEA_REQUIRE_FFMPEG=1 but {reason}")
        print(f"skipping the camera tests: {reason}")
        pytest.skip(reason)
    return ffmpeg


def camera_photo() -> Path:
    require_shared(PHOTOS_DIR)
    path = PHOTOS_DIR / PHOTO_NAME
    require_shared(path)
    return path


# What the page knows about its camera: every stream getUserMedia gave it
# (to check that Stop ends their tracks), and when it sent each binary frame.
RECORD_STREAMS = """
(() => {
  window.__cameraStreams = [];
  window.__framesSent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (data instanceof Blob) {
      const frame = { at: performance.now(), type: data.type, size: data.size, magic: null };
      data.slice(0, 3).arrayBuffer().then(b => { frame.magic = [...new Uint8Array(b)]; });
      window.__framesSent.push(frame);
    } else if (typeof data !== 'string') {
      window.__framesSent.push({ at: performance.now(), type: 'binary', size: data.byteLength, magic: null });
    }
    return send.call(this, data);
  };
  const md = navigator.mediaDevices;
  if (!md || !md.getUserMedia) return;
  const original = md.getUserMedia.bind(md);
  md.getUserMedia = async constraints => {
    const stream = await original(constraints);
    window.__cameraStreams.push(stream);
    return stream;
  };
})();
"""


def refuse_camera(name: str, message: str) -> str:
    return f"""
navigator.mediaDevices.getUserMedia = async () => {{ throw new DOMException({json.dumps(message)}, {json.dumps(name)}); }};
"""


class Sockets:
    """Every WebSocket the page opens, as Playwright sees it on the wire."""

    def __init__(self, page):
        self.all = []
        page.on("websocket", self._opened)

    def _opened(self, ws):
        entry = {"ws": ws, "url": ws.url, "received": [], "closed": False}
        ws.on("framereceived", lambda payload: entry["received"].append(payload))
        ws.on("close", lambda _: entry.update(closed=True))
        self.all.append(entry)

    def answers(self, entry) -> list:
        return [json.loads(p) for p in entry["received"] if isinstance(p, str)]


def camera_mode(page) -> None:
    page.click("#modes button[data-mode=camera]")
    assert page.get_attribute("#modes button[data-mode=camera]", "aria-pressed") == "true"
    assert page.get_attribute("#modes button[data-mode=image]", "aria-pressed") == "false"
    assert page.locator("#mode-camera").is_visible()
    assert not page.locator("#mode-image").is_visible()


def live(page) -> dict:
    """Waits until the page shows live bars and a non-zero answers/s (or
    gives up: the camera stopped with an error); returns what it shows, read
    at one instant."""
    page.wait_for_function(
        """() => {
             const stats = document.querySelector('#camera-stats').textContent;
             const m = /(\\d+(?:\\.\\d+)?) answers\\/s/.exec(stats);
             const failed = document.querySelector('#error').textContent !== ''
                            && document.querySelector('#camera-toggle').textContent === 'Start camera';
             return failed || (m && Number(m[1]) > 0 && document.querySelectorAll('#bars li').length === %d);
           }""" % TOP_K, timeout=TIMEOUT_MS)
    now = shown(page)
    assert now["button"] == "Stop camera", f"the camera stopped: {now}"
    return now


def shown(page) -> dict:
    return page.evaluate("""() => ({
        labels: [...document.querySelectorAll('#bars li .label')].map(e => e.textContent),
        percents: [...document.querySelectorAll('#bars li .pct')].map(e => e.textContent),
        status: document.querySelector('#status').textContent,
        meta: document.querySelector('#meta').textContent,
        error: document.querySelector('#error').textContent,
        stats: document.querySelector('#camera-stats').textContent,
        button: document.querySelector('#camera-toggle').textContent,
    })""")


def camera_released(page) -> bool:
    return page.evaluate("""() => window.__cameraStreams.length > 0
        && window.__cameraStreams.every(s => s.getTracks().every(t => t.readyState === 'ended'))
        && document.querySelector('#camera-video').srcObject === null""")


def wait_until(page, check, timeout=30.0, step_ms=100) -> bool:
    """Polls `check` while the page runs; Playwright delivers its events
    (WebSocket frames, routed sockets) only inside its own calls, hence
    page.wait_for_timeout rather than time.sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        page.wait_for_timeout(step_ms)
    return check()


@contextmanager
def limited_server(*flags):
    """A `fovea serve` of its own with stream limit flags; yields its base URL."""
    workdir = Path(tempfile.mkdtemp(prefix="fovea-ui-limits-"))
    port = free_port()
    log_path = workdir / "fovea.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(fovea_binary()), "serve", "--models", str(MODELS), "--http", f"127.0.0.1:{port}", "--grpc", "off",
             *flags], stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=ort_environment())
        base = f"http://127.0.0.1:{port}"
        try:
            timeout = float(os.environ.get("FOVEA_STARTUP_TIMEOUT", "180"))
            if not wait_for_process(lambda: requests.get(f"{base}/readyz", timeout=2).status_code == 200,
                                    timeout, proc):
                pytest.fail(f"fovea serve {' '.join(flags)} did not become ready (exit code {proc.poll()}); log:\n"
                            f"{log_path.read_text(errors='replace')[-4000:]}")
            yield base
        finally:
            stop(proc)
            shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def fake_camera(tmp_path_factory) -> Path:
    """A 3 s, 10 fps, 640×480 .y4m of the photo: what the fake camera plays (looped)."""
    ffmpeg = require_ffmpeg()
    photo = camera_photo()
    out = tmp_path_factory.mktemp("fake-camera") / "camera.y4m"
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-loop", "1", "-i", str(photo), "-t", "3",
                    "-vf", "scale=640:480,fps=10", "-pix_fmt", "yuv420p", str(out)],
                   check=True, timeout=120)
    assert out.stat().st_size > 640 * 480, out
    return out


@pytest.fixture(scope="module")
def camera_browser(fake_camera):
    sync_playwright = require_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={fake_camera}",
        ])
        try:
            yield browser
        finally:
            browser.close()


def open_camera_page(browser, server, width=1280, height=720, script=RECORD_STREAMS, before=None):
    def prepare(page):
        page.add_init_script(script)
        if before:
            before(page)
    return open_page(browser, server, width, height, before=prepare)


@pytest.fixture
def camera_page(camera_browser, server):
    context, page, errors = open_camera_page(camera_browser, server)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


# ----------------------------------------------------------------- tests

def test_the_camera_streams_live_answers_that_match_the_api_and_stop_releases_it(server, camera_page):
    page = camera_page
    path = camera_photo()
    api = api_predict(server, path.read_bytes(), path.name)
    assert api.status_code == 200, api.text
    expected = api.json()
    sockets = Sockets(page)

    camera_mode(page)
    assert page.input_value("#camera-rate") == "5"
    assert page.locator("#camera-rate").evaluate("e => e.labels.length") >= 1
    page.click("#camera-toggle")
    first = live(page)
    assert first["error"] == "", first
    assert first["button"] == "Stop camera"
    assert len(sockets.all) == 1, [s["url"] for s in sockets.all]
    entry = sockets.all[0]
    # The stream asks for the picker's model and version, top 5, freshest frames.
    url = entry["url"]
    assert url.startswith("ws://") and "/api/v1/stream?" in url, url
    for part in (f"model={page.input_value('#model')}", f"version={page.input_value('#version')}",
                 f"top_k={TOP_K}", "policy=latest"):
        assert part in url, (part, url)

    # Let it run a moment: several answers, every one about the photo.
    assert wait_until(page, lambda: len(sockets.answers(entry)) >= 8, timeout=60), sockets.answers(entry)
    page.wait_for_timeout(1000)
    now = shown(page)
    assert now["labels"][0] == expected["class"], (now, expected)
    assert expected["class"] in now["status"], now
    assert len(now["labels"]) == len(now["percents"]) == TOP_K, now
    assert all(PERCENT.fullmatch(p) for p in now["percents"]), now
    model = f"{expected['model']} v{expected['version']}"
    assert model in now["meta"] and model in now["stats"], now
    rate = float(STATS.search(now["stats"]).group(1))
    assert 0 < rate <= 5 + 1, now
    assert re.search(r"last frame \d+ ms \(server \d+\.\d ms\)", now["stats"]), now
    assert re.search(r"\b\d+ dropped\b", now["stats"]), now

    # What came over the wire: JPEG frames at the chosen rate (not a flood),
    # answers in order, each the photo's class.
    # (Chromium does not report Blob sends to Playwright: the page's send is watched instead.)
    sent = page.evaluate("window.__framesSent")
    assert sent and all(f["type"] == "image/jpeg" and 1000 < f["size"] < 1024 * 1024 for f in sent), sent[:3]
    assert all(f["magic"] == [0xFF, 0xD8, 0xFF] for f in sent[:-1]), sent[:3]
    span = (sent[-1]["at"] - sent[0]["at"]) / 1000
    assert span > 1 and len(sent) - 1 <= 5 * span * 1.2 + 1, (len(sent), span)
    answers = sockets.answers(entry)
    assert all("error" not in a for a in answers), answers[:3]
    assert [a["frame"] for a in answers] == sorted({a["frame"] for a in answers}), answers
    assert {a["class"] for a in answers} == {expected["class"]}, [(a["frame"], a["class"], a["score"]) for a in answers]
    assert all(a["model"] == expected["model"] and a["version"] == expected["version"] for a in answers)

    # The video fits its frame.
    frame, video = page.locator("#preview-box").bounding_box(), page.locator("#camera-video").bounding_box()
    assert video["width"] > 100 and video["x"] >= frame["x"] - 0.5
    assert video["x"] + video["width"] <= frame["x"] + frame["width"] + 0.5, (frame, video)
    assert page.evaluate("document.querySelector('#camera-video').videoWidth") == 640
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "demo-camera-1280x720.png"), full_page=True)

    # Stop: the socket closes, nothing more arrives, the camera is released.
    page.click("#camera-toggle")
    assert wait_until(page, lambda: entry["closed"], timeout=10), "the socket is still open after Stop"
    assert wait_until(page, lambda: camera_released(page), timeout=10), "the camera tracks are still live after Stop"
    received, bars = len(entry["received"]), shown(page)
    page.wait_for_timeout(1500)
    assert len(entry["received"]) == received
    after = shown(page)
    assert after["labels"] == bars["labels"] and after["percents"] == bars["percents"], (bars, after)
    assert after["button"] == "Start camera"
    assert after["stats"].startswith("Stopped."), after
    assert page.locator("#camera-video").is_hidden()
    assert page.get_attribute("#results", "aria-live") == "polite"
    # The bars left on screen are one of the answers received.
    assert any([p["label"] for p in a["predictions"]] == after["labels"] for a in answers + sockets.answers(entry))


def test_image_mode_still_works_after_the_camera(server, camera_page):
    page = camera_page
    camera_mode(page)
    page.click("#camera-toggle")
    live(page)
    page.click("#modes button[data-mode=image]")   # switching away stops the camera
    assert wait_until(page, lambda: camera_released(page), timeout=10)
    assert page.locator("#mode-image").is_visible() and not page.locator("#mode-camera").is_visible()
    path = camera_photo()
    expected = api_predict(server, path.read_bytes(), path.name).json()
    result = upload(page, str(path))
    assert result["error"] == "" and result["labels"] == [p["label"] for p in expected["predictions"]], result
    assert page.locator("#preview").is_visible()


def test_a_model_or_version_change_restarts_the_stream_with_it(server, camera_page):
    page = camera_page
    versions = page.locator("#version option:not([disabled])").evaluate_all("os => os.map(o => o.value)")
    if len(versions) < 2:
        pytest.skip(f"one available version only: {versions}")
    sockets = Sockets(page)
    camera_mode(page)
    page.click("#camera-toggle")
    live(page)
    other = next(v for v in versions if v != page.input_value("#version"))
    page.select_option("#version", other)
    page.wait_for_function("v => document.querySelector('#meta').textContent.includes(' v' + v + ' ')"
                           " && document.querySelector('#camera-stats').textContent.includes(' v' + v)", arg=other)
    assert len(sockets.all) == 2 and sockets.all[0]["closed"], [s["url"] for s in sockets.all]
    assert f"version={other}" in sockets.all[1]["url"]
    assert f" v{other}" in shown(page)["meta"]
    page.click("#camera-toggle")
    assert wait_until(page, lambda: camera_released(page) and sockets.all[1]["closed"], timeout=10)


@pytest.mark.parametrize("name,message,shown_text", [
    ("NotAllowedError", "Permission denied", "Camera permission was denied"),
    ("NotFoundError", "Requested device not found", "No camera was found"),
])
def test_camera_errors_are_explained(camera_browser, server, name, message, shown_text):
    context, page, errors = open_camera_page(camera_browser, server, script=refuse_camera(name, message))
    try:
        camera_mode(page)
        page.click("#camera-toggle")
        page.wait_for_function("document.querySelector('#error').textContent !== ''")
        result = shown(page)
        assert shown_text in result["error"] and name in result["error"], result
        assert result["button"] == "Start camera" and result["labels"] == []
        assert page.get_attribute("#error", "role") == "alert"
        assert errors == []
    finally:
        context.close()


def test_a_stream_refused_before_the_upgrade_is_reported(camera_page):
    page = camera_page
    camera_mode(page)
    page.evaluate("""() => { const s = document.querySelector('#model');
                             s.append(new Option('no-such-model', 'no-such-model')); s.value = 'no-such-model'; }""")
    page.click("#camera-toggle")
    page.wait_for_function("document.querySelector('#error').textContent !== ''")
    result = shown(page)
    assert "Could not open the stream" in result["error"], result
    assert result["button"] == "Start camera"
    assert wait_until(page, lambda: camera_released(page), timeout=10)


@pytest.mark.parametrize("code,reason,shown_text", [
    (1013, "64 streams are open, the limit", "64 streams are open, the limit. Try again later."),
    (1009, "a frame exceeds the limit of 8388608 bytes", "a frame exceeds the limit of 8388608 bytes."),
    (1000, "nothing received for 30 s", "nothing received for 30 s."),
    (1008, "the stream reached its maximum duration of 3600 s", "the stream reached its maximum duration of 3600 s."),
    (1001, "the server is shutting down", "the server is shutting down. Try again later."),
])
def test_a_stream_closed_by_the_server_shows_its_reason_and_releases_the_camera(
        camera_browser, server, code, reason, shown_text):
    """The server's limits close the socket with a code and reason; the socket
    is routed here, answering one frame and then closing as the server would."""
    def route(page):
        def handler(ws):
            frames = []

            def on_message(message):
                if not isinstance(message, bytes):
                    return
                frames.append(message)
                if len(frames) == 1:
                    ws.send(json.dumps({
                        "frame": 0, "class": "cat", "score": 0.9, "model": "m", "version": 1,
                        "predictions": [{"label": l, "index": i, "score": s} for i, (l, s) in enumerate(
                            [("cat", 0.9), ("dog", 0.05), ("frog", 0.03), ("deer", 0.01), ("bird", 0.01)])],
                        "latency_ms": 1.5, "dropped": 0}))
                elif len(frames) == 2:
                    ws.send(json.dumps({"frame": 1, "error": {"code": "bad_image", "message": "cannot decode"},
                                        "latency_ms": 0.5, "dropped": 0}))
                elif len(frames) == 3:
                    ws.close(code=code, reason=reason)
            ws.on_message(on_message)
        page.route_web_socket(re.compile(r".*/api/v1/stream\b.*"), handler)

    context, page, errors = open_camera_page(camera_browser, server, before=route)
    try:
        camera_mode(page)
        page.click("#camera-toggle")
        page.wait_for_function("document.querySelector('#error').textContent.includes('closed')", timeout=TIMEOUT_MS)
        result = shown(page)
        assert f"The stream was closed: {shown_text}" in result["error"], result
        assert f"close code {code}" in result["error"], result
        assert result["button"] == "Start camera"
        assert wait_until(page, lambda: camera_released(page), timeout=10)
        assert errors == []
    finally:
        context.close()


@pytest.mark.parametrize("flags,code,shown_text", [
    (("--max-stream-duration-secs", "2"), 1008, "the stream reached its maximum duration of 2 s."),
    (("--max-frame-bytes", "2048"), 1009, "a frame exceeds the limit of 2048 bytes."),
])
def test_a_real_server_limit_closes_the_stream_with_its_reason(camera_browser, flags, code, shown_text):
    """The same, end to end: a server started with a small limit closes the
    page's stream, and the page shows the server's own reason."""
    with limited_server(*flags) as base:
        context, page, errors = open_camera_page(camera_browser, base)
        try:
            camera_mode(page)
            page.click("#camera-toggle")
            page.wait_for_function("document.querySelector('#error').textContent.includes('closed')",
                                   timeout=TIMEOUT_MS)
            result = shown(page)
            assert f"The stream was closed: {shown_text}" in result["error"], result
            assert f"close code {code}" in result["error"], result
            assert result["button"] == "Start camera"
            assert wait_until(page, lambda: camera_released(page), timeout=10)
            assert errors == []
        finally:
            context.close()


def test_a_failed_frame_is_shown_and_the_stream_goes_on(camera_browser, server):
    def route(page):
        def handler(ws):
            count = [0]

            def on_message(message):
                if not isinstance(message, bytes):
                    return
                n = count[0]
                count[0] += 1
                if n == 0:
                    ws.send(json.dumps({"frame": 0, "error": {"code": "bad_image", "message": "cannot decode the frame"},
                                        "latency_ms": 0.5, "dropped": 0}))
                else:
                    ws.send(json.dumps({
                        "frame": n, "class": "ship", "score": 0.8, "model": "m", "version": 3,
                        "predictions": [{"label": l, "index": i, "score": s} for i, (l, s) in enumerate(
                            [("ship", 0.8), ("truck", 0.1), ("frog", 0.05), ("deer", 0.03), ("bird", 0.02)])],
                        "latency_ms": 2.0, "dropped": 7}))
            ws.on_message(on_message)
        page.route_web_socket(re.compile(r".*/api/v1/stream\b.*"), handler)

    context, page, errors = open_camera_page(camera_browser, server, before=route)
    try:
        camera_mode(page)
        page.click("#camera-toggle")
        page.wait_for_function("document.querySelector('#error').textContent.includes('cannot decode the frame')")
        assert "bad_image" in page.inner_text("#error")
        result = live(page)
        assert result["error"] == "" and result["labels"][0] == "ship", result
        assert "7 dropped" in result["stats"] and "m v3" in result["stats"], result
        page.click("#camera-toggle")
        assert wait_until(page, lambda: camera_released(page), timeout=10)
        assert errors == []
    finally:
        context.close()


def test_camera_layout_on_a_phone(camera_browser, server):
    width, height = 390, 844
    context, page, errors = open_camera_page(camera_browser, server, width, height)
    try:
        camera_mode(page)
        page.click("#camera-toggle")
        live(page)
        page.wait_for_function("document.querySelector('#camera-video').videoWidth > 0")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"demo-camera-{width}x{height}.png"), full_page=True)
        boxes = {name: page.locator(selector).bounding_box()
                 for name, selector in [("modes", "#modes"), ("controls", ".camera-controls"),
                                        ("stats", "#camera-stats"), ("video", "#camera-video"),
                                        ("results", "#results")]}
        for name, box in boxes.items():
            assert box and box["width"] > 0 and box["height"] > 0, (name, box)
            assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (name, box)
        names = list(boxes)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                assert not boxes_overlap(boxes[a], boxes[b]), (a, boxes[a], b, boxes[b])
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert boxes["video"]["width"] >= width * 0.6, boxes["video"]
        # Touch-sized controls.
        for selector in ("#modes button[data-mode=camera]", "#camera-toggle", "#camera-rate"):
            assert page.locator(selector).bounding_box()["height"] >= 32, selector
        page.click("#camera-toggle")
        assert wait_until(page, lambda: camera_released(page), timeout=10)
        assert errors == []
    finally:
        context.close()
