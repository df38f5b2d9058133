"""Sweep of ``spinereg warp-template`` for results that would fool a user (session 40).

Real data: SCT's sample warps (``t2/warp_template2anat``, ``mt/warp_template2mt``) with the
template shipped beside them (``-t PAM50_small``).
"""

from __future__ import annotations

from spinereg.register.warp_template import warp_template


def test_a_warp_covering_part_of_the_destination_is_warned_of(sct_data, tmp_path, caplog):
    t2 = sct_data / "t2" / "t2.nii.gz"
    with caplog.at_level("WARNING"):  # mt's warp (on mt1's 40x40x5 grid) given for t2
        res = warp_template(t2, [sct_data / "mt" / "warp_template2mt.nii.gz"], tmp_path / "a",
                            template="PAM50_small")
    assert any("covers 24 % of the destination" in n for n in res.notes)
    assert "not registered" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # t2's own warp: on t2's grid, no word
        res = warp_template(t2, [sct_data / "t2" / "warp_template2anat.nii.gz"], tmp_path / "b",
                            template="PAM50_small")
    assert not res.notes and not caplog.records
