"""The QC report says what the run's files say (session 49).

* label-vertebrae: the page's note beside the picture lost the pinned-disc warning (t2 with its own
  one-level-high init file: in the verdict's reasons, not in the note) and the "confidences are
  halved" remark, because the page rebuilt the labeling from its JSON keeping three report keys; the
  caption listed a disc placed by the chain's spacing (C1/C2, "estimated" in the figure) as if measured.
* chain with ``--seg auto``: ``spinereg qc RUN_DIR`` stopped with "segmentation named in
  provenance.json not found" (the top-level record names the temporary file the segmentation was
  made in); captions said "cord segmentation given with -s" for an automatic segmentation.
* the verdict's notes (metrics.json ``qc.notes``, e.g. "levels not independently verified") were on
  no page.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spinereg.cli.main import main
from spinereg.qc import add_to_report, load_entries

pytestmark = pytest.mark.realdata


def _entry(root: Path, command: str) -> dict:
    found = [e for e in load_entries(root) if e["command"] == command]
    assert len(found) == 1, [e["command"] for e in load_entries(root)]
    return found[0]


def test_label_vertebrae_note_and_caption_match_the_run(sct_data, tmp_path, capsys):
    t2 = sct_data / "t2"
    out, root = tmp_path / "lv", tmp_path / "qc"
    assert main(["label-vertebrae", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"), "-c", "t2",
                 "-initfile", str(t2 / "init_label_vertebrae.txt"), "-o", str(out), "--qc", str(root)]) == 0
    capsys.readouterr()
    doc = json.loads((out / "t2_discs.json").read_text())
    e = _entry(root, "label-vertebrae")
    (panel,) = e["panels"]
    # the pinned disc is one level high: the JSON warns, the verdict warns, and so does the note
    pin_warning = doc["init_check"]["warning"]
    assert e["verdict"] == "warn" and pin_warning in e["reasons"]
    for reason in e["reasons"]:  # everything the verdict says is said beside the picture (was: the gap only)
        assert reason in panel["note"], (reason, panel["note"])
    # every disc of the JSON in the caption, by name and confidence; one placed without a band says so
    for d in doc["discs"]:
        shown = f"{d['name']} {d['confidence']:.2f}"
        assert shown in panel["caption"], (shown, panel["caption"])
        tagged = f"{shown} ({d['source']})" in panel["caption"]
        assert tagged == (d["source"] == "estimated"), (d, panel["caption"])
    assert any(d["source"] == "estimated" for d in doc["discs"])  # (the case this checks)
    # the entry names its command line and version, as a run folder's entries do ("spinereg ?" and
    # none before session 49)
    assert e["command_line"].startswith("spinereg label-vertebrae -i ") and "?" not in e["version"], e["version"]


def test_segment_entry_names_its_command_and_version(sct_data, tmp_path, capsys):
    out, root = tmp_path / "t2s_seg.nii.gz", tmp_path / "qc"
    assert main(["segment", "-i", str(sct_data / "t2s" / "t2s.nii.gz"), "-o", str(out), "--qc", str(root)]) == 0
    capsys.readouterr()
    e = _entry(root, "segment")
    assert e["command_line"].startswith("spinereg segment -i ") and "?" not in e["version"], (e["command_line"],
                                                                                             e["version"])


def test_flagged_labeling_note_says_confidences_are_halved(sct_data, tmp_path, capsys):
    t2 = sct_data / "t2"
    out, root = tmp_path / "lv", tmp_path / "qc"
    assert main(["label-vertebrae", "-i", str(t2 / "t2.nii.gz"), "-s", str(t2 / "t2_seg-manual.nii.gz"), "-c", "t2",
                 "-o", str(out), "--qc", str(root)]) == 0
    capsys.readouterr()
    doc = json.loads((out / "t2_discs.json").read_text())
    assert doc["ambiguous"] and doc.get("confidence_scaled_by_flag")
    e = _entry(root, "label-vertebrae")
    assert any("halved" in r for r in e["reasons"])
    assert "halved" in e["panels"][0]["note"]


@pytest.fixture(scope="module")
def chain_auto(sct_data, tmp_path_factory):
    """chain dwi_mean -> t2 with the DWI mean segmented automatically, PAM50_small, --qc."""
    base = tmp_path_factory.mktemp("chain_auto")
    run, root = base / "chain", base / "qc"
    t2, dmri = sct_data / "t2", sct_data / "dmri"
    assert main(["chain", "-i", str(dmri / "dwi_mean.nii.gz"), str(t2 / "t2.nii.gz"),
                 "--seg", "auto", str(t2 / "t2_seg-manual.nii.gz"), "-l", str(t2 / "labels.nii.gz"),
                 "-t", "PAM50_small", "-o", str(run), "--qc", str(root)]) == 0
    return run, root


def test_chain_with_automatic_segmentation_is_drawn_again(chain_auto, tmp_path, capsys):
    run, root = chain_auto
    prov = json.loads((run / "provenance.json").read_text())
    seg_name = Path(prov["segmentations"][0]).name
    assert (run / seg_name).is_file()  # the automatic segmentation is kept in the run folder
    # the report drawn again from the run folder, after the run (its temporary files are gone)
    capsys.readouterr()
    assert main(["qc", str(run), "--root", str(tmp_path / "qc2")]) == 0, capsys.readouterr().err
    for qc_root in (root, tmp_path / "qc2"):
        e = _entry(qc_root, "chain")
        seg_panel = next(p for p in e["panels"] if p["title"] == "Cord segmentation (axial)")
        assert "made by the run" in seg_panel["caption"] and "given with" not in seg_panel["caption"]
        metrics = json.loads((run / "metrics.json").read_text())
        assert e["verdict"] == metrics["qc"]["verdict"] and e["reasons"] == metrics["qc"]["reasons"]
        assert e["scores"]["cord_dice"] == pytest.approx(metrics["qc"]["scores"]["cord_dice"])


def test_verdict_notes_are_in_the_report(chain_auto, tmp_path):
    run, _ = chain_auto
    copy = tmp_path / "chain_copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("qc"))
    m = json.loads((copy / "metrics.json").read_text())
    note = "levels not independently verified: the registration's landmarks are the automatic labeling's own discs"
    m["qc"]["notes"] = [note]
    (copy / "metrics.json").write_text(json.dumps(m))
    index = add_to_report(copy, tmp_path / "qc")
    e = load_entries(tmp_path / "qc")[0]
    assert e["notes"] == [note] and e["verdict"] == m["qc"]["verdict"]
    assert note in index.read_text()
    js = (tmp_path / "qc" / "assets" / "report.js").read_text()
    assert "e.notes" in js and "detail-notes" in js  # the detail view lists them under the reasons


def test_caption_origin_of_automatic_inputs():
    from spinereg.qc.page_registration import _origin

    assert _origin("/data/t2_seg.nii.gz", "given with -s", "made by the run") == "given with -s"
    assert _origin(None, "the subject's landmarks", "the automatic discs") == "the subject's landmarks"
    assert (_origin("t2_labels-disc.nii.gz (automatic: spinereg label-vertebrae)", "the subject's landmarks",
                    "the automatic discs") == "the automatic discs (spinereg label-vertebrae)")
    assert (_origin("t2_seg.nii.gz (automatic: spinereg segment of the image)", "given with -s", "made by the run")
            == "made by the run (spinereg segment of the image)")
