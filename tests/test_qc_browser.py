"""The QC report in headless Chromium (Debian's /usr/bin/chromium driven by Playwright for Python).

Opens ``file://.../index.html`` of a cohort of three register-to-template runs (one real run on
sct_testing_data/t2 with PAM50_small, two copies with other scores) at 1280 and 1920 px wide and
checks the layout, not only that the page loads: no sideways scroll, every image loads (for
every entry), each stage has its section, scores stand beside their bounds, the before/after
toggle swaps the pictures, a zoomed picture scrolls inside its box. Then keyboard flags, their
localStorage persistence, export of flags to a file and import back into a browser without them,
the failure list, sorting and filters. No console error anywhere. Screenshots at both widths are
kept in ``test-artifacts/`` (qc_1280.png, qc_1920.png). Chromium comes from
scripts/install_browser.sh (called by scripts/test.sh); without it the test fails saying so.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from spinereg.cli.main import main
from spinereg.qc import add_to_report, load_entries

pytestmark = pytest.mark.realdata

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STAGES = ["segmentation", "labels", "registration: subject space", "registration: template space"]


@pytest.fixture(scope="module")
def cohort(sct_data, tmp_path_factory):
    """QC root with three runs: the real one, and two copies with lower / higher Dice."""
    t2 = sct_data / "t2"
    base = tmp_path_factory.mktemp("qc_browser")
    root = base / "qc"
    run1 = base / "run1"
    assert main(["register-to-template", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"),
                 "-l", str(t2 / "labels.nii.gz"), "-t", "PAM50_small", "-o", str(run1), "--qc", str(root)]) == 0
    m1 = json.loads((run1 / "metrics.json").read_text())
    real = ((m1.get("qc") or {}).get("scores") or {}).get("cord_dice", m1["cord_dice_subject_space_zb"])
    for name, dice, verdict in (("run2", 0.61, "fail"), ("run3", 0.995, None)):
        run = base / name
        shutil.copytree(run1, run)
        m = json.loads((run / "metrics.json").read_text())
        m["cord_dice_subject_space_zb"] = dice
        if verdict:
            m["qc"] = {"verdict": verdict, "reasons": [f"cord Dice {dice} < 0.85"], "scores": {"cord_dice": dice}}
        elif "qc" in m:  # scored by spinereg.metrics.verdict: its cord_dice is the column shown
            m["qc"].setdefault("scores", {})["cord_dice"] = dice
        (run / "metrics.json").write_text(json.dumps(m))
        add_to_report(run, root)
    entries = load_entries(root)
    assert len(entries) == 3
    return root, {Path(e["run_dir"]).name: e for e in entries}, real


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `python -m pip install -e .[test]` (scripts/test.sh does)")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `bash scripts/install_browser.sh` "
                    "(apt-get install chromium chromium-driver) before the browser tests")
    profile = tempfile.mkdtemp(prefix="spinereg-chromium-")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                    args=FLAGS, viewport={"width": 1280, "height": 900},
                                                    accept_downloads=True)
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def _open(ctx, root: Path, width: int):
    page = ctx.new_page()
    page.set_viewport_size({"width": width, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # a request the page itself cancels (a picture replaced before it finished loading) is not an error
    page.on("requestfailed", lambda r: None if "ERR_ABORTED" in str(r.failure) else
            errors.append(f"request failed: {r.url} ({r.failure})"))
    page.goto((root / "index.html").as_uri())
    page.wait_for_load_state("load")
    return page, errors


def _row(page, entry):
    return page.locator(f'#entries tbody tr[data-id="{entry["id"]}"]')


def _images_loaded(page) -> list[dict]:
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    return page.evaluate("Array.from(document.images).map(i => ({src: i.getAttribute('src'), w: i.naturalWidth}))")


def _no_sideways_scroll(page) -> None:
    dims = page.evaluate("({sw: document.documentElement.scrollWidth, cw: document.documentElement.clientWidth,"
                         " bw: document.body.scrollWidth})")
    assert dims["sw"] <= dims["cw"] and dims["bw"] <= dims["cw"], f"sideways scroll: {dims}"
    wide = page.evaluate("""() => Array.from(document.querySelectorAll('body *')).filter(el => {
        const r = el.getBoundingClientRect(); return r.width > 0 && r.right > document.documentElement.clientWidth + 1
          && !el.closest('.imgbox.zoomed'); }).map(el => el.tagName + '.' + el.className).slice(0, 5)""")
    assert wide == [], f"elements beyond the right edge: {wide}"


@pytest.mark.parametrize("width", [1280, 1920])
def test_layout_at_width(browser, cohort, width):
    root, runs, _ = cohort
    page, errors = _open(browser, root, width)
    try:
        assert page.locator("#entries tbody tr").count() == 3
        assert "3 of 3 entries" in page.locator("#count").inner_text()
        _no_sideways_scroll(page)
        for name in ("run2", "run3", "run1"):  # every entry: every picture loads, one section per stage
            _row(page, runs[name]).click()
            imgs = _images_loaded(page)
            assert len(imgs) == len(runs[name]["panels"]) >= 7, imgs
            assert all(i["w"] > 0 for i in imgs), f"images not loaded for {name}: {imgs}"
            assert page.locator("#detail section.stage h3").all_inner_texts() == [s.upper() for s in STAGES] or \
                [t.lower() for t in page.locator("#detail section.stage h3").all_inner_texts()] == STAGES
            _no_sideways_scroll(page)
        # pictures are large: an axial mosaic spans most of its panel
        widths = page.evaluate("Array.from(document.querySelectorAll('#detail img.qc-img')).map(i => i.clientWidth)")
        assert max(widths) >= 500, widths
        # scores beside their bounds and meaning; the command line and the version
        row = page.locator('#scores-table tr[data-score="cord_dice"]')
        assert "fail < 0.85" in row.locator("td.bounds").inner_text() and row.locator("td.meaning").inner_text()
        assert "spinereg register-to-template" in page.locator("#detail .cmd").inner_text()
        assert "spinereg " in page.locator("#detail").inner_text()
        # before/after toggle swaps every paired picture, and says which is shown
        img = page.locator("img.toggle-img").first
        before = img.get_attribute("src")
        assert before == img.get_attribute("data-before")
        page.click("#toggle-before-after")
        assert img.get_attribute("src") == img.get_attribute("data-after") != before
        assert all(i["w"] > 0 for i in _images_loaded(page))
        assert "showing: after" in page.locator("#showing").inner_text()
        page.keyboard.press("t")
        assert img.get_attribute("src") == before
        # zoom: the picture grows inside its own box, the page does not scroll sideways
        page.locator("img.qc-img").first.click()
        assert page.locator(".imgbox.zoomed").count() == 1
        _no_sideways_scroll(page)
        page.locator("img.qc-img").first.click()
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"qc_{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 50_000
        assert errors == [], f"console errors: {errors}"
    finally:
        page.close()


def test_flags_keyboard_export_import(browser, cohort, tmp_path):
    root, runs, real_dice = cohort
    page, errors = _open(browser, root, 1280)
    try:
        page.evaluate("localStorage.clear()")
        page.reload()
        # keyboard flags: shown on the row, stored in localStorage, kept after a reload
        _row(page, runs["run1"]).focus()
        page.keyboard.press("f")
        assert _row(page, runs["run1"]).locator("td.flag").inner_text() == "fail"
        _row(page, runs["run3"]).focus()
        page.keyboard.press("p")
        _row(page, runs["run2"]).focus()
        page.keyboard.press("a")
        stored = page.evaluate("""() => { const k = Object.keys(localStorage).find(k => k.startsWith('spinereg-qc-flags:'));
                                          return JSON.parse(localStorage.getItem(k)); }""")
        want = {runs["run1"]["id"]: "fail", runs["run3"]["id"]: "pass", runs["run2"]["id"]: "artifact"}
        assert stored == want
        page.reload()
        assert _row(page, runs["run1"]).locator("td.flag").inner_text() == "fail"
        assert _row(page, runs["run2"]).locator("td.flag").inner_text() == "artifact"
        # export the flags to a file
        with page.expect_download() as dl:
            page.click("#export-flags")
        exported = tmp_path / "qc_flags.json"
        shutil.copy(dl.value.path(), exported)
        data = json.loads(exported.read_text())
        assert {k: v["flag"] for k, v in data["flags"].items()} == want
        assert data["flags"][runs["run1"]["id"]]["run_dir"] == runs["run1"]["run_dir"]
        # a browser without them (cleared storage) gets them back from the file
        page.evaluate("localStorage.clear()")
        page.reload()
        assert _row(page, runs["run1"]).locator("td.flag").inner_text() == ""
        page.set_input_files("#import-flags", str(exported))
        page.wait_for_function("document.getElementById('flag-status').textContent.includes('imported')")
        assert "3 flags imported" in page.locator("#flag-status").inner_text()
        assert _row(page, runs["run1"]).locator("td.flag").inner_text() == "fail"
        assert _row(page, runs["run3"]).locator("td.flag").inner_text() == "pass"
        page.reload()  # imported flags are stored too
        assert _row(page, runs["run2"]).locator("td.flag").inner_text() == "artifact"

        # export of failures: exactly the entries flagged fail (text box and downloaded file)
        _row(page, runs["run2"]).focus()
        page.keyboard.press("f")
        with page.expect_download() as dl:
            page.click("#export-failures")
        lines = [json.loads(x) for x in page.locator("#failures").input_value().splitlines() if x.strip()]
        assert sorted(x["id"] for x in lines) == sorted([runs["run1"]["id"], runs["run2"]["id"]])
        downloaded = [json.loads(x) for x in Path(dl.value.path()).read_text().splitlines() if x.strip()]
        assert downloaded == lines
        _row(page, runs["run1"]).focus()
        page.keyboard.press("x")
        page.click("#export-failures")
        lines = [json.loads(x) for x in page.locator("#failures").input_value().splitlines() if x.strip()]
        assert [x["id"] for x in lines] == [runs["run2"]["id"]]

        # sorting by a score column, both directions
        def dice_column() -> list[float]:
            return [float(t) for t in page.locator('#entries tbody td[data-key="score:cord_dice"]').all_inner_texts()]

        page.click('#entries th[data-key="score:cord_dice"]')
        assert dice_column() == sorted([0.61, 0.995, real_dice])
        assert page.get_attribute('#entries th[data-key="score:cord_dice"]', "aria-sort") == "ascending"
        page.click('#entries th[data-key="score:cord_dice"]')
        assert dice_column() == sorted([0.61, 0.995, real_dice], reverse=True)
        # filters: verdict and text
        page.select_option("#filter-verdict", "fail")
        assert page.locator("#entries tbody tr").count() == 1
        assert page.locator("#entries tbody tr").get_attribute("data-id") == runs["run2"]["id"]
        page.select_option("#filter-verdict", "")
        page.fill("#filter-text", "run3")
        assert page.locator("#entries tbody tr").count() == 1
        page.fill("#filter-text", "")
        assert errors == [], f"console errors: {errors}"
    finally:
        page.close()
