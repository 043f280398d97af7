"""The mini open-vocabulary world: a concept universe and a seeded scene renderer.

The mini profile stands in for COCO / ADE20K / Mapillary / PASCAL Context with procedurally drawn
scenes. Concepts are named by attributes that a tiny ViT learns within CPU-minutes:

* **things** (countable objects with instance masks): ``fill pattern x colour``, e.g. "striped red
  object". Geometric shape is a random *nuisance* (circle, star, cross, ring, ...) that no class name
  mentions, so masks stay object-like while recognition rests on colour and fill pattern;
* **stuff** (amorphous regions): ``texture x colour family``, e.g. "ribbed moss" (= ribbed green
  ground). Stuff families never share a hue with thing colours.

Every class belongs to one of three groups (:attr:`Concept.group`):

* ``seen``: half of the pattern x colour (texture x family) combinations of the *base* attributes, a
  checkerboard selection, so every base attribute occurs in the COCO-like segmentation training set;
* ``novel_combination``: the other half: new combinations of seen attributes;
* ``novel_attribute``: every class with a *novel attribute* (:data:`NOVEL_ATTRIBUTES`: one thing colour,
  one fill pattern, one stuff texture). These attributes occur in the caption corpus the mini CLIP is
  pretrained on and in the evaluation benchmarks, but never in the segmentation training split, so
  only CLIP knows them: the concepts whose knowledge tuning on COCO keeps or destroys (paper §1, §4.3).

A benchmark's image statistics (object scale, clutter, stuff layout, lighting, noise) come from its
:class:`Domain`.

Everything here is pure numpy and deterministic given a ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------------------------------
# Concept universe
# --------------------------------------------------------------------------------------------------

# Thing colours (RGB) — saturated hues, none of them green, purple, brown or grey.
THING_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (222, 38, 38),
    "orange": (250, 146, 28),
    "yellow": (246, 226, 52),
    "blue": (44, 86, 236),
    "cyan": (46, 214, 226),
    "pink": (246, 118, 204),
    "white": (238, 238, 232),  # novel attribute
}
# Fill patterns: (adjective, synonyms as "{c}"-templates). Plural forms are made by pluralise().
THING_PATTERNS: dict[str, tuple[str, ...]] = {
    "plain": ("plain {c} object", "solid {c} thing", "{c} object without pattern"),
    "striped": ("striped {c} object", "{c} striped thing", "{c} object with stripes"),
    "dotted": ("dotted {c} object", "{c} polka-dot thing", "{c} object with dots"),
    "checkered": ("checkered {c} object", "{c} checked thing", "{c} object with checks"),
    "ringed": ("ringed {c} object", "{c} ring-patterned thing", "{c} object with rings"),  # novel attribute
}
# Stuff colour families: (base, secondary, noun, adjective).
STUFF_FAMILIES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], str, str]] = {
    "green": ((72, 150, 62), (34, 94, 30), "moss", "green"),
    "purple": ((128, 72, 162), (74, 36, 104), "heather", "purple"),
    "brown": ((152, 102, 56), (94, 60, 30), "soil", "brown"),
    "grey": ((142, 142, 142), (82, 82, 82), "stone", "grey"),
}
# Stuff textures: (adjective, alternative adjective).
STUFF_TEXTURES: dict[str, tuple[str, str]] = {
    "ribbed": ("ribbed", "corrugated"),
    "tiled": ("tiled", "paved"),
    "pebbled": ("pebbled", "cobbled"),
    "speckled": ("speckled", "grainy"),
    "brick": ("brick", "masonry"),
    "hazy": ("hazy", "misty"),
    "wavy": ("wavy", "rippled"),  # novel attribute
}
# Attributes never shown by the segmentation training split (last entries of the tables above, so the
# base attributes keep their positions in the checkerboard split).
NOVEL_ATTRIBUTES: frozenset[str] = frozenset({"white", "ringed", "wavy"})
GROUPS = ("seen", "novel_combination", "novel_attribute")


@dataclass(frozen=True)
class Concept:
    """One class of the universe."""

    index: int  # position in the universe (0..N-1)
    key: str  # e.g. "thing/striped/red", "stuff/ribbed/green"
    isthing: bool
    a: str  # pattern (things) or texture (stuff)
    b: str  # colour (things) or colour family (stuff)
    name: str  # preferred name
    synonyms: tuple[str, ...]  # includes name first
    color: tuple[int, int, int]  # panoptic palette colour (also used for overlays)

    @property
    def group(self) -> str:
        """``novel_attribute`` if an attribute is in :data:`NOVEL_ATTRIBUTES`; otherwise the checkerboard
        split of the base attributes: ``seen`` (in the COCO-like training set) or ``novel_combination``."""
        if self.a in NOVEL_ATTRIBUTES or self.b in NOVEL_ATTRIBUTES:
            return "novel_attribute"
        if self.isthing:
            i, j = list(THING_PATTERNS).index(self.a), list(THING_COLOURS).index(self.b)
        else:
            i, j = list(STUFF_TEXTURES).index(self.a), list(STUFF_FAMILIES).index(self.b)
        return "seen" if (i + j) % 2 == 0 else "novel_combination"

    @property
    def seen_in_coco(self) -> bool:
        """Whether the COCO-like segmentation training set shows this class."""
        return self.group == "seen"


def pluralise(phrase: str) -> str:
    for noun in ("object", "thing"):
        if f" {noun}" in f" {phrase}":
            words = phrase.split(" ")
            k = words.index(noun)
            words[k] = noun + "s"
            return " ".join(words)
    return phrase


def build_universe() -> list[Concept]:
    """All concepts: 35 things (5 patterns x 7 colours) then 28 stuff (7 textures x 4 families)."""
    out: list[Concept] = []
    for p in THING_PATTERNS:
        for c, rgb in THING_COLOURS.items():
            syn = tuple(t.format(c=c) for t in THING_PATTERNS[p])
            out.append(Concept(len(out), f"thing/{p}/{c}", True, p, c, syn[0], syn, rgb))
    for t, (adj, alt) in STUFF_TEXTURES.items():
        for f, (base, _sec, noun, fadj) in STUFF_FAMILIES.items():
            syn = (f"{adj} {noun}", f"{adj} {fadj} ground", f"{alt} {fadj} surface")
            out.append(Concept(len(out), f"stuff/{t}/{f}", False, t, f, syn[0], syn, base))
    return out


# --------------------------------------------------------------------------------------------------
# Domains (image statistics of each benchmark)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    name: str
    things: tuple[int, int] = (1, 4)  # min/max number of thing instances
    radius: tuple[float, float] = (0.12, 0.24)  # thing radius as a fraction of the image side
    stuff_layout: str = "line"  # "line" (1-2 regions), "lines" (2-3 regions), "bands" (horizontal)
    brightness: tuple[float, float] = (0.95, 1.05)
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    contrast: float = 1.0
    noise: float = 2.0  # std of additive Gaussian noise (0..255 scale)
    junk_prob: float = 0.0  # probability of an unlabelled clutter blob (VOID)
    crowd_prob: float = 0.0  # probability of a crowd cluster (one iscrowd segment)


DOMAINS: dict[str, Domain] = {
    # COCO-like: few, large objects on 1-2 stuff regions; occasional crowd clusters.
    "coco": Domain("coco", things=(1, 4), radius=(0.13, 0.25), stuff_layout="line", noise=2.0,
                   crowd_prob=0.08),
    # ADE-like: more regions and more, smaller objects; unlabelled clutter.
    "ade": Domain("ade", things=(2, 5), radius=(0.10, 0.21), stuff_layout="lines", noise=3.0,
                  brightness=(0.88, 1.08), junk_prob=0.35),
    # Mapillary-like: street-scene bands, many small objects, cool dim lighting, sensor noise.
    "mapillary": Domain("mapillary", things=(3, 7), radius=(0.07, 0.14), stuff_layout="bands",
                        brightness=(0.78, 0.92), tint=(0.92, 0.97, 1.08), contrast=0.9, noise=6.0,
                        junk_prob=0.25),
    # PASCAL-Context-like: bright, contrasty, mid-sized objects.
    "pascal": Domain("pascal", things=(1, 4), radius=(0.11, 0.22), stuff_layout="lines",
                     brightness=(1.0, 1.1), contrast=1.12, noise=3.0, junk_prob=0.2),
}

SHAPES = ("circle", "ellipse", "square", "diamond", "triangle", "hexagon", "star", "cross", "ring")


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


@dataclass
class Segment:
    concept: Concept
    mask: np.ndarray  # (S, S) bool, visible pixels
    iscrowd: bool = False


@dataclass
class Scene:
    image: np.ndarray  # (S, S, 3) uint8
    stuff: list[Segment]
    things: list[Segment]  # in drawing order (later ones occlude earlier ones)
    void: np.ndarray  # (S, S) bool, unlabelled pixels
    meta: dict = field(default_factory=dict)

    @property
    def segments(self) -> list[Segment]:
        return [s for s in self.stuff + self.things if s.mask.any()]


class Canvas:
    """Pixel grids for one image size (cached)."""

    def __init__(self, size: int):
        self.size = size
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self.yy, self.xx = yy, xx
        self.scale = size / 96.0  # pattern periods are defined at 96 px


def _rotated(c: Canvas, cy: float, cx: float, theta: float):
    dy, dx = c.yy - cy, c.xx - cx
    ct, st = np.cos(theta), np.sin(theta)
    return dx * ct + dy * st, -dx * st + dy * ct  # u, v


def shape_mask(c: Canvas, shape: str, cy: float, cx: float, r: float, theta: float) -> np.ndarray:
    u, v = _rotated(c, cy, cx, theta)
    d = np.hypot(u, v)
    if shape == "circle":
        return d <= r
    if shape == "ellipse":
        return (u / r) ** 2 + (v / (0.62 * r)) ** 2 <= 1.0
    if shape == "square":
        return (np.abs(u) <= 0.8 * r) & (np.abs(v) <= 0.8 * r)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.1 * r
    if shape == "cross":
        w = 0.38 * r
        return ((np.abs(u) <= w) & (np.abs(v) <= r)) | ((np.abs(v) <= w) & (np.abs(u) <= r))
    if shape == "ring":
        return (d <= r) & (d >= 0.5 * r)
    phi = np.arctan2(v, u)
    if shape in ("triangle", "hexagon"):
        n = 3 if shape == "triangle" else 6
        rr = r * (1.15 if n == 3 else 1.0)
        sector = np.mod(phi, 2 * np.pi / n) - np.pi / n
        return d * np.cos(sector) <= rr * np.cos(np.pi / n)
    if shape == "star":
        return d <= r * (0.55 + 0.45 * np.abs(np.cos(2.5 * phi)))
    raise ValueError(f"unknown shape {shape!r}")


def _stripes(c: Canvas, period: float, theta: float, phase: float, duty: float = 0.5) -> np.ndarray:
    t = c.xx * np.cos(theta) + c.yy * np.sin(theta) + phase
    return np.mod(t, period) < duty * period


def thing_texture(c: Canvas, pattern: str, rng: np.random.Generator,
                  centre: tuple[float, float] | None = None) -> np.ndarray:
    """Boolean (S, S) map of where the dark secondary shade is drawn (``centre``: the object's, for rings)."""
    s = c.scale
    if pattern == "plain":
        return np.zeros((c.size, c.size), bool)
    if pattern == "striped":
        return _stripes(c, 6.0 * s, rng.uniform(0, np.pi), rng.uniform(0, 6 * s))
    if pattern == "dotted":
        per = 6.0 * s
        oy, ox = rng.uniform(0, per, 2)
        dy = np.mod(c.yy + oy, per) - per / 2
        dx = np.mod(c.xx + ox, per) - per / 2
        return dy * dy + dx * dx <= (1.45 * s) ** 2
    if pattern == "checkered":
        per = 5.0 * s
        oy, ox = rng.uniform(0, per, 2)
        return (np.floor((c.yy + oy) / per) + np.floor((c.xx + ox) / per)) % 2 == 0
    if pattern == "ringed":  # concentric rings around the object's centre
        per = 6.0 * s
        cy, cx = centre if centre is not None else (c.size / 2, c.size / 2)
        d = np.hypot(c.yy - cy, c.xx - cx) + rng.uniform(0, per)
        return np.mod(d, per) < 0.45 * per
    raise ValueError(pattern)


def stuff_texture(c: Canvas, texture: str, rng: np.random.Generator) -> np.ndarray:
    """Float (S, S) map in [0, 1]: 0 = base colour, 1 = secondary colour."""
    s = c.scale
    if texture == "ribbed":
        return _stripes(c, 8.0 * s, rng.uniform(0, np.pi), rng.uniform(0, 8 * s), duty=0.3).astype(np.float32)
    if texture == "tiled":
        per = 12.0 * s
        oy, ox = rng.uniform(0, per, 2)
        return ((np.floor((c.yy + oy) / per) + np.floor((c.xx + ox) / per)) % 2).astype(np.float32)
    if texture == "pebbled":
        per = 10.0 * s
        oy, ox = rng.uniform(0, per, 2)
        row = np.floor((c.yy + oy) / per)
        dy = np.mod(c.yy + oy, per) - per / 2
        dx = np.mod(c.xx + ox + (row % 2) * per / 2, per) - per / 2
        return (dy * dy + dx * dx <= (3.0 * s) ** 2).astype(np.float32)
    if texture == "speckled":
        b = max(1, int(round(2 * s)))
        n = -(-c.size // b)
        small = rng.uniform(0, 1, (n, n)).astype(np.float32)
        return np.kron(small, np.ones((b, b), np.float32))[: c.size, : c.size]
    if texture == "brick":
        h, w = 8.0 * s, 16.0 * s
        oy, ox = rng.uniform(0, h), rng.uniform(0, w)
        row = np.floor((c.yy + oy) / h)
        mortar_h = np.mod(c.yy + oy, h) < 1.6 * s
        mortar_v = np.mod(c.xx + ox + (row % 2) * w / 2, w) < 1.6 * s
        return (mortar_h | mortar_v).astype(np.float32)
    if texture == "hazy":
        theta = rng.uniform(0, 2 * np.pi)
        t = (c.xx * np.cos(theta) + c.yy * np.sin(theta)) / c.size
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        return (0.85 * t).astype(np.float32)
    if texture == "wavy":  # smooth sinusoidal bands that meander
        theta = rng.uniform(0, np.pi)
        u, v = _rotated(c, 0.0, 0.0, theta)
        per, amp, per_v = 10.0 * s, 2.5 * s, 16.0 * s
        phase = rng.uniform(0, 2 * np.pi, 2)
        w = np.sin(2 * np.pi * (u + amp * np.sin(2 * np.pi * v / per_v + phase[0])) / per + phase[1])
        return (0.5 + 0.5 * w).astype(np.float32)
    raise ValueError(texture)


def _jitter(rng: np.random.Generator, rgb, amount: float) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def paint_thing(c: Canvas, img: np.ndarray, mask: np.ndarray, concept: Concept, rng) -> None:
    base = _jitter(rng, concept.color, 14)
    dark = base * 0.36
    ys, xs = np.nonzero(mask)
    centre = (float(ys.mean()), float(xs.mean())) if len(ys) else None
    tex = thing_texture(c, concept.a, rng, centre)
    img[mask] = base
    img[mask & tex] = dark


def paint_stuff(c: Canvas, img: np.ndarray, mask: np.ndarray, concept: Concept, rng) -> None:
    base_rgb, sec_rgb, _noun, _adj = STUFF_FAMILIES[concept.b]
    base, sec = _jitter(rng, base_rgb, 10), _jitter(rng, sec_rgb, 10)
    if concept.a == "brick":  # light mortar lines on a dark brick face
        base, sec = sec * 1.1, np.clip(base * 1.25, 0, 255)
    t = stuff_texture(c, concept.a, rng)[mask][:, None]
    img[mask] = base * (1 - t) + sec * t


def stuff_regions(c: Canvas, layout: str, rng: np.random.Generator, n_max: int) -> list[np.ndarray]:
    """Partition the image into 1..n regions (boolean masks, disjoint, covering the image)."""
    S = c.size
    if layout == "bands":
        n = int(rng.integers(2, 4))
        cuts = np.sort(rng.uniform(0.2, 0.8, n - 1)) * S
        wobble = rng.uniform(-0.06, 0.06, n - 1) * S
        slope = rng.uniform(-0.25, 0.25, n - 1)
        label = np.zeros((S, S), np.int32)
        for k in range(n - 1):
            label += (c.yy > cuts[k] + wobble[k] + slope[k] * (c.xx - S / 2)).astype(np.int32)
        regions = [label == k for k in range(n)]
    else:
        n_lines = int(rng.integers(0, 2)) if layout == "line" else int(rng.integers(1, 3))
        label = np.zeros((S, S), np.int32)
        for k in range(n_lines):
            theta = rng.uniform(0, np.pi)
            off = rng.uniform(-0.25, 0.25) * S
            side = (c.xx - S / 2) * np.cos(theta) + (c.yy - S / 2) * np.sin(theta) > off
            label = label * 2 + side.astype(np.int32)
        regions = [label == k for k in np.unique(label)]
    regions = [r for r in regions if r.sum() >= 0.04 * S * S] or [np.ones((S, S), bool)]
    return regions[:n_max]


@dataclass(frozen=True)
class ClassSampler:
    """Draws thing and stuff concepts of one benchmark, with per-class frequency weights."""

    things: tuple[Concept, ...]
    stuff: tuple[Concept, ...]
    thing_w: tuple[float, ...]
    stuff_w: tuple[float, ...]

    @classmethod
    def build(cls, concepts: list[Concept], weights: dict[int, float] | None = None) -> "ClassSampler":
        weights = weights or {}
        th = tuple(x for x in concepts if x.isthing)
        st = tuple(x for x in concepts if not x.isthing)
        return cls(th, st, tuple(weights.get(x.index, 1.0) for x in th),
                   tuple(weights.get(x.index, 1.0) for x in st))

    def thing(self, rng) -> Concept:
        p = np.asarray(self.thing_w) / sum(self.thing_w)
        return self.things[int(rng.choice(len(self.things), p=p))]

    def stuff_distinct(self, rng, n: int) -> list[Concept]:
        n = min(n, len(self.stuff))
        p = np.asarray(self.stuff_w) / sum(self.stuff_w)
        idx = rng.choice(len(self.stuff), size=n, replace=False, p=p)
        return [self.stuff[int(i)] for i in idx]


def render_scene(
    c: Canvas,
    domain: Domain,
    sampler: ClassSampler,
    rng: np.random.Generator,
    *,
    n_things: int | None = None,
    min_visible: int | None = None,
    thing_override: list[Concept] | None = None,
    stuff_override: list[Concept] | None = None,
    allow_crowd: bool = True,
) -> Scene:
    """Draw one scene: stuff regions, then occluding thing instances, then photometric effects.

    Args:
        c: the pixel canvas (fixes the image size).
        domain: image statistics of the benchmark.
        sampler: which classes may appear and how often.
        rng: the random generator (the only source of randomness).
        n_things: number of instances (default: drawn from ``domain.things``); 0 gives stuff only.
        min_visible: an instance keeps its label only if at least this many pixels stay visible
            (default 12 px at 64 px, scaled with the area); fewer become part of the layer below.
        thing_override: draw exactly these thing concepts (length overrides ``n_things``).
        stuff_override: paint the stuff regions with these concepts instead of sampled ones (the
            random draws are made all the same, so a fixed seed gives the same layout).
        allow_crowd: whether a crowd cluster may be drawn (``domain.crowd_prob``).
    """
    S = c.size
    min_visible = min_visible if min_visible is not None else int(round(12 * (S / 64) ** 2))
    img = np.zeros((S, S, 3), np.float32)
    regions = stuff_regions(c, domain.stuff_layout, rng, n_max=3)
    stuff_concepts = sampler.stuff_distinct(rng, len(regions))
    if stuff_override is not None:
        stuff_concepts = list(stuff_override)[: len(stuff_concepts)]
    regions = regions[: len(stuff_concepts)]
    # Merge any leftover area into the first region when fewer stuff classes than regions exist.
    covered = np.zeros((S, S), bool)
    for r in regions:
        covered |= r
    regions[0] = regions[0] | ~covered
    stuff = []
    for concept, region in zip(stuff_concepts, regions):
        paint_stuff(c, img, region, concept, rng)
        stuff.append(Segment(concept, region.copy()))

    void = np.zeros((S, S), bool)
    owner = np.full((S, S), -1, np.int32)  # index into `things` of the visible instance

    if domain.junk_prob and rng.uniform() < domain.junk_prob:
        r = rng.uniform(0.06, 0.12) * S
        m = shape_mask(c, str(rng.choice(SHAPES)), rng.uniform(0, S), rng.uniform(0, S), r, rng.uniform(0, 6.3))
        grey = rng.uniform(90, 200)
        img[m] = grey + rng.normal(0, 28, (int(m.sum()), 1))
        void |= m

    if thing_override is not None:
        concepts = list(thing_override)
    else:
        k = int(rng.integers(domain.things[0], domain.things[1] + 1)) if n_things is None else n_things
        concepts = [sampler.thing(rng) for _ in range(k)]
    things: list[Segment] = []
    for concept in concepts:
        r = rng.uniform(*domain.radius) * S
        cy, cx = rng.uniform(0.1 * S, 0.9 * S, 2)
        m = shape_mask(c, str(rng.choice(SHAPES)), cy, cx, r, rng.uniform(0, 2 * np.pi))
        if not m.any():
            continue
        paint_thing(c, img, m, concept, rng)
        owner[m] = len(things)
        void[m] = False
        things.append(Segment(concept, m))

    crowd_idx: set[int] = set()
    if allow_crowd and domain.crowd_prob and rng.uniform() < domain.crowd_prob and sampler.things:
        concept = sampler.thing(rng)
        cy, cx = rng.uniform(0.25 * S, 0.75 * S, 2)
        members = []
        for _ in range(int(rng.integers(3, 6))):
            r = rng.uniform(0.04, 0.07) * S
            m = shape_mask(c, "circle", cy + rng.normal(0, 0.06 * S), cx + rng.normal(0, 0.06 * S), r, 0.0)
            paint_thing(c, img, m, concept, rng)
            members.append(m)
        m = np.logical_or.reduce(members)
        owner[m] = len(things)
        void[m] = False
        crowd_idx.add(len(things))
        things.append(Segment(concept, m, iscrowd=True))

    # Visible masks; instances left with too few pixels are dropped (their pixels become VOID, as an
    # annotator would not label a sliver).
    kept: list[Segment] = []
    for i, seg in enumerate(things):
        vis = owner == i
        if vis.sum() >= min_visible or (i in crowd_idx and vis.any()):
            kept.append(Segment(seg.concept, vis, seg.iscrowd))
        else:
            void |= vis
    occupied = owner >= 0
    for s in stuff:
        s.mask &= ~occupied & ~void

    # Photometric domain effects.
    img *= rng.uniform(*domain.brightness)
    img *= np.asarray(domain.tint, np.float32)
    if domain.contrast != 1.0:
        img = (img - 128.0) * domain.contrast + 128.0
    if domain.noise:
        img += rng.normal(0, domain.noise, img.shape).astype(np.float32)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Scene(image=image, stuff=stuff, things=kept, void=void, meta={"domain": domain.name})
