"""The automatic discs joining the user's labels (spinereg.register.auto_landmarks): when they
may (labeling not ambiguous, every given label where the labeling puts its level), which join
(measured discs only, given disc labels win), and the arc correspondence built from two kinds of
landmarks, each matched to its own template points. Synthetic labelings on a straight cord
(arc length = z), no data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinereg.cord.landmarks import Landmarks
from spinereg.register.auto_landmarks import arc_pairs, automatic_discs, level_agreement
from spinereg.vertebrae.label import Disc

SPACING = 18.0


class StraightCord:
    """Centerline along z: arc length = z (mm)."""

    def project(self, points):
        p = np.asarray(points, float).reshape(-1, 3)
        return p[:, 2].copy(), np.hypot(p[:, 0], p[:, 1])

    def points(self, s):
        return np.array([0.0, 0.0, float(s)])


@dataclass
class FakeLabeling:
    discs: list
    ambiguous: bool = False
    identity_margin: float = 5.0
    centerline: StraightCord = StraightCord()
    polarity: int = 1
    scale: float = 1.0

    @property
    def measured(self):
        return [d for d in self.discs if not d.estimated]


def disc_z(v: int) -> float:
    return 200.0 - SPACING * (v - 2)  # disc 2 (C1/C2) at z = 200, one spacing per level downwards


def labeling(values=range(2, 12), ambiguous=False) -> FakeLabeling:
    return FakeLabeling([Disc(v, disc_z(v), np.array([0.0, 0.0, disc_z(v)]), 0.9, 1.0, 0.0, "estimated" if v == 2 else "band")
                         for v in values], ambiguous)


def bodies(values, shift_mm=0.0) -> Landmarks:
    z = np.array([(disc_z(v) + disc_z(v + 1)) / 2 for v in values]) + np.asarray(shift_mm)
    return Landmarks("body", np.array(values), np.array([[0.0, 5.0, zz] for zz in z]))


TEMPLATE_DISCS = Landmarks("disc", np.arange(1, 26), np.zeros((25, 3)))


def test_agreeing_labels_add_the_measured_discs():
    auto, rep = automatic_discs(bodies([3, 5], shift_mm=2.0), labeling(), TEMPLATE_DISCS)
    assert rep["used"] and rep["agreement"]["agree"] and "left_out_near" not in rep
    assert rep["agreement"]["checked_offset_spacings"] == {3: round(2 / 18, 3), 5: round(2 / 18, 3)}
    assert auto.kind == "disc" and auto.values.tolist() == list(range(3, 12))  # estimated C1/C2 left out


def test_joining_discs_moved_to_the_template_labels_convention():
    """With a template named, the discs that join are moved as the bare job's are (minus the
    detector's offset on the template's own discs, times the labeling's S-I scale, along its
    centerline); the level check still reads the measured points; dark discs, S-I sampled
    coarser than 2 mm, and no template keep them."""
    from spinereg.vertebrae.convention import label_offsets

    off = label_offsets("PAM50", 1)
    given = bodies([3, 5], shift_mm=2.0)
    lab = labeling()
    lab.scale = 1.1
    measured, _ = automatic_discs(given, lab, TEMPLATE_DISCS)
    auto, rep = automatic_discs(given, lab, TEMPLATE_DISCS, template="PAM50", si_spacing_mm=0.8)
    assert rep["used"] and rep["registered_as"]["converted"]
    assert rep["agreement"]["checked_offset_spacings"] == {3: round(2 / 18, 3), 5: round(2 / 18, 3)}
    assert auto.values.tolist() == measured.values.tolist() == list(range(3, 12))
    shift = auto.points[:, 2] - measured.points[:, 2]
    np.testing.assert_allclose(shift, [-off[v] * 1.1 for v in auto.values], atol=1e-9)
    assert abs(shift[auto.values.tolist().index(5)]) > 1.0  # C4/C5: +1.04 mm in template mm
    for kw in ({"si_spacing_mm": 5.0}, {}):
        same, rep = automatic_discs(given, lab, TEMPLATE_DISCS, template="PAM50", **kw) if kw else \
            automatic_discs(given, lab, TEMPLATE_DISCS)
        np.testing.assert_array_equal(same.points, measured.points)
    lab.polarity = -1
    dark, rep = automatic_discs(given, lab, TEMPLATE_DISCS, template="PAM50", si_spacing_mm=0.8)
    assert not rep["registered_as"]["converted"] and "dark" in rep["registered_as"]["why"]
    np.testing.assert_array_equal(dark.points, measured.points)


def test_one_level_off_labels_are_refused():
    # C3 and C5 bodies labelled C4 and C6: each lies one vertebra (one spacing) from its level
    off = Landmarks("body", np.array([4, 6]), bodies([3, 5]).points)
    auto, rep = automatic_discs(off, labeling(), TEMPLATE_DISCS)
    assert auto is None and not rep["used"] and "disagrees" in rep["reason"]
    assert rep["agreement"]["checked_offset_spacings"] == {4: 1.0, 6: 1.0}
    # half a level off (a body label on a disc) is refused too; 0.45 spacings is the limit
    assert automatic_discs(bodies([3, 5], shift_mm=0.5 * SPACING), labeling(), TEMPLATE_DISCS)[0] is None


def test_labeling_off_near_a_label_leaves_its_discs_out():
    # levels agree but the labels lie 0.4 spacings from where the labeling puts them: the discs
    # around them are left out, the others join
    auto, rep = automatic_discs(bodies([3, 5], shift_mm=0.4 * SPACING), labeling(), TEMPLATE_DISCS)
    assert rep["used"] and rep["left_out_near"] == [3, 5]
    assert auto.values.tolist() == [7, 8, 9, 10, 11]
    auto, rep = automatic_discs(bodies([3, 9], shift_mm=[0.0, 0.2 * SPACING]), labeling(), TEMPLATE_DISCS)
    assert rep["left_out_near"] == [9] and auto.values.tolist() == [3, 4, 5, 6, 7, 8, 11]


def test_ambiguous_or_uncheckable_labeling_is_not_used():
    auto, rep = automatic_discs(bodies([3, 5]), labeling(ambiguous=True), TEMPLATE_DISCS)
    assert auto is None and "ambiguous" in rep["reason"]
    auto, rep = automatic_discs(bodies([3, 5]), labeling(values=range(8, 12)), TEMPLATE_DISCS)
    assert auto is None and "cannot be checked" in rep["reason"] and rep["agreement"]["unchecked"] == [3, 5]
    rootlets = Landmarks("rootlet", np.array([3]), np.zeros((1, 3)))
    assert automatic_discs(rootlets, labeling(), TEMPLATE_DISCS)[0] is None


def test_given_disc_labels_win():
    given = Landmarks("disc", np.array([3, 5]), np.array([[0, 0, disc_z(3) + 2.0], [0, 0, disc_z(5) - 1.0]]))
    lab = labeling()
    assert level_agreement(given, lab)["agree"]
    auto, rep = automatic_discs(given, lab, TEMPLATE_DISCS)
    assert rep["used"] and 3 not in auto.values and 5 not in auto.values and 4 in auto.values


def test_arc_pairs_match_within_each_kind():
    # body 3 and disc 3 share a value but not a template point
    tb = Landmarks("body", np.array([3]), np.array([[0, 0, 100.0]]))
    sb = Landmarks("body", np.array([3]), np.array([[0, 0, 50.0]]))
    td = Landmarks("disc", np.array([3, 4]), np.array([[0, 0, 110.0], [0, 0, 90.0]]))
    sd = Landmarks("disc", np.array([4, 3]), np.array([[0, 0, 41.0], [0, 0, 59.0]]))
    s_ref, s_src = arc_pairs(StraightCord(), StraightCord(), [(tb, sb), (td, sd)])
    assert sorted(zip(s_ref.tolist(), s_src.tolist(), strict=True)) == [(90.0, 41.0), (100.0, 50.0), (110.0, 59.0)]


def test_cli_no_auto_discs_reaches_the_job(monkeypatch, tmp_path):
    """``--no-auto-discs`` turns the automatic discs off (template_job's ``auto_discs``)."""
    import spinereg.pipelines.registration as job
    from spinereg.cli.main import main

    seen = []

    def fake(*a, **kw):
        seen.append(kw["auto_discs"])
        raise SystemExit(0)

    monkeypatch.setattr(job, "template_job", fake)
    for extra, want in (([], True), (["--no-auto-discs"], False)):
        try:
            main(["register-to-template", "-i", "t2.nii.gz", "-s", "seg.nii.gz", "-l", "labels.nii.gz",
                  "-o", str(tmp_path / "out"), *extra])
        except SystemExit:
            pass
        assert seen[-1] is want
