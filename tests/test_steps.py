"""The registration step language: parsing, defaults, errors, round trip, presets, merging."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from spinereg.errors import InputError
from spinereg.register import (
    Step,
    format_steps,
    list_presets,
    load_preset,
    merge_steps,
    parse_param,
    parse_step,
    preset_info,
)
from spinereg.register.steps import KEYS

SCT_EXAMPLE = "step=1,type=seg,algo=centermassrot:step=2,type=seg,algo=bsplinesyn,metric=MeanSquares,iter=3"


def test_parse_example_with_defaults():
    s1, s2 = parse_param(SCT_EXAMPLE)
    assert (s1.step, s1.type, s1.algo) == (1, "seg", "centermassrot")
    assert (s2.step, s2.type, s2.algo, s2.metric, s2.iter) == (2, "seg", "bsplinesyn", "MeanSquares", 3)
    # SCT defaults
    assert s1.metric == "MeanSquares" and s1.iter == 10 and s1.shrink == 1
    assert s1.smooth == 0.0 and s1.gradStep == 0.5 and s1.deformation == "1x1x0"
    assert s1.slicewise == 0 and s1.poly == 5 and s1.smoothWarpXY == 2.0
    assert s1.pca_eigenratio_th == 1.6 and s1.rot_method == "pca" and s1.laplacian == 0.0
    assert s1.dof == "Tx_Ty_Tz_Rx_Ry_Rz"
    assert isinstance(s2.iter, int) and isinstance(s2.smooth, float)


def test_defaults_table_matches_dataclass():
    table = json.loads(resources.files("spinereg.register").joinpath("presets/step_defaults.json").read_text())
    assert tuple(table["keys"]) == KEYS
    step = Step(step=1, type="im")
    for key, spec in table["keys"].items():
        if spec["default"] is not None:
            assert getattr(step, key) == spec["default"], key


def test_case_insensitive_values_are_canonicalised():
    (s,) = parse_param("step=1,type=IM,algo=SyN,metric=meansquares,rot_method=PCAHOG")
    assert (s.type, s.algo, s.metric, s.rot_method) == ("im", "syn", "MeanSquares", "pcahog")


@pytest.mark.parametrize(
    "text, bad, allowed",
    [
        ("step=1,type=seg,algo=magic", "algo", "centermassrot"),
        ("step=1,type=seg,metric=NCC", "metric", "MeanSquares"),
        ("step=1,type=bone,algo=syn", "type", "imseg"),
        ("step=1,type=seg,rot_method=svd", "rot_method", "pcahog"),
        ("step=1,type=seg,iter=many", "iter", "integer"),
        ("step=1,type=seg,iter=2.5", "iter", "integer"),
        ("step=1,type=seg,deformation=1x1", "deformation", "AxBxC"),
        ("step=1,type=seg,slicewise=2", "slicewise", "0, 1"),
        ("step=1,type=seg,smooth=-1", "smooth", ">= 0"),
        # nan/inf passed the range check and reached antsRegistration (or int(nan)), session 37
        ("step=1,type=seg,smooth=nan", "smooth", "not a finite number"),
        ("step=1,type=seg,gradStep=inf", "gradStep", "not a finite number"),
        ("step=1,type=seg,iter=nan", "iter", "not a finite number"),
        ("step=0,dof=Tx_Qz", "dof", "Tx"),
    ],
)
def test_bad_value_names_key_and_allowed(text, bad, allowed):
    with pytest.raises(InputError) as err:
        parse_param(text)
    msg = str(err.value)
    assert repr(bad) in msg and allowed in msg


def test_unknown_key_lists_keys():
    with pytest.raises(InputError) as err:
        parse_param("step=1,type=seg,algo=syn,iterations=3")
    assert "'iterations'" in str(err.value) and "gradStep" in str(err.value)


@pytest.mark.parametrize(
    "text, what",
    [
        ("step=1,type=seg:step=3,type=seg", "consecutively"),
        ("step=2,type=seg", "consecutively"),
        ("step=1,type=seg:step=1,type=im", "more than once"),
        ("type=seg,algo=syn", "step=N"),
        ("step=1,algo=syn", "'type'"),
        ("step=1,type=seg,iter", "key=value"),
        ("step=1,type=seg,iter=3,iter=4", "twice"),
        ("", "empty"),
    ],
)
def test_structure_errors(text, what):
    with pytest.raises(InputError, match=what):
        parse_param(text)


def test_step0_defaults_to_label_and_order_is_sorted():
    steps = parse_param("step=2,type=seg,algo=bsplinesyn:step=0,dof=Tx_Ty_Tz_Sz:step=1,type=seg,algo=centermass")
    assert [s.step for s in steps] == [0, 1, 2]
    assert steps[0].type == "label" and steps[0].dof == "Tx_Ty_Tz_Sz"


def test_round_trip():
    texts = [
        SCT_EXAMPLE,
        "step=0,type=label,dof=Tx_Ty_Tz_Sz:step=1,type=imseg,algo=centermassrot,rot_method=pcahog,pca_eigenratio_th=2.5",
        "step=1,type=im,algo=slicereg,metric=CC,poly=3,smooth=1.5,gradStep=0.2,deformation=1x1x1,shrink=2",
        "step=1,type=seg,algo=columnwise,smoothWarpXY=3,laplacian=0.5,slicewise=1",
    ]
    for text in texts:
        steps = parse_param(text)
        assert parse_param(format_steps(steps)) == steps
        assert parse_param(format_steps(steps, full=True)) == steps
        for s in steps:
            assert parse_step(s.to_string()) == s
    assert format_steps(parse_param(SCT_EXAMPLE)) == (
        "step=1,type=seg,algo=centermassrot:step=2,type=seg,algo=bsplinesyn,iter=3"
    )


def test_replace_validates():
    s = parse_step("step=1,type=seg,algo=syn")
    assert s.replace(iter="4").iter == 4
    with pytest.raises(InputError, match="'metric'"):
        s.replace(metric="bogus")
    with pytest.raises(InputError, match="'nope'"):
        s.replace(nope=1)


def test_presets_load():
    names = list_presets()
    assert {"template_default", "template_fast", "multimodal_default", "multimodal_seg"} <= set(names)
    assert "step_defaults" not in names
    for name in names:
        steps = load_preset(name)
        assert steps and parse_param(format_steps(steps)) == steps
        assert preset_info(name)["description"]
    tmpl = load_preset("template_default")
    assert [s.step for s in tmpl] == [0, 1, 2]
    assert (tmpl[1].type, tmpl[1].algo, tmpl[1].rot_method) == ("imseg", "centermassrot", "pcahog")
    assert (tmpl[2].type, tmpl[2].algo, tmpl[2].metric, tmpl[2].iter, tmpl[2].smooth) == (
        "seg", "bsplinesyn", "MeanSquares", 3, 1.0)
    (mm,) = load_preset("multimodal_default")
    assert (mm.step, mm.type, mm.algo) == (1, "im", "syn")
    seg = load_preset("multimodal_seg")
    assert [s.algo for s in seg] == ["centermass", "bsplinesyn"] and all(s.type == "seg" for s in seg)
    assert parse_param("template_default") == tmpl


def test_unknown_preset():
    with pytest.raises(InputError, match="template_default"):
        parse_param("template_slow")


def test_merge_keeps_label_step0():
    base = load_preset("template_default")
    user = parse_param("step=1,type=seg,algo=centermass:step=2,type=seg,algo=syn,iter=5")
    merged = merge_steps(base, user)
    assert [s.step for s in merged] == [0, 1, 2]
    assert merged[0] == base[0]
    assert merged[1:] == user
    # a user step 0 updates only the keys it gives
    merged = merge_steps(base, parse_param("step=0,iter=7:step=1,type=seg,algo=centermass"))
    assert merged[0].dof == "Tx_Ty_Tz_Sz" and merged[0].iter == 7
    assert [s.step for s in merged] == [0, 1]
    # fewer user steps than the default: the extra default steps go
    assert len(merge_steps(base, parse_param("step=1,type=seg,algo=centermass"))) == 2
