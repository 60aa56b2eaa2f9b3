"""The demo page (GET /, crates/fovea-server/static/index.html) in a real
headless Chromium against a real `fovea serve` (the bundled `models/`).

Uploads real photos through the page's file input and checks the bars
against what /api/v1/predict answers for the same bytes; checks the
model/version picker against /api/v1/models and that choosing a version
makes the page answer with it; the server's error for a file that is not an
image, URL fetching refused, a network failure and an older server without
/api/v1/models; the layout at 1280×720 and at a phone's 390×844 (no overlap,
no horizontal scrolling), with screenshots in target/ui/.

Needs: Playwright for Python (tests/ui/requirements.txt) driving the SYSTEM
Chromium (/usr/bin/chromium, or FOVEA_CHROMIUM; apt-get install chromium;
Playwright's own browser download is never used). Missing: skip with the
reason, or fail when FOVEA_REQUIRE_CHROMIUM=1 (CI). The fovea binary
(FOVEA_BIN, default target/debug/fovea), and ../shared for the photos
(missing: skip, or fail when FOVEA_REQUIRE_SHARED=1).

    FOVEA_BIN=target/debug/fovea .venv/bin/python -m pytest tests/ui -q -p no:cacheprovider
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fovea_env import require_shared, fovea_binary, ort_environment, free_port, stop, wait_until  # noqa: E402

MODELS = REPO_ROOT / "models"
SHARED = REPO_ROOT.parent / "shared"
PHOTOS_DIR = SHARED / "data" / "images"
CIFAR_TEST_DIR = SHARED / "data" / "cifar10" / "test"
SCREENSHOTS = REPO_ROOT / "target" / "ui"
CHROMIUM = os.environ.get("FOVEA_CHROMIUM", "/usr/bin/chromium")
TOP_K = 5
# The body limit the server runs with: small, so that a too-large upload stays cheap.
LIMIT = 1024 * 1024
TIMEOUT_MS = 60_000


# ----------------------------------------------------------------- helpers

def require_chromium():
    """Playwright's sync API bound to the system Chromium, or a skip (a
    failure under FOVEA_REQUIRE_CHROMIUM=1) saying what is missing."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright for Python is not installed (.venv/bin/pip install -r tests/ui/requirements.txt)"
    if reason is None and not os.access(CHROMIUM, os.X_OK):
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set FOVEA_CHROMIUM)"
    if reason is not None:
        if os.environ.get("FOVEA_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"FOVEA_REQUIRE_CHROMIUM=1 but {reason}")
        print(f"skipping the demo page tests: {reason}")
        pytest.skip(reason)
    return sync_playwright


def photo() -> Path:
    require_shared(PHOTOS_DIR)
    path = PHOTOS_DIR / "bird.jpg"
    if not path.exists():
        path = sorted(PHOTOS_DIR.glob("*.jpg"))[0]
    return path


def cifar_image(label: str = "cat") -> Path:
    require_shared(CIFAR_TEST_DIR)
    return CIFAR_TEST_DIR / label / "0000.jpg"


def api_predict(base: str, data: bytes, name: str, **params) -> requests.Response:
    return requests.post(f"{base}/api/v1/predict", params={"top_k": TOP_K, **params},
                         files={"image": (name, data, "image/jpeg")}, timeout=60)


def settle(page) -> dict:
    """Waits for the page's answer to the request just started; returns what
    it shows: bar labels and percentages, status, meta line, error."""
    page.wait_for_function(
        """() => document.querySelector('#results').getAttribute('aria-busy') === 'false'
                 && (document.querySelector('#meta').textContent || document.querySelector('#error').textContent)""",
        timeout=TIMEOUT_MS)
    rows = page.locator("#bars li")
    return {
        "labels": rows.locator(".label").all_inner_texts(),
        "percents": rows.locator(".pct").all_inner_texts(),
        "status": page.inner_text("#status"),
        "meta": page.inner_text("#meta"),
        "error": page.inner_text("#error"),
    }


def upload(page, file) -> dict:
    """Gives `file` (a path or Playwright's {name, mimeType, buffer}) to the
    page's file input, as choosing it in the dialog would."""
    page.evaluate("() => { for (const id of ['meta', 'error']) document.getElementById(id).textContent = ''; }")
    page.set_input_files("#file", file)
    return settle(page)


def assert_page_shows(shown: dict, answer: dict) -> None:
    labels = [p["label"] for p in answer["predictions"]]
    assert shown["error"] == "", shown
    assert shown["labels"] == labels, (shown, answer)
    assert len(shown["percents"]) == len(labels) == TOP_K
    for text, p in zip(shown["percents"], answer["predictions"]):
        m = re.fullmatch(r"(\d+\.\d)%", text)
        assert m, text
        # One decimal, rounded from the same score (JS toFixed vs Python may differ on an exact tie).
        assert abs(float(m.group(1)) - p["score"] * 100) <= 0.05 + 1e-6, (text, p)
    assert answer["class"] in shown["status"], shown
    assert shown["labels"][0] == answer["class"]
    assert f"{answer['model']} v{answer['version']}" in shown["meta"], shown
    assert re.search(r"server \d+\.\d ms", shown["meta"]), shown


def boxes_overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def server():
    require_chromium()  # skip before starting anything when there is no browser
    binary = fovea_binary()
    workdir = Path(tempfile.mkdtemp(prefix="fovea-ui-"))
    port = free_port()
    log_path = workdir / "fovea.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(binary), "serve", "--models", str(MODELS), "--http", f"127.0.0.1:{port}", "--grpc", "off",
         "--max-body-bytes", str(LIMIT)],
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=ort_environment(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        timeout = float(os.environ.get("FOVEA_STARTUP_TIMEOUT", "180"))
        if not wait_until(lambda: requests.get(f"{base}/readyz", timeout=2).status_code == 200, timeout, proc):
            pytest.fail(f"fovea serve did not become ready (exit code {proc.poll()}); log:\n"
                        f"{log_path.read_text(errors='replace')[-4000:]}")
        yield base
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    sync_playwright = require_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, server, width=1280, height=720, before=None):
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    if before:
        before(page)
    page.goto(server + "/")
    # The picker's listing has been answered (or refused) before anything is sent.
    page.wait_for_selector("html[data-models]", state="attached")
    return context, page, errors


@pytest.fixture
def page(browser, server):
    context, page, errors = open_page(browser, server)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


# ----------------------------------------------------------------- tests

def test_uploaded_photos_show_the_apis_top5(server, page):
    for path in (photo(), cifar_image("cat"), cifar_image("ship")):
        data = path.read_bytes()
        answer = api_predict(server, data, path.name)
        assert answer.status_code == 200, answer.text
        shown = upload(page, str(path))
        assert_page_shows(shown, answer.json())
        # The preview shows the uploaded picture.
        assert page.locator("#preview").is_visible()
        assert page.evaluate("document.querySelector('#preview').naturalWidth") > 0


def test_the_chooser_works_from_the_keyboard_and_results_are_announced(page):
    # Tab reaches the "Choose an image" button (after the picker's selects, if any), and Enter
    # or Space on it clicks the file input, which opens the dialog (counted here instead).
    page.evaluate("""() => { window.chooserOpened = 0;
        document.getElementById('file').addEventListener('click', e => { window.chooserOpened++; e.preventDefault(); }); }""")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "choose":
            break
    assert page.evaluate("document.activeElement.id") == "choose"
    page.keyboard.press("Enter")
    page.keyboard.press("Space")
    assert page.evaluate("window.chooserOpened") == 2
    assert page.get_attribute("#results", "aria-live") == "polite"
    assert page.get_attribute("#error", "role") == "alert"
    # Every form control has an accessible name.
    for selector in ("#file", "#url", "#model", "#version"):
        assert page.locator(selector).evaluate("e => e.labels.length") >= 1, selector


def test_the_picker_lists_the_served_versions_and_switching_answers_with_that_one(server, page):
    listing = requests.get(f"{server}/api/v1/models", timeout=10)
    assert listing.status_code == 200, f"GET /api/v1/models answered {listing.status_code}: {listing.text}"
    models = listing.json()["models"]
    assert page.get_attribute("html", "data-models") == "loaded"
    assert page.locator("#picker").is_visible()

    names = page.locator("#model option").evaluate_all("os => os.map(o => o.value)")
    assert names == [m["name"] for m in models]
    default = next((m for m in models if m.get("default")), models[0])
    assert page.input_value("#model") == default["name"]
    options = page.locator("#version option").evaluate_all("os => os.map(o => [Number(o.value), o.disabled])")
    assert sorted(options) == sorted([v["version"], v["state"] != "available"] for v in default["versions"])
    assert page.input_value("#version") == str(default["default_version"])

    available = [v["version"] for v in default["versions"] if v["state"] == "available"]
    assert len(available) >= 2, f"the test needs two available versions of {default['name']}: {default}"
    path = cifar_image("dog")
    data = path.read_bytes()
    shown = upload(page, str(path))
    assert f"{default['name']} v{default['default_version']}" in shown["meta"], shown

    for version in [v for v in available if v != default["default_version"]] + [default["default_version"]]:
        answer = api_predict(server, data, path.name, model=default["name"], version=version)
        assert answer.status_code == 200, answer.text
        page.evaluate("() => { document.getElementById('meta').textContent = ''; }")
        page.select_option("#version", str(version))   # the page classifies the same image again
        shown = settle(page)
        assert answer.json()["version"] == version
        assert_page_shows(shown, answer.json())


def test_without_a_model_listing_the_picker_hides_and_the_default_model_answers(browser, server):
    def refuse(page):
        page.route("**/api/v1/models", lambda route: route.fulfill(
            status=404, content_type="application/json",
            body='{"error":{"code":"route_not_found","message":"no such route"}}'))

    context, page, errors = open_page(browser, server, before=refuse)
    try:
        assert page.get_attribute("html", "data-models") == "unavailable"
        assert not page.locator("#picker").is_visible()
        path = cifar_image("horse")
        answer = api_predict(server, path.read_bytes(), path.name)
        assert_page_shows(upload(page, str(path)), answer.json())
        assert errors == []
    finally:
        context.close()


def test_a_file_that_is_not_an_image_shows_the_servers_message(server, page):
    data = b"this is plain text, not a picture\n"
    refused = api_predict(server, data, "x.jpg")
    assert 400 <= refused.status_code < 500, refused.text
    error = refused.json()["error"]
    shown = upload(page, {"name": "x.jpg", "mimeType": "image/jpeg", "buffer": data})
    assert error["message"] in shown["error"], shown
    assert error["code"] in shown["error"], shown
    assert shown["labels"] == [] and shown["meta"] == ""
    assert page.locator("#error").is_visible()

    # A good image afterwards clears the error.
    path = cifar_image("truck")
    assert upload(page, str(path))["error"] == ""


def test_a_too_large_file_shows_the_servers_message(server, page):
    data = b"\xff\xd8" + b"\0" * (LIMIT + 512 * 1024)
    refused = api_predict(server, data, "big.jpg")
    assert refused.status_code == 413, refused.text
    shown = upload(page, {"name": "big.jpg", "mimeType": "image/jpeg", "buffer": data})
    assert "Too large" in shown["error"] and "body_too_large" in shown["error"], shown
    # The same message, but for the body's size (multipart boundaries differ).
    def numbers(text):
        return re.sub(r"\d+", "N", text)
    assert numbers(refused.json()["error"]["message"]) in numbers(shown["error"]), shown


def test_a_refused_url_fetch_shows_the_servers_message(server, page):
    url = "http://127.0.0.1:9/picture.jpg"
    refused = requests.post(f"{server}/api/v1/predict", params={"top_k": TOP_K}, json={"url": url}, timeout=30)
    assert refused.status_code >= 400, refused.text  # this server runs without --allow-url-fetch
    page.fill("#url", url)
    page.press("#url", "Enter")
    shown = settle(page)
    assert refused.json()["error"]["message"] in shown["error"], shown


def test_a_network_failure_is_reported(browser, server):
    def cut(page):
        page.route("**/api/v1/predict*", lambda route: route.abort("connectionrefused"))

    context, page, _ = open_page(browser, server, before=cut)
    try:
        shown = upload(page, str(cifar_image("frog")))
        assert "Could not reach the server" in shown["error"], shown
    finally:
        context.close()


@pytest.mark.parametrize("width,height", [(1280, 720), (390, 844)])
def test_layout_has_no_overlap_and_screenshots(browser, server, width, height):
    context, page, errors = open_page(browser, server, width, height)
    try:
        shown = upload(page, str(photo()))
        assert shown["error"] == "" and len(shown["labels"]) == TOP_K, shown
        page.wait_for_function("document.querySelector('#preview').complete")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"demo-{width}x{height}.png"), full_page=True)

        boxes = {name: page.locator(selector).bounding_box()
                 for name, selector in [("intro", "header p"), ("drop", "#drop"), ("url", "#url-form"),
                                        ("preview", "#preview-box"), ("results", "#results")]}
        for name, box in boxes.items():
            assert box and box["width"] > 0 and box["height"] > 0, (name, box)
            assert box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (name, box)
        names = list(boxes)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                assert not boxes_overlap(boxes[a], boxes[b]), (a, boxes[a], b, boxes[b])
        # The preview image stays inside its frame.
        image, frame = page.locator("#preview").bounding_box(), boxes["preview"]
        assert frame["x"] - 0.5 <= image["x"] and image["x"] + image["width"] <= frame["x"] + frame["width"] + 0.5
        assert frame["y"] - 0.5 <= image["y"] and image["y"] + image["height"] <= frame["y"] + frame["height"] + 0.5
        # Wide: preview beside the results; narrow: stacked.
        preview, results = boxes["preview"], boxes["results"]
        if width >= 1000:
            assert results["x"] >= preview["x"] + preview["width"], (preview, results)
        else:
            assert results["y"] >= preview["y"] + preview["height"], (preview, results)
        # Nothing scrolls sideways, and each bar row's label, bar and percentage sit side by side.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        for row in page.locator("#bars li").all():
            parts = [row.locator(s).bounding_box() for s in (".label", ".track", ".pct")]
            assert parts[0]["x"] + parts[0]["width"] <= parts[1]["x"] + 0.5, parts
            assert parts[1]["x"] + parts[1]["width"] <= parts[2]["x"] + 0.5, parts
        assert errors == []
    finally:
        context.close()
