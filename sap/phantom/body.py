"""The reference adult, posed and scaled for one subject, painted as tissues and bone labels.

The reference body is written in millimetres for an adult of about 1.75 m, in a local frame
with x to the subject's right, y anterior, z superior and the vertex at z = 0 (so a structure
``d`` mm below the vertex sits at z = -d). The subject's size, fat thickness, spinal
curvature, organ sizes, lymph nodes and pose come from :func:`sap.phantom.subject.sample_subject`.
Landmark heights follow common anthropometric proportions; they are meant to look right at
4-6 mm voxels, not to be an atlas.

Bones are painted before soft tissue is layered, because the body outline is widened to cover
every bone (skin always lies over bone), and labelled bones are painted after unlabelled ones
(skull, ribs, forearms, tibiae) so joints keep the label of the bone the paper counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sap.phantom.anatomy import LABEL, TISSUE, Anatomy
from sap.phantom.geometry import (
    Capsule,
    Difference,
    Ellipsoid,
    Frame,
    Grid,
    HalfSpace,
    Intersection,
    Loft,
    Shape,
    Superquadric,
    Union,
    rotation,
)
from sap.phantom.painter import Painter

# Lean (muscle-surface) trunk outline: depth below vertex, half-width, half-depth, centre y.
_TRUNK = np.array(
    [
        (180, 45, 48, -8),
        (285, 50, 52, -10),
        (310, 140, 90, -2),
        (345, 160, 105, 0),
        (450, 150, 110, 5),
        (600, 138, 108, 8),
        (700, 132, 105, 8),
        (810, 158, 105, 3),
        (900, 150, 95, 5),
        (955, 110, 75, 5),
    ],
    dtype=np.float64,
)

# Vertebral levels: name, label, depth of first and last level, body half-sizes (first, last),
# spinal canal radius, spinous process length.
_SPINE = (
    ("C", "cervical_spine", 7, 184.0, 296.0, (10, 8, 6.0), (13, 9.5, 6.5), 7.0, 16.0),
    ("T", "thoracic_spine", 12, 318.0, 580.0, (14, 12, 8.5), (20, 16, 10.5), 7.5, 24.0),
    ("L", "lumbar_spine", 5, 605.0, 765.0, (22, 17, 12.5), (25, 19, 14.0), 9.0, 28.0),
)

# Rib cage per level k = 1..12: half-width, half-depth, anterior end (fraction of pi), drop.
_RIBS = np.array(
    [
        (62, 45, 0.86, 25),
        (85, 60, 0.86, 40),
        (100, 72, 0.86, 55),
        (110, 80, 0.86, 65),
        (118, 86, 0.86, 75),
        (124, 90, 0.86, 80),
        (128, 92, 0.86, 85),
        (130, 94, 0.78, 85),
        (130, 94, 0.78, 80),
        (128, 92, 0.78, 70),
        (122, 88, 0.55, 50),
        (115, 82, 0.55, 40),
    ],
    dtype=np.float64,
)


def build_anatomy(grid: Grid, p: dict[str, Any]) -> Anatomy:
    """Draw the subject described by ``p`` on ``grid``.

    Args:
        grid: the voxel grid.
        p: the subject's parameters, from :func:`sap.phantom.subject.sample_subject`.

    Returns:
        Tissues, bone labels and instances, marrow fraction and body outline.
    """
    return Builder(grid, p).build()


_SIDES = ((1.0, "right"), (-1.0, "left"))  # +x is the subject's right


class Builder:
    """Poses the reference anatomy for one subject and paints it, one body part per method."""

    def __init__(self, grid: Grid, p: dict[str, Any]) -> None:
        self.grid, self.p = grid, p
        scale = np.asarray(p["body_scale"])
        mean_scale = float(scale.mean())
        # Thin structures (cord, ribs, clavicles) are thickened to at least ~0.6 voxel radius
        # so they stay connected at coarse spacing (reference units).
        self.floor = 0.6 * max(grid.spacing_mm) / mean_scale
        top = grid.origin_mm[2] + (grid.shape[2] - 0.5) * grid.spacing_mm[2]
        centre_x = grid.origin_mm[0] + (grid.shape[0] - 1) / 2 * grid.spacing_mm[0]
        centre_y = grid.origin_mm[1] + (grid.shape[1] - 1) / 2 * grid.spacing_mm[1]
        translation = np.array(
            [
                centre_x + p["shift_mm"][0],
                centre_y + p["shift_mm"][1] - 5.0 * scale[1],
                top - p["vertex_margin_mm"] * scale[2],
            ]
        )
        # The tilt turns the body about its middle (700 mm below the vertex), not the vertex.
        tilt = rotation(*p["tilt_deg"])
        pivot = scale * np.array([0.0, 0.0, -700.0])
        self.body = Frame(tilt, translation + pivot - tilt @ pivot, scale)
        self.painter = Painter(grid, cover_mm=3.0)
        self.fat = p["fat_mm"] / mean_scale  # reference units
        self.arms = [
            self._limb(i, (sign * 180, -10, -335), "arm") for i, (sign, _) in enumerate(_SIDES)
        ]
        self.legs = [
            self._limb(i, (sign * 88, 0, -845), "leg") for i, (sign, _) in enumerate(_SIDES)
        ]
        fat_profile = np.where(_TRUNK[:, 0] < 300, 0.4 * self.fat, self.fat)
        self.trunk = Loft(
            -_TRUNK[:, 0], _TRUNK[:, 1] + fat_profile, _TRUNK[:, 2] + fat_profile, _TRUNK[:, 3]
        )
        self.spine_levels = self._spine_levels()
        self.canal_points: list[tuple[float, float, float, float]] = []

    # ---------------------------------------------------------------- helpers

    def th(self, radius: float) -> float:
        return max(radius, self.floor)

    def _limb(self, side: int, pivot: tuple[float, float, float], kind: str) -> Frame:
        sign = _SIDES[side][0]
        abduction = self.p[f"{kind}_abduction_deg"][side]
        flexion = self.p[f"{kind}_flexion_deg"][side]
        # Abduction swings the limb away from the midline (about y), flexion forward (about x).
        return self.body.rotated_about(pivot, rotation(-flexion, sign * abduction, 0.0))

    def spine_xy(self, d: float) -> tuple[float, float]:
        """Spine centre line at depth d: y with kyphosis/lordosis, x with a mild scoliosis."""
        curve_d = np.array([150, 290, 430, 575, 690, 770])
        curve_y = np.array([-5, -15, -50, -40, -22, -35]) * self.p["kyphosis"]
        y = float(np.interp(d, curve_d, curve_y))
        x = self.p["scoliosis_mm"] * np.sin(np.pi * np.clip((d - 300) / 470, 0, 1))
        return float(x), y

    @staticmethod
    def lean_front_y(d: float) -> float:
        """Anterior muscle surface of the trunk at depth d (where the sternum lies)."""
        return float(np.interp(d, _TRUNK[:, 0], _TRUNK[:, 2] + _TRUNK[:, 3]))

    def _spine_levels(self) -> list[tuple[str, int, float, np.ndarray, np.ndarray, float, float]]:
        levels = []
        for prefix, region, count, d_first, d_last, size_first, size_last, canal, spinous in _SPINE:
            for i in range(count):
                t = i / (count - 1)
                d = d_first + t * (d_last - d_first)
                half = (1 - t) * np.asarray(size_first) + t * np.asarray(size_last)
                x, y = self.spine_xy(d)
                levels.append(
                    (
                        f"{prefix}{i + 1}",
                        LABEL[region],
                        d,
                        np.array([x, y, -d]),
                        half,
                        canal,
                        spinous,
                    )
                )
        return levels

    def bone(self, frame: Frame, shape: Shape, label: int, instance: int, cortex_mm: float) -> None:
        self.painter.bone(frame, shape, label, instance, cortex_mm)

    # ---------------------------------------------------------------- body parts

    def build(self) -> Anatomy:
        self.unlabelled_bones()
        # Labelled bones. Scapulae before humeri and pelvis before femurs: joint heads win.
        self.shoulders_and_arms()
        self.sternum()
        self.spine()
        self.pelvis()
        self.femurs()
        self.outline()
        self.tissues()
        self.spinal_canal()
        painter = self.painter
        return Anatomy(
            tissue=painter.tissue,
            skeleton=painter.skeleton,
            instance=painter.instance,
            marrow=np.where(painter.is_bone, painter.marrow, 0.0).astype(np.float32),
            body=painter.body_depth > 0,
            instances=painter.instances,
            info=self.p,
        )

    def unlabelled_bones(self) -> None:
        """Skull, ribs, forearms and tibiae: bone signal, background label (as in the paper)."""
        painter, body, th = self.painter, self.body, self.th
        skull = painter.new_instance("skull", 0)
        cranium = Difference(
            Ellipsoid((0, -5, -92), (68, 85, 76)), Ellipsoid((0, -5, -92), (61, 78, 69))
        )
        self.bone(body, cranium, 0, skull, 2.0)
        thoracic = [level for level in self.spine_levels if level[0].startswith("T")]
        for k, (_, _, d, centre, half, _, _) in enumerate(thoracic):
            a, b, end, drop = _RIBS[k]
            y0 = centre[1] - half[1] - 6.0
            angles = np.linspace(0.28, end * np.pi, 8)
            for sign, side in _SIDES:
                rib = painter.new_instance(f"rib_{k + 1}_{side}", 0)
                points = [
                    (
                        centre[0] + sign * a * np.sin(angle),
                        y0 + b * (1 - np.cos(angle)),
                        -d - drop * (1 - np.cos(angle)) / 2,
                    )
                    for angle in angles
                ]
                segments = [Capsule(p0, p1, th(4.5)) for p0, p1 in zip(points[:-1], points[1:])]
                self.bone(body, Union(*segments), 0, rib, 1.5)
        for i, (sign, side) in enumerate(_SIDES):
            forearm = painter.new_instance(f"forearm_{side}", 0)
            radius_ulna = [
                Capsule((sign * 188, offset, -625), (sign * 175, 20 + offset, -850), th(6))
                for offset in (-8.0, 8.0)
            ]
            self.bone(self.arms[i], Union(*radius_ulna), 0, forearm, 2.0)
            tibia = painter.new_instance(f"tibia_{side}", 0)
            shaft = Capsule((sign * 92, 12, -1275), (sign * 86, 5, -1650), 15, 11)
            self.bone(self.legs[i], shaft, 0, tibia, 3.0)

    def shoulders_and_arms(self) -> None:
        painter, body, th = self.painter, self.body, self.th
        scapulae, clavicles, humeri = LABEL["scapulae"], LABEL["clavicles"], LABEL["humeri"]
        for i, (sign, side) in enumerate(_SIDES):
            scapula = painter.new_instance(f"scapula_{side}", scapulae)
            blade = Superquadric(
                (sign * 100, -88, -410), (42, th(6), 72), rotation(0, sign * 8, sign * 28), 2.0, 2.5
            )
            self.bone(body, blade, scapulae, scapula, 2.0)
            spine_of_scapula = Capsule((sign * 70, -97, -352), (sign * 160, -28, -316), th(6))
            self.bone(body, spine_of_scapula, scapulae, scapula, 1.5)
            glenoid = Capsule((sign * 125, -62, -360), (sign * 147, -27, -340), th(9))
            self.bone(body, glenoid, scapulae, scapula, 2.0)

            clavicle = painter.new_instance(f"clavicle_{side}", clavicles)
            front = self.lean_front_y(318)
            points = [
                (sign * 22, front - 12, -317),
                (sign * 85, front - 22, -303),
                (sign * 162, -8, -309),
            ]
            for p0, p1 in zip(points[:-1], points[1:]):
                self.bone(body, Capsule(p0, p1, th(6.5)), clavicles, clavicle, 1.5)

            humerus = painter.new_instance(f"humerus_{side}", humeri)
            arm = self.arms[i]
            self.bone(arm, Ellipsoid((sign * 180, -10, -338), (22, 22, 22)), humeri, humerus, 1.5)
            shaft = Capsule((sign * 181, -8, -350), (sign * 188, 0, -598), th(11), th(10))
            self.bone(arm, shaft, humeri, humerus, 3.0)
            condyles = Superquadric((sign * 188, 2, -605), (27, 12, 12))
            self.bone(arm, condyles, humeri, humerus, 1.5)

    def sternum(self) -> None:
        label, th = LABEL["sternum"], self.th
        sternum = self.painter.new_instance("sternum", label)
        manubrium = Superquadric(
            (0, self.lean_front_y(338) - 14, -338), (24, th(7), 20), None, 2.0, 3.0
        )
        self.bone(self.body, manubrium, label, sternum, 1.5)
        corpus = Superquadric(
            (0, self.lean_front_y(440) - 12, -440), (15, th(7), 78), rotation(-12, 0, 0), 2.0, 3.0
        )
        self.bone(self.body, corpus, label, sternum, 1.5)

    def spine(self) -> None:
        """Vertebral bodies with a posterior arch around the canal and a spinous process."""
        for name, label, d, centre, half, canal, spinous in self.spine_levels:
            vertebra = self.painter.new_instance(name, label)
            self.bone(self.body, Superquadric(centre, half, None, 2.0, 6.0), label, vertebra, 1.5)
            canal_centre = centre + np.array([0.0, -(half[1] + canal + 1.5), 0.0])
            self.canal_points.append((d, canal_centre[0], canal_centre[1], canal))
            arch = Intersection(
                Superquadric(
                    canal_centre, (canal + 5.5, canal + 5.5, half[2] * 0.85), None, 2.0, 6.0
                ),
                HalfSpace((0, 1, 0), canal_centre[1] + canal + 2.0),
            )
            self.bone(self.body, arch, label, vertebra, 1.5)
            base = canal_centre + np.array([0.0, -(canal + 3.0), 0.0])
            tip = canal_centre + np.array([0.0, -(canal + spinous), -0.6 * spinous])
            self.bone(self.body, Capsule(base, tip, self.th(4.5)), label, vertebra, 1.0)

    def pelvis(self) -> None:
        """Sacrum and two hemipelves (ilium, acetabulum, pubis, ischium): label "pelvis"."""
        painter, body, th, label = self.painter, self.body, self.th, LABEL["pelvis"]
        sacrum_x, sacrum_y = self.spine_xy(790)
        sacrum = painter.new_instance("sacrum", label)
        shape = Superquadric(
            (sacrum_x, sacrum_y - 15, -825), (42, 16, 52), rotation(-30, 0, 0), 2.0, 3.0
        )
        self.bone(body, shape, label, sacrum, 1.5)
        for sign, side in _SIDES:
            hemi = painter.new_instance(f"hemipelvis_{side}", label)
            wing = Superquadric(
                (sign * 82, -15, -762), (62, th(9), 50), rotation(0, 0, sign * 47), 2.0, 3.0
            )
            self.bone(body, wing, label, hemi, 2.0)
            ilium_body = Capsule((sign * 85, -20, -795), (sign * 92, -5, -830), 20)
            self.bone(body, ilium_body, label, hemi, 2.0)
            hip = np.array([sign * 88, 0.0, -845.0])
            acetabulum = Intersection(
                Difference(Ellipsoid(hip, (37, 37, 37)), Ellipsoid(hip, (26, 26, 26))),
                HalfSpace((sign, 0, 0), sign * hip[0] + 4.0),
                HalfSpace((0, 0, -1), -(hip[2] - 18.0)),
            )
            self.bone(body, acetabulum, label, hemi, 2.0)
            for a_pt, b_pt, radius in (
                ((sign * 72, 22, -850), (sign * 14, 55, -876), 9.0),  # superior pubic ramus
                ((sign * 14, 50, -895), (sign * 66, -5, -915), 8.0),  # inferior ramus
                ((sign * 88, -22, -860), (sign * 72, -18, -915), 14.0),  # ischium
            ):
                self.bone(body, Capsule(a_pt, b_pt, th(radius)), label, hemi, 2.0)
            symphysis = Superquadric((sign * 10, 54, -884), (th(8), 12, 18))
            self.bone(body, symphysis, label, hemi, 1.5)

    def femurs(self) -> None:
        label = LABEL["femurs"]
        for i, (sign, side) in enumerate(_SIDES):
            femur = self.painter.new_instance(f"femur_{side}", label)
            for shape, cortex in (
                (Ellipsoid((sign * 88, 0, -845), (23, 23, 23)), 1.5),  # head
                (Capsule((sign * 88, 0, -845), (sign * 120, -5, -872), 14), 2.0),  # neck
                (Superquadric((sign * 128, -12, -866), (15, 18, 22)), 2.0),  # trochanter
                (Capsule((sign * 124, -5, -882), (sign * 95, 12, -1240), 13.5), 4.0),  # shaft
                (Superquadric((sign * 94, 8, -1256), (38, 28, 22), None, 2.0, 3.0), 2.0),
            ):
                self.bone(self.legs[i], shape, label, femur, cortex)

    def outline(self) -> None:
        """Skin surface: head, trunk (neck to buttocks), arms with hands, legs."""
        painter, body, fat = self.painter, self.body, self.fat
        painter.soft(body, Ellipsoid((0, 10, -112), (76, 104, 112)))
        painter.soft(body, self.trunk)
        limb_fat = 0.6 * fat
        for i, (sign, _) in enumerate(_SIDES):
            arm, leg = self.arms[i], self.legs[i]
            painter.soft(
                arm,
                Capsule(
                    (sign * 181, -8, -325), (sign * 188, 0, -610), 38 + limb_fat, 30 + limb_fat
                ),
            )
            painter.soft(
                arm,
                Capsule(
                    (sign * 188, 0, -610), (sign * 175, 25, -860), 30 + limb_fat, 22 + limb_fat
                ),
            )
            painter.soft(arm, Ellipsoid((sign * 170, 35, -940), (18, 40, 80)))
            painter.soft(
                leg, Capsule((sign * 98, 0, -880), (sign * 92, 10, -1262), 82 + fat, 52 + limb_fat)
            )
            painter.soft(
                leg,
                Capsule(
                    (sign * 92, 10, -1262), (sign * 86, 0, -1650), 52 + limb_fat, 36 + limb_fat
                ),
            )

    def tissues(self) -> None:
        """Fat under the skin, muscle under the fat, then the cavity and the organs; bone last."""
        painter, body, p = self.painter, self.body, self.p
        fat_mm = p["fat_mm"]
        painter.tissue[painter.body_depth > 0] = TISSUE["fat"]
        painter.tissue[painter.body_depth > fat_mm] = TISSUE["muscle"]
        # Thorax + abdomen + pelvis cavity: the trunk minus its wall, rounded top and floor.
        dome = Superquadric((0, 5, -620), (220, 160, 290), None, 2.0, 4.0)
        wall_mm = fat_mm + p["muscle_wall_mm"]
        painter.organ(body, Intersection(self.trunk, dome), TISSUE["viscera"], wall_mm)
        painter.organ(body, Ellipsoid((0, -5, -92), (61, 78, 69)), TISSUE["brain"], 1.0)
        for sign, _ in _SIDES:
            painter.organ(body, Ellipsoid((sign * 68, 0, -480), (52, 65, 120)), TISSUE["lung"])
        heart = Ellipsoid((-28, 30, -535), (58, 48, 58), rotation(0, 0, 20))
        painter.organ(body, heart, TISSUE["heart"])
        liver = Ellipsoid((60, 10, -650), (95, 78, 68), rotation(0, 15, 0))
        painter.organ(body, liver, TISSUE["liver"])
        size = p["spleen_size"]
        spleen = Ellipsoid((-88, -32, -640), (32 * size, 40 * size, 55 * size), rotation(0, -20, 0))
        painter.organ(body, spleen, TISSUE["spleen"])
        for i, (sign, _) in enumerate(_SIDES):
            shift = p["kidney_shift_mm"][i] + (12.0 if sign > 0 else 0.0)  # right kidney lower
            kidney = Ellipsoid(
                (sign * 68, -52, -700 - shift), (26, 24, 52), rotation(0, sign * 12, sign * 25)
            )
            painter.organ(body, kidney, TISSUE["kidney"])
        fill = p["bladder_fill"]
        bladder = Ellipsoid((0, 48, -850), (45 * fill, 36 * fill, 36 * fill))
        painter.organ(body, bladder, TISSUE["bladder"])
        for node in p["lymph_nodes"]:
            x, y, d = node["centre"]
            radii = [self.th(r) for r in node["radii_mm"]]
            painter.organ(body, Ellipsoid((x, y, -d), radii), TISSUE["lymph_node"])
        painter.tissue[painter.is_bone] = TISSUE["bone"]

    def spinal_canal(self) -> None:
        """Spinal canal (CSF) and cord carved out of the vertebrae: DWI-bright, not bone."""
        th, points = self.th, sorted(self.canal_points)
        top = (140.0, self.spine_xy(140.0)[0], points[0][2], points[0][3])
        sacral = (800.0, self.spine_xy(800.0)[0], points[-1][2] - 5.0, points[-1][3])
        links = list(zip([top, *points], [*points, sacral]))
        canal = [
            Capsule((x0, y0, -d0), (x1, y1, -d1), th(r0), th(r1))
            for (d0, x0, y0, r0), (d1, x1, y1, r1) in links
        ]
        self.painter.carve(self.body, Union(*canal), TISSUE["csf"])
        # The cord ends near L1 (conus medullaris); below it the canal holds CSF only.
        cord = [
            Capsule((x0, y0, -d0), (x1, y1, -min(d1, 600.0)), th(6.0 if d0 < 320 else 5.0))
            for (d0, x0, y0, _), (d1, x1, y1, _) in links
            if d0 < 600
        ]
        self.painter.carve(self.body, Union(*cord), TISSUE["spinal_cord"])


__all__ = ["Builder", "build_anatomy"]
