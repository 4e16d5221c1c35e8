"""The vinocr-serve review page in headless Chromium: it lists the recent reads lowest confidence
first, with their images, and a typed text + Enter stores a correction for the focused read.
Skips when Chromium is not installed (apt-get install chromium)."""
import json
import time
from pathlib import Path

from conftest import load_tool, text_image

vc = load_tool("visualdl_check")
ls = load_tool("load_serve")
TOKEN = "review-token"


def _wait(tools, expression: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        try:
            value = tools.evaluate(expression)
        except vc.CheckError:       # the page is still loading
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"page never satisfied {expression!r} (last value {value!r})")


def _check_page(tools, srv, read_ids, corrections: Path) -> None:
    """The page lists the reads, takes typed text + Enter, and the correction is on disk."""
    tools.call("Page.navigate", url=f"{srv.base}/review#token={TOKEN}")
    _wait(tools, "document.querySelectorAll('#reads tr').length === 3 && "
                 "[...document.querySelectorAll('#reads img')].every("
                 "i => i.complete && i.naturalWidth > 0)")
    rows = tools.evaluate("[...document.querySelectorAll('#reads tr')].map(r => "
                          "({id: r.dataset.readId, conf: Number(r.children[2].textContent)}))")
    assert sorted(r["id"] for r in rows) == sorted(read_ids)
    confs = [r["conf"] for r in rows]
    assert confs == sorted(confs)                      # lowest confidence first
    focused = tools.evaluate("document.activeElement.closest('tr').dataset.readId")
    assert focused == rows[0]["id"]                    # ready to type into the first row

    # One keystroke: the typed text replaces the selected read, Enter stores it.
    tools.call("Input.insertText", text="AB123")
    for kind in ("keyDown", "keyUp"):
        tools.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                   windowsVirtualKeyCode=13, nativeVirtualKeyCode=13)
    _wait(tools, f"document.querySelector('tr[data-read-id=\"{focused}\"]').className "
                 "=== 'saved'")
    next_row = tools.evaluate("document.activeElement.closest('tr').dataset.readId")
    assert next_row == rows[1]["id"]                   # the focus moved on

    sidecars = list(corrections.glob("*.json"))
    assert len(sidecars) == 1
    doc = json.loads(sidecars[0].read_text())
    assert doc["text"] == "AB123" and doc["read_id"] == focused
    assert not [e for e in tools.errors if e.startswith("exception")], tools.errors


def test_review_page_takes_a_correction_with_one_keystroke(chromium, serve_model, tmp_path):
    import cv2

    srv = ls.start_server(serve_model["exp"], tmp_path / "data", tmp_path / "serve.log",
                          ["--token", TOKEN, "--log-level", "WARNING"])
    try:
        read_ids = []
        for k, text in enumerate(["AB123", "C4D56", "EF789"]):
            ok, buf = cv2.imencode(".png", text_image(text, seed=k))
            body, ctype = ls.multipart({}, [("image", f"{k}.png", buf.tobytes(), "image/png")])
            status, doc, _ = ls.request(srv.base, "POST", "/v1/read", body, ctype, token=TOKEN)
            assert status == 200, doc
            read_ids.append(doc["results"][0]["read_id"])

        with vc.browser_page(chromium, tmp_path / "chromium.log") as tools:
            _check_page(tools, srv, read_ids, tmp_path / "data" / "corrections")
    finally:
        srv.stop()
