"""The page in a real browser: Debian's chromium driven headless by the playwright wheel, opened from file://.

Skips (with the reason) where playwright or chromium is missing; the structural checks of the embedded data in
test_interface_page.py run everywhere. Screenshots go to a temporary folder; their paths are printed.
"""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest

try:
    from playwright.sync_api import sync_playwright
except ImportError:                                                     # pragma: no cover - depends on the machine
    sync_playwright = None


def _chromium() -> str | None:
    for candidate in (os.environ.get("XRL_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


CHROMIUM = _chromium()
pytestmark = [
    pytest.mark.skipif(sync_playwright is None,
                       reason="the playwright wheel is not installed (pip install playwright)"),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium executable (apt-get install chromium; playwright "
                                                "install cannot download browsers here)"),
]
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("interface_screenshots")


class Opened:
    """A page opened from disk, with its console errors and every request it made."""

    def __init__(self, browser, path: Path, query: str = ""):
        self.page = browser.new_page(viewport={"width": 1500, "height": 1000})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.failed: dict[str, str] = {}
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.failed.__setitem__(r.url, r.failure or ""))
        self.page.goto(path.as_uri() + query)
        self.page.wait_for_selector("body[data-ready='1']", timeout=30_000)

    def state(self) -> dict:
        return self.page.evaluate("() => Object.assign({}, document.body.dataset)")

    def wait_rendered(self, prefix: str) -> None:
        self.page.wait_for_function("p => (document.body.dataset.rendered || '').startsWith(p)", arg=prefix,
                                    timeout=10_000)

    def canvas(self, name: str) -> str:
        return self.page.evaluate(f"() => document.getElementById('canvas-{name}').toDataURL()")

    def shot(self, folder: Path, name: str) -> Path:
        path = folder / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path


def test_loads_offline_and_every_control_works(browser, tiny_page, tiny_data, shots):
    path = tiny_page[0]
    o = Opened(browser, path)
    o.shot(shots, "01_loaded")
    assert o.errors == []
    assert o.requests == [path.as_uri()]                                   # the page itself, nothing else
    s = o.state()
    assert (s["trajectory"], s["frame"], s["layer"], s["kind"]) == ("0", "0", "embedder.block2", "value")
    o.wait_rendered("0:0:embedder.block2:value")

    # a bookmark moves the timeline to its frame
    mark = tiny_data["bookmarks"]["high"][0]
    cursor_before = o.page.evaluate("() => document.getElementById('scrub-cursor').style.left")
    o.page.click(f".bookmark[data-trajectory='{mark['trajectory']}'][data-frame='{mark['frame']}']")
    o.wait_rendered(f"{mark['trajectory']}:{mark['frame']}:")
    s = o.state()
    assert (int(s["trajectory"]), int(s["frame"])) == (mark["trajectory"], mark["frame"])
    assert o.page.evaluate("() => document.getElementById('scrub-cursor').style.left") != cursor_before
    assert f"frame {mark['frame']} / " in o.page.inner_text("#frame-number")
    o.shot(shots, "02_bookmark")

    # arrow keys step through frames
    o.page.click(f".bookmark[data-trajectory='{mark['trajectory']}'][data-frame='{mark['frame']}']")
    start = int(o.state()["frame"])
    key = "ArrowLeft" if start > 0 else "ArrowRight"
    o.page.keyboard.press(key)
    moved = start - 1 if key == "ArrowLeft" else start + 1
    o.wait_rendered(f"{mark['trajectory']}:{moved}:")
    o.page.keyboard.press("ArrowRight" if key == "ArrowLeft" else "ArrowLeft")
    o.wait_rendered(f"{mark['trajectory']}:{start}:")
    assert int(o.state()["frame"]) == start

    # switching layers changes the attribution image
    t, f = o.state()["trajectory"], o.state()["frame"]
    before = o.canvas("pos"), o.canvas("neg")
    o.page.select_option("#layer-select", "embedder.block1")
    o.wait_rendered(f"{t}:{f}:embedder.block1:value")
    after = o.canvas("pos"), o.canvas("neg")
    assert after[0] != before[0] and after[1] != before[1]
    assert o.page.locator("#legend .legend-item").count() == tiny_data["settings"]["features"] + 1
    o.shot(shots, "03_layer_block1")

    # hovering a legend item isolates that feature
    whole = o.canvas("pos"), o.canvas("neg")
    o.page.hover("#legend .legend-item[data-feature='0']")
    o.wait_rendered(f"{t}:{f}:embedder.block1:value:0:")
    assert o.state()["isolate"] == "0"
    assert (o.canvas("pos"), o.canvas("neg")) != whole
    assert o.page.locator("#legend .legend-item.dimmed").count() == tiny_data["settings"]["features"]
    o.shot(shots, "04_isolated_feature_1")
    o.page.mouse.move(5, 5)
    o.wait_rendered(f"{t}:{f}:embedder.block1:value::")
    assert (o.canvas("pos"), o.canvas("neg")) == whole

    # the popup opens on click and closes with Escape, the close button and a click outside
    o.page.click("#legend .legend-item[data-feature='1']")
    assert o.page.is_visible("#popup") and "Feature 2 · embedder.block1" in o.page.text_content("#popup-title")
    assert o.page.evaluate("() => [...document.querySelectorAll('#popup-body img')].every(i => i.complete && "
                           "i.naturalWidth > 0)")
    o.shot(shots, "05_popup")
    o.page.keyboard.press("Escape")
    assert not o.page.is_visible("#popup")
    o.page.click("#legend .legend-item[data-feature='0']")
    o.page.click("#popup-close")
    assert not o.page.is_visible("#popup")
    o.page.click("#legend .legend-item[data-feature='0']")
    o.page.mouse.click(3, 3)
    assert not o.page.is_visible("#popup")

    # the action-logit attribution is the other kind of picture
    o.page.check("input[name=kind][value=action]")
    o.wait_rendered(f"{t}:{f}:embedder.block1:action")
    assert (o.canvas("pos"), o.canvas("neg")) != whole

    # space plays and pauses
    o.page.click("#btn-start")
    o.wait_rendered(f"{t}:0:")
    o.page.keyboard.press("Space")
    o.page.wait_for_function("() => +document.body.dataset.frame >= 3", timeout=10_000)
    o.page.keyboard.press("Space")
    paused = int(o.state()["frame"])
    o.page.wait_for_timeout(400)
    assert int(o.state()["frame"]) == paused
    assert o.errors == [] and o.requests == [path.as_uri()]
    o.page.close()


def test_deep_link_and_blocked_network(browser, tiny_page, shots):
    path = tiny_page[0]
    o = Opened(browser, path, "?trajectory=1&frame=7&layer=embedder.block1&kind=action")
    s = o.state()
    assert (s["trajectory"], s["frame"], s["layer"], s["kind"]) == ("1", "7", "embedder.block1", "action")
    assert o.page.evaluate("() => document.getElementById('layer-select').value") == "embedder.block1"
    assert "selected" in o.page.get_attribute("#trajectory-list li[data-trajectory='1']", "class")
    o.page.keyboard.press("ArrowRight")
    o.wait_rendered("1:8:")
    assert "frame=8" in o.page.url
    o.shot(shots, "06_deep_link")
    # an accidental network load fails visibly: the Content-Security-Policy blocks it before any request
    blocked = o.page.evaluate("""async () => {
        const seen = new Promise(
            r => document.addEventListener('securitypolicyviolation', e => r(e.violatedDirective)));
        let failed = false;
        try { await fetch('http://127.0.0.1:9/data.json'); } catch (e) { failed = true; }
        const img = new Image(); img.src = 'http://127.0.0.1:9/x.png';
        return [failed, await seen];
    }""")
    assert blocked[0] is True and blocked[1].startswith("connect-src")
    o.page.wait_for_timeout(300)
    outside = [url for url in o.requests if not url.startswith("file:")]
    assert outside, "the blocked loads should show up as failed requests"
    print("blocked:", {url: o.failed.get(url) for url in outside})
    assert all("csp" in (o.failed.get(url) or "").lower() for url in outside)
    o.page.close()


def test_images_beside_the_page_load_from_file(browser, tiny_data, tmp_path, shots):
    """Large runs keep PNGs in images/ beside index.html; the CSP allows them ('self') under file://."""
    import base64

    from xrl.vision.interface import write_page

    data = copy.deepcopy(tiny_data)
    refs = data.pop("images")
    images = {k: base64.b64decode(v.split(",", 1)[1]) for k, v in refs.items()}
    path = write_page(tmp_path / "external", data, images, inline_images=False)
    o = Opened(browser, path)
    assert o.errors == []
    assert all(u == path.as_uri() or u.startswith((path.parent / "images").as_uri()) for u in o.requests)
    assert len(o.requests) > 1
    assert o.page.evaluate("() => [...document.querySelectorAll('#legend img, #trajectory-list img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    o.shot(shots, "07_external_images")
    o.page.close()
