"""The QC report in headless Chromium (Debian's /usr/bin/chromium driven by Playwright for Python).

Opens ``file://.../index.html`` of a cohort of three register-to-template runs (one real run on
sct_testing_data/t2 with PAM50_small, two copies with other scores), then checks: no console
errors, every image loads, the before/after toggle swaps the pictures, keyboard flags are shown
and stored, the exported failure list holds exactly the flagged entries, columns sort.
A screenshot is saved as ``test-artifacts/qc.png``. Chromium comes from scripts/install_browser.sh
(called by scripts/test.sh); without it the test fails saying so.
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
def browser_page(cohort):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `python -m pip install -e .[test]` (scripts/test.sh does)")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `bash scripts/install_browser.sh` "
                    "(apt-get install chromium chromium-driver) before the browser tests")
    root = cohort[0]
    profile = tempfile.mkdtemp(prefix="spinereg-chromium-")
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                    args=FLAGS, viewport={"width": 1400, "height": 1000},
                                                    accept_downloads=True)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto((root / "index.html").as_uri())
        page.wait_for_load_state("load")
        try:
            yield page, errors
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def _row(page, entry):
    return page.locator(f'#entries tbody tr[data-id="{entry["id"]}"]')


def _images_loaded(page) -> list[dict]:
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    return page.evaluate("Array.from(document.images).map(i => ({src: i.getAttribute('src'), w: i.naturalWidth}))")


def test_report_in_chromium(browser_page, cohort):
    page, errors = browser_page
    root, runs, real_dice = cohort
    assert page.locator("#entries tbody tr").count() == 3
    assert "3 of 3 entries" in page.locator("#count").inner_text()

    # every entry: its images load
    for name in ("run1", "run2", "run3"):
        _row(page, runs[name]).click()
        imgs = _images_loaded(page)
        assert len(imgs) == len(runs[name]["figures"]) == 3, imgs
        assert all(i["w"] > 0 for i in imgs), f"images not loaded for {name}: {imgs}"
    assert "cord Dice 0.61 < 0.85" in (_row(page, runs["run2"]).click() or page.locator(".reasons").inner_text())

    # before/after toggle swaps every paired picture
    _row(page, runs["run1"]).click()
    img = page.locator("img.toggle-img").first
    before = img.get_attribute("src")
    assert before == img.get_attribute("data-before")
    page.click("#toggle-before-after")
    after = img.get_attribute("src")
    assert after != before and after == img.get_attribute("data-after")
    assert all(i["w"] > 0 for i in _images_loaded(page))
    assert "template warped" in page.locator("#showing").inner_text()
    page.click("#toggle-before-after")
    assert img.get_attribute("src") == before

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
    assert stored == {runs["run1"]["id"]: "fail", runs["run3"]["id"]: "pass", runs["run2"]["id"]: "artifact"}
    page.reload()
    page.wait_for_load_state("load")
    assert _row(page, runs["run1"]).locator("td.flag").inner_text() == "fail"
    assert _row(page, runs["run2"]).locator("td.flag").inner_text() == "artifact"

    # export: exactly the entries flagged fail (textarea and downloaded file)
    _row(page, runs["run2"]).focus()
    page.keyboard.press("f")
    with page.expect_download() as dl:
        page.click("#export-failures")
    lines = [json.loads(x) for x in page.locator("#failures").input_value().splitlines() if x.strip()]
    assert sorted(x["id"] for x in lines) == sorted([runs["run1"]["id"], runs["run2"]["id"]])
    assert {x["run_dir"] for x in lines} == {runs["run1"]["run_dir"], runs["run2"]["run_dir"]}
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

    _row(page, runs["run1"]).click()
    _images_loaded(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "qc.png"), full_page=True)
    assert (ARTIFACTS / "qc.png").stat().st_size > 10_000
    assert errors == [], f"console errors: {errors}"
