"""Synthetic axial slices for training the cord segmentation models (domain randomisation).

Every sample is drawn from the PAM50 or MNI-Poly-AMU tissue maps (cord, grey matter, CSF, spine
mask) and nothing else: no subject image is used. A sample is one axial slice of a randomly
deformed template seen through a random acquisition:

geometry   random level along the whole cord (brainstem to conus, and below it: cauda equina),
           in-plane rotation, left-right mirror, tilt of the slice plane (obliquity, up to 35
           degrees), global and anisotropic scaling, smooth elastic deformation, and a separate
           deformation of the cord inside the canal (size 0.7-1.3x, A-P flattening, shift), so
           that the cord/canal ratio varies;
partial    slabs of random thickness (0.5-10 mm, averaged in 0.5 mm steps along the tilted
volume     slice normal) and in-plane acquisition voxels of 0.5-3 mm (per axis), resampled
           linearly back to the working pixel size as the inference does;
tissues    random intensity per tissue (white matter, grey matter, CSF, bone, two shells of
           epidural tissue, 3-8 random background "tissues" from a random partition of the
           plane, air outside a random body outline, distractor blobs and vessel-like discs,
           nerve roots / cauda equina threads inside the CSF), with a guaranteed cord/CSF contrast
           and a share of samples following generic MR contrast rules (T1-, T2-, T2*-, DWI-like);
artefacts  texture per tissue, bias field, gamma, Gaussian/Rician noise, CSF flow voids;
negatives  a few samples show no cord (noise only, blobs only, below the conus).

The target is the cord's volume fraction in each output pixel (slab average), so the network
learns to predict partial volume and a 0.5 threshold gives the cord at any slice thickness.

``make_sample(rng, tpl, px_mm, n, mode)`` is the whole recipe; ``Templates`` loads the maps once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

#: bumped whenever the recipe changes (recorded in the model provenance with the git commit)
GENERATOR_VERSION = 3

#: files used, relative to SPINEREG_DATA (written into the model's provenance)
TEMPLATE_FILES = {
    "PAM50": {"cord": "PAM50/template/PAM50_cord.nii.gz", "gm": "PAM50/template/PAM50_gm.nii.gz",
              "csf": "PAM50/template/PAM50_csf.nii.gz", "spine": "PAM50/template/PAM50_spine.nii.gz"},
    "MNI-Poly-AMU": {"cord": "MNI-Poly-AMU/template/MNI-Poly-AMU_cord.nii.gz",
                     "gm": "MNI-Poly-AMU/template/MNI-Poly-AMU_GM.nii.gz",
                     "csf": "MNI-Poly-AMU/template/MNI-Poly-AMU_CSF.nii.gz"},
}


@dataclass
class Template:
    name: str
    maps: dict[str, np.ndarray]  # uint8 volumes (0..255 for the probabilistic GM)
    affine: np.ndarray  # voxel -> template mm
    inv: np.ndarray
    centre: np.ndarray  # (nz, 2) cord (or canal) centre per z slice, mm
    z_range: tuple[float, float]  # mm range of z with a cord
    z_all: tuple[float, float]  # mm range with a canal


class Templates:
    """The tissue maps of PAM50 and MNI-Poly-AMU, loaded once (about 150 MB as uint8)."""

    def __init__(self, root: str | Path | None = None, names=("PAM50", "MNI-Poly-AMU")):
        root = Path(root or os.environ.get("SPINEREG_DATA", "/work/shared/data"))
        self.root = root
        self.items = [self._load(root, n) for n in names]

    @staticmethod
    def _load(root: Path, name: str) -> Template:
        files = TEMPLATE_FILES[name]
        maps = {}
        affine = None
        for role, rel in files.items():
            img = nib.load(str(root / rel))
            data = np.asarray(img.dataobj, dtype=np.float32)
            if role == "gm":
                maps[role] = np.clip(np.rint(data * 255), 0, 255).astype(np.uint8)
            else:
                maps[role] = (data > 0.5).astype(np.uint8)
            affine = img.affine
        # the templates' CSF masks leave a one-voxel gap around the cord (PAM50: 61 % of the
        # first ring); in reality CSF touches the cord: close the canal (holes per axial slice,
        # and where CSF lies within a voxel of that ring) and give the gap to the CSF
        cord = maps["cord"] > 0
        st2 = np.zeros((3, 3, 3), bool)
        st2[:, :, 1] = ndimage.generate_binary_structure(2, 1)
        canal = ndimage.binary_fill_holes(cord | (maps["csf"] > 0), structure=st2)
        canal |= ndimage.binary_dilation(cord, st2, iterations=2) & ndimage.binary_dilation(maps["csf"] > 0, st2)
        maps["csf"] = (canal & ~cord).astype(np.uint8)
        # epidural shells: two 1.5 mm layers around the canal (outside the bone)
        vox = float(np.sqrt((affine[:3, :3] ** 2).sum(0))[0])
        it = max(1, int(round(1.5 / vox)))
        st = ndimage.generate_binary_structure(3, 1)
        st[:, :, 0] = st[:, :, 2] = False  # in-plane dilation only
        d1 = ndimage.binary_dilation(canal, st, iterations=it)
        d2 = ndimage.binary_dilation(d1, st, iterations=it)
        bone = maps.get("spine", np.zeros_like(maps["cord"])) > 0
        other = np.zeros(canal.shape, np.uint8)  # 1, 2: epidural shells, 3: bone
        other[d1 & ~canal & ~bone] = 1
        other[d2 & ~d1 & ~bone] = 2
        other[bone & ~canal] = 3
        maps["other"] = other
        # centre of the cord per slice (canal where there is no cord), in mm
        nz = canal.shape[2]
        centre = np.full((nz, 2), np.nan)
        has_cord = np.zeros(nz, bool)
        for k in range(nz):
            m = maps["cord"][:, :, k] > 0
            if m.sum() >= 4:
                has_cord[k] = True
            elif canal[:, :, k].sum() >= 4:
                m = canal[:, :, k]
            else:
                continue
            ij = np.argwhere(m).mean(0)
            centre[k] = affine[:2, :2] @ ij + affine[:2, 3]
        ok = np.isfinite(centre[:, 0])
        ks = np.arange(nz)
        for c in range(2):
            centre[:, c] = np.interp(ks, ks[ok], centre[ok, c])
        centre[:, 0] = ndimage.uniform_filter1d(centre[:, 0], 9)
        centre[:, 1] = ndimage.uniform_filter1d(centre[:, 1], 9)
        zmm = affine[2, 2] * ks + affine[2, 3]
        kc = np.flatnonzero(has_cord)
        kk = np.flatnonzero(ok)
        return Template(name, maps, affine, np.linalg.inv(affine), centre,
                        (float(zmm[kc[0]]), float(zmm[kc[-1]])), (float(zmm[kk[0]]), float(zmm[kk[-1]])))

    def centre_at(self, t: Template, z_mm: float) -> np.ndarray:
        k = (z_mm - t.affine[2, 3]) / t.affine[2, 2]
        k = int(np.clip(round(k), 0, len(t.centre) - 1))
        return t.centre[k]


# ---------------------------------------------------------------------------------------------
# small random fields
# ---------------------------------------------------------------------------------------------
def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (Gaussian-filtered noise, computed coarse)."""
    f = max(1, int(scale_px / 3))
    small = tuple(max(4, s // f + 3) for s in shape)
    noise = rng.standard_normal(small).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, max(0.5, scale_px / f / 2), mode="wrap")
    out = ndimage.zoom(noise, (shape[0] / small[0] * 1.0001, shape[1] / small[1] * 1.0001), order=1)
    out = out[: shape[0], : shape[1]]
    out -= out.mean()
    sd = out.std()
    return out / sd if sd > 0 else out


def random_partition(rng: np.random.Generator, shape, n_classes: int, scale_px: float) -> np.ndarray:
    """Integer map of ``n_classes`` smooth random regions (argmax of smooth fields)."""
    fields = np.stack([smooth_field(rng, shape, scale_px * rng.uniform(0.6, 1.6)) for _ in range(n_classes)])
    return np.argmax(fields, axis=0)


def _disc(shape, cx, cy, rx, ry, ang=0.0):
    i, j = np.mgrid[0: shape[0], 0: shape[1]].astype(np.float32)
    c, s = np.cos(ang), np.sin(ang)
    x, y = i - cx, j - cy
    u, v = c * x + s * y, -s * x + c * y
    return (u / rx) ** 2 + (v / ry) ** 2


# ---------------------------------------------------------------------------------------------
# one sample
# ---------------------------------------------------------------------------------------------
def _frame(tilt_deg: float, tilt_dir: float, rot_deg: float):
    """Orthonormal in-plane axes (u, v) and normal n of a tilted axial plane (template mm)."""
    th, ps, ph = np.deg2rad(tilt_deg), tilt_dir, np.deg2rad(rot_deg)
    n = np.array([np.sin(th) * np.cos(ps), np.sin(th) * np.sin(ps), np.cos(th)])
    # rotate the world x/y axes by the tilt (Rodrigues about the axis z x n)
    axis = np.cross([0.0, 0.0, 1.0], n)
    s = np.linalg.norm(axis)
    if s < 1e-9:
        r = np.eye(3)
    else:
        axis /= s
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        r = np.eye(3) + np.sin(th) * k + (1 - np.cos(th)) * k @ k
    rz = np.array([[np.cos(ph), -np.sin(ph), 0], [np.sin(ph), np.cos(ph), 0], [0, 0, 1]])
    m = r @ rz
    return m[:, 0], m[:, 1], m[:, 2]


CONTRAST_RULES = {
    # (cord/wm, gm - wm, csf, bone, fat-ish shells, background mean) -- generic, jittered
    "t2": (0.35, 0.05, 0.95, 0.30, 0.55, 0.35),
    "t1": (0.65, -0.05, 0.20, 0.55, 0.85, 0.50),
    "t2s": (0.40, 0.20, 0.90, 0.15, 0.35, 0.40),
    "dwi": (0.80, 0.05, 0.10, 0.08, 0.10, 0.08),
    "mt": (0.45, 0.08, 0.85, 0.25, 0.45, 0.55),
    # v3: T1w with bright epidural fat and marrow (cord bright, CSF dark, vertebral bodies as
    # bright as the cord) and proton-density-like views (MT off: low cord/CSF contrast)
    "t1_fat": (0.75, -0.04, 0.30, 0.80, 0.95, 0.45),
    "pd": (0.55, 0.04, 0.78, 0.40, 0.50, 0.42),
}
#: v3: probability that a sample follows a contrast rule, and the rules' weights
RULE_SHARE = 0.5
RULE_WEIGHTS = {"t2": 0.15, "t1": 0.2, "t2s": 0.1, "dwi": 0.1, "mt": 0.1, "t1_fat": 0.2, "pd": 0.15}


def make_sample(rng: np.random.Generator, tpls: Templates, px_mm: float = 0.5, n: int = 80,
                mode: str = "fine") -> tuple[np.ndarray, np.ndarray]:
    """One training pair ``(image, cord_fraction)``, both ``(n, n)`` float32, image normalised.

    ``mode="fine"``: a crop of ``n * px_mm`` mm near the cord (off-centre by up to a third of the
    field of view); ``mode="locate"``: a whole-body slice (random field of view 30-260 mm, body
    outline, shoulders, airway) at a coarse pixel size.
    """
    neg = rng.random()
    if neg < 0.03:  # pure noise / pure smooth texture, no cord
        img = rng.standard_normal((n, n)).astype(np.float32)
        if rng.random() < 0.5:
            img = ndimage.gaussian_filter(img, rng.uniform(0.5, 3))
        if rng.random() < 0.5:
            img = np.abs(img)
        return _normalise(img), np.zeros((n, n), np.float32)
    empty_scene = neg < 0.06  # tissues, blobs and body outline but no canal at all
    t = tpls.items[0] if rng.random() < 0.75 else tpls.items[1]
    locate = mode == "locate"
    # --- level: along the cord, 12 % below the conus (cauda equina) or at the top
    zlo, zhi = t.z_range
    no_cord = t.name == "PAM50" and rng.random() < 0.08  # below the conus: the canal without cord
    if no_cord:
        z0 = rng.uniform(t.z_all[0] + 3, t.z_all[0] + 40)
    else:
        z0 = rng.uniform(zlo + 1, zhi - 3)
    c3 = np.array([*tpls.centre_at(t, z0), z0])
    # --- geometry
    tilt = min(abs(rng.normal(0, 13)), 38.0) if rng.random() < 0.8 else rng.uniform(0, 38)
    frame_u, frame_v, frame_n = _frame(tilt, rng.uniform(0, 2 * np.pi), np.clip(rng.normal(0, 12), -35, 35))
    mirror = rng.random() < 0.5
    sg = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
    aniso = rng.uniform(0.87, 1.15)
    fov = n * px_mm
    if locate:
        off = rng.uniform(-0.38, 0.38, 2) * fov
    else:
        off = rng.normal(0, 0.12, 2) * fov
        off = np.clip(off, -0.3 * fov, 0.3 * fov)
    ax = (np.arange(n) - (n - 1) / 2) * px_mm
    ss = 2 if locate else 1  # supersampling for coarse pixels
    if ss > 1:
        sub = (np.arange(n * ss) - (n * ss - 1) / 2) * px_mm / ss
        ax = sub
    nn = len(ax)
    a = ax[:, None] + off[0]
    b = ax[None, :] + off[1]
    a, b = np.broadcast_arrays(a, b)
    if mirror:
        a = -a
    # output mm -> template-plane mm (scaling, anisotropy)
    ta = a / sg * aniso
    tb = b / sg / aniso
    # elastic in-plane deformation
    amp = rng.uniform(0, 1.8)
    if amp > 0.05:
        sc = rng.uniform(8, 20) / (px_mm / ss)
        ta = ta + amp * smooth_field(rng, (nn, nn), sc)
        tb = tb + amp * smooth_field(rng, (nn, nn), sc)
    # cord inside the canal: size, A-P flattening, shift
    s_c = np.exp(rng.uniform(np.log(0.72), np.log(1.3)))
    f_ap = rng.uniform(0.78, 1.08) if rng.random() < 0.5 else 1.0
    shift = rng.normal(0, 0.6, 2)
    r2 = (ta ** 2 + tb ** 2) / (7.0 ** 2)
    w = np.exp(-r2)
    ca = ta * (1 + (1 / s_c - 1) * w) - shift[0] * w
    # the A-P axis in the template plane is ~ frame_v's y; flatten along template b
    cb = tb * (1 + (1 / (s_c * f_ap) - 1) * w) - shift[1] * w
    # slab
    if locate:
        thick = rng.uniform(0.5, 8)
    else:
        thick = rng.uniform(0.5, 1.5) if rng.random() < 0.4 else rng.uniform(1.5, 10.0)
    nk = int(np.clip(round(thick / 0.5), 1, 10))
    offs = (np.arange(nk) - (nk - 1) / 2) * (thick / nk)

    lin = t.inv[:3, :3]
    c_v = lin @ c3 + t.inv[:3, 3]
    u_v, v_v, n_v = lin @ frame_u, lin @ frame_v, lin @ frame_n

    def points(pa, pb):
        pa = pa.reshape(1, -1).astype(np.float32)
        pb = pb.reshape(1, -1).astype(np.float32)
        base = (c_v[:, None] + u_v[:, None] * pa + v_v[:, None] * pb).astype(np.float32)
        return np.concatenate([base + (o * n_v)[:, None].astype(np.float32) for o in offs], axis=1)

    p_img = points(ta, tb)
    p_cord = points(ca, cb)
    m = t.maps

    def avg(vol, pts, order=1):
        out = ndimage.map_coordinates(vol, pts, order=order, mode="constant", cval=0.0, output=np.float32)
        return out.reshape(nk, nn, nn).mean(0)

    cord0 = avg(m["cord"], p_img)
    csf = avg(m["csf"], p_img)
    cord = avg(m["cord"], p_cord) * (0.0 if no_cord else 1.0)
    gm = np.minimum(avg(m["gm"], p_cord) / 255.0, cord)
    other = ndimage.map_coordinates(m["other"], p_img, order=0, mode="constant", cval=0).reshape(nk, nn, nn)
    shell1 = (other == 1).mean(0, dtype=np.float32)
    shell2 = (other == 2).mean(0, dtype=np.float32)
    if "spine" in m:
        bone = (other == 3).mean(0, dtype=np.float32)
        rb = rng.uniform(22, 45) if locate else rng.uniform(25, 60)
        rad = np.sqrt(ta ** 2 + tb ** 2)
        bone *= np.clip((rb - rad) / 6.0, 0, 1)
    else:
        bone = np.zeros_like(cord)
    if empty_scene:
        cord0, csf, cord, gm, shell1, shell2, bone = (np.zeros_like(cord) for _ in range(7))
    canal = np.clip(np.maximum(cord0 + csf, cord), 0, 1)
    csf = np.clip(canal - cord, 0, 1)
    bone = np.minimum(bone, 1 - canal)
    shell1 = np.minimum(shell1, 1 - canal - bone)
    shell2 = np.minimum(shell2, np.clip(1 - canal - bone - shell1, 0, 1))
    rest = np.clip(1 - canal - bone - shell1 - shell2, 0, 1)
    wm = cord - gm
    target = cord
    # --- background tissues
    n_bg = int(rng.integers(3, 9))
    part = random_partition(rng, (nn, nn), n_bg, rng.uniform(6, 25) / (px_mm / ss))
    layers = {"wm": wm, "gm": gm, "csf": csf, "bone": bone, "shell1": shell1, "shell2": shell2}
    # body outline (air outside) for whole-field views and sometimes for crops
    body = np.ones((nn, nn), np.float32)
    pxs = px_mm / ss
    extra = {}
    if locate or rng.random() < 0.05:
        # body centre anterior to the cord; coordinates in output pixels
        ci = (nn - 1) / 2 - off[0] / pxs
        cj = (nn - 1) / 2 - off[1] / pxs
        rx = rng.uniform(45, 85) / pxs
        ry = rng.uniform(40, 75) / pxs
        post = rng.uniform(25, 60) / pxs  # skin behind the cord
        cjb = cj - post + ry
        d = _disc((nn, nn), ci, cjb, rx, ry, rng.normal(0, 0.1))
        bodym = d < 1
        if rng.random() < 0.35:  # shoulders
            for sgn in (-1, 1):
                sx = ci + sgn * rng.uniform(70, 120) / pxs
                bodym |= _disc((nn, nn), sx, cjb + rng.normal(0, 15) / pxs, rng.uniform(30, 55) / pxs,
                               rng.uniform(30, 60) / pxs) < 1
        bodym = ndimage.gaussian_filter(bodym.astype(np.float32), 0.7)
        fat_w = rng.uniform(2, 15) / pxs
        inner = ndimage.gaussian_filter((ndimage.distance_transform_edt(bodym > 0.5) > fat_w).astype(np.float32), 0.7)
        body = bodym
        extra["subcut"] = np.clip(bodym - inner, 0, 1)
        if rng.random() < 0.7:  # airway
            air_r = rng.uniform(5, 11) / pxs
            aw = _disc((nn, nn), ci + rng.normal(0, 5) / pxs, cj + rng.uniform(30, 55) / pxs, air_r,
                       air_r * rng.uniform(0.6, 1.2))
            extra["airway"] = (aw < 1).astype(np.float32)
    # distractors: blobs and vessel-like discs in the background
    dis = np.zeros((nn, nn), np.float32)
    n_dis = int(rng.integers(0, 10 if locate else 6))
    dlab = np.zeros((nn, nn), np.int32)
    for q in range(n_dis):
        r = rng.uniform(1.0, 7.0) / pxs
        dd = _disc((nn, nn), rng.uniform(0, nn), rng.uniform(0, nn), r, r * rng.uniform(0.5, 1.3),
                   rng.uniform(0, np.pi))
        mk = dd < 1
        dlab[mk] = q + 1
        dis[mk] = 1
    # nerve roots / cauda equina: small dots inside the CSF (label 0)
    roots = np.zeros((nn, nn), np.float32)
    below = no_cord or cord.max() < 0.2
    if (below and rng.random() < 0.85) or rng.random() < 0.25:
        k = int(rng.integers(3, 25 if below else 6))
        cand = np.argwhere(csf > 0.6)
        if len(cand):
            for idx in cand[rng.integers(0, len(cand), k)]:
                r = rng.uniform(0.25, 0.8) / pxs
                roots[_disc((nn, nn), idx[0], idx[1], r, r) < 1] = 1
            roots = np.minimum(ndimage.gaussian_filter(roots, 0.5), csf)
    # --- intensities
    rule = None
    if rng.random() < RULE_SHARE:
        names = list(RULE_WEIGHTS)
        w = np.array([RULE_WEIGHTS[k] for k in names])
        rule = names[int(rng.choice(len(names), p=w / w.sum()))]
    inten = _intensities(rng, rule, n_bg)
    img = np.zeros((nn, nn), np.float32)
    tex_scale = rng.uniform(2, 8) / pxs
    tex_amp = rng.uniform(0, 0.12)
    tex = 1 + tex_amp * smooth_field(rng, (nn, nn), tex_scale) if tex_amp > 0.01 else 1.0
    for name, lay in layers.items():
        img += lay * inten[name]
    img = img * tex
    bgv = np.asarray(inten["bg"], np.float32)[part]
    if tex_amp > 0.01:
        bgv = bgv * (1 + tex_amp * smooth_field(rng, (nn, nn), tex_scale))
    # distractor intensities: some mimic the cord or the CSF
    if n_dis:
        dv = rng.uniform(0, 1, n_dis + 1).astype(np.float32)
        for q in range(1, n_dis + 1):
            if rng.random() < 0.3:
                dv[q] = inten["wm"] if rng.random() < 0.5 else inten["csf"]
        bgv = np.where(dis > 0, dv[dlab], bgv)
    if "subcut" in extra:
        bgv = bgv * (1 - extra["subcut"]) + extra["subcut"] * inten["fat"]
    if "airway" in extra:
        bgv = bgv * (1 - extra["airway"]) + extra["airway"] * inten["air"]
    img += rest * bgv
    # roots replace CSF signal
    img = img * (1 - roots) + roots * (inten["wm"] + rng.normal(0, 0.05))
    # CSF flow voids
    if rng.random() < 0.15:
        fv = np.zeros_like(img)
        cand = np.argwhere(csf > 0.7)
        if len(cand):
            for idx in cand[rng.integers(0, len(cand), int(rng.integers(1, 4)))]:
                r = rng.uniform(0.5, 2.0) / pxs
                fv[_disc((nn, nn), idx[0], idx[1], r, r) < 1] = 1
            fv = np.minimum(ndimage.gaussian_filter(fv, 1.0), csf)
            img = img * (1 - fv * rng.uniform(0.3, 0.9))
    img = img * body + (1 - body) * inten["air"]
    # --- acquisition: in-plane resolution, bias, noise, gamma
    if ss > 1:
        img = img.reshape(n, ss, n, ss).mean((1, 3))
        target = target.reshape(n, ss, n, ss).mean((1, 3))
    img = _acquire(rng, img, px_mm)
    if rng.random() < (0.25 if locate else 0.1):  # edge of the field of view (zero, as the inference)
        img = _normalise(img)
        w = rng.integers(int((80 if locate else 24) / px_mm), n + 1, 2)
        o = [int(rng.integers(0, n - ww + 1)) for ww in w]
        keep = np.zeros((n, n), bool)
        keep[o[0]: o[0] + w[0], o[1]: o[1] + w[1]] = True
        return np.where(keep, img, 0).astype(np.float32), np.where(keep, target, 0).astype(np.float32)
    return _normalise(img), target.astype(np.float32)


def _intensities(rng: np.random.Generator, rule: str | None, n_bg: int) -> dict:
    if rule is None:
        while True:
            wm, csf = rng.uniform(0, 1, 2)
            if abs(wm - csf) >= 0.15:
                break
        gm = float(np.clip(wm + rng.normal(0, 0.12), 0, 1))
        bone, s1, s2, fat = rng.uniform(0, 1, 4)
        bgmean = rng.uniform(0.05, 0.9)
    else:
        c, dg, f, bo, sh, bgm = CONTRAST_RULES[rule]
        j = lambda x, s=0.08: float(np.clip(x + rng.normal(0, s), 0, 1))  # noqa: E731
        wm, csf = j(c), j(f)
        if abs(wm - csf) < 0.15:
            csf = float(np.clip(wm + 0.2 * np.sign(f - c), 0, 1))
        gm = j(wm + dg, 0.04)
        bone, s1, s2, fat, bgmean = j(bo, 0.12), j(sh, 0.15), j(sh, 0.15), j(sh, 0.2), bgm
    bg = np.clip(rng.normal(bgmean, rng.uniform(0.05, 0.35), n_bg), 0, 1)
    air = float(rng.uniform(0, 0.08))
    return {"wm": wm, "gm": gm, "csf": csf, "bone": bone, "shell1": s1,
            "shell2": s2 if rng.random() < 0.6 else s1, "bg": bg, "fat": fat, "air": air}


def _acquire(rng: np.random.Generator, img: np.ndarray, px_mm: float) -> np.ndarray:
    n = img.shape[0]
    # in-plane acquisition voxel per axis (mm), then linear resampling back to px_mm
    acq = []
    for _ in range(2 if px_mm < 1.3 else 0):
        u = rng.random()
        acq.append(px_mm if u < 0.15 else (rng.uniform(px_mm, 1.3) if u < 0.85 else rng.uniform(1.3, 3.0)))
    acq = np.maximum(np.array(acq or [px_mm, px_mm]), px_mm)
    f = acq / px_mm
    if np.any(f > 1.05):
        sig = 0.42 * np.sqrt(np.maximum(f ** 2 - 1, 0))
        img = ndimage.gaussian_filter(img, sig)
        small = tuple(max(4, int(round(n / ff))) for ff in f)
        off = rng.uniform(0, 1, 2)
        # sample the blurred image on the acquisition grid, then back on the working grid
        ci = (np.arange(small[0]) + off[0] * 0.999) * (n / small[0])
        cj = (np.arange(small[1]) + off[1] * 0.999) * (n / small[1])
        low = ndimage.map_coordinates(img, np.meshgrid(ci, cj, indexing="ij"), order=1, mode="nearest")
        bi = np.clip((np.arange(n) - off[0] * 0.999 * n / small[0]) / (n / small[0]), 0, small[0] - 1)
        bj = np.clip((np.arange(n) - off[1] * 0.999 * n / small[1]) / (n / small[1]), 0, small[1] - 1)
        img = ndimage.map_coordinates(low, np.meshgrid(bi, bj, indexing="ij"), order=1, mode="nearest")
    # Gibbs ringing (k-space truncation, per axis) and ghosting along a phase-encode axis
    if rng.random() < 0.25:
        k = np.fft.fft2(img)
        for ax in range(2):
            keep = rng.uniform(0.45, 0.9) * n / 2
            fr = np.abs(np.fft.fftfreq(n) * n)
            shape = [1, 1]
            shape[ax] = n
            k = k * (fr <= keep).reshape(shape)
        img = np.real(np.fft.ifft2(k)).astype(np.float32)
    if rng.random() < 0.1:
        ax = int(rng.integers(0, 2))
        img = img + rng.uniform(0.03, 0.15) * np.roll(img, n // 2 + int(rng.integers(-3, 4)), axis=ax)
    # bias field
    if rng.random() < 0.8:
        img = img * np.exp(rng.uniform(0, 0.35) * smooth_field(rng, img.shape, rng.uniform(30, 120) / px_mm))
    # gamma
    img = np.clip(img, 0, None) ** np.exp(rng.normal(0, 0.25))
    # noise (Gaussian or Rician)
    sd = (rng.uniform(0, 0.1) if rng.random() < 0.85 else rng.uniform(0.1, 0.3)) * (float(np.percentile(img, 99)) + 1e-3)
    if rng.random() < 0.5:
        img = np.sqrt((img + sd * rng.standard_normal(img.shape)) ** 2 + (sd * rng.standard_normal(img.shape)) ** 2)
    else:
        img = img + sd * rng.standard_normal(img.shape)
    return img.astype(np.float32)


def _normalise(img: np.ndarray) -> np.ndarray:
    """As the inference does (spinereg.segment.model.normalise): 1st-99th percentile -> 0-1."""
    lo, hi = np.percentile(img, [1, 99])
    if hi - lo < 1e-6:
        return np.zeros_like(img, dtype=np.float32)
    return np.clip((img - lo) / (hi - lo), -0.5, 1.5).astype(np.float32)
