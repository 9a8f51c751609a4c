"""``glyphs``: an offline, Omniglot-like few-shot dataset rendered from the fonts matplotlib bundles.

Fonts. Every ``DejaVu*.ttf`` and ``STIX*.ttf`` file in matplotlib's ``mpl-data/fonts/ttf/``. The other
bundled files are left out on purpose: ``LastResortHE`` maps every code point to a placeholder box, and
the Computer Modern ``cm*.ttf`` files use TeX encodings (``cmsy10`` maps "A" to a calligraphic symbol),
so their character maps do not say which letter they draw.

Letters. A code point is a candidate when its Unicode general category starts with "L" and at least
``min_fonts`` font files can draw it: the code point is in the font's character map *and* renders to a
non-empty bitmap.

Collapse rule (one class per near-duplicate group). Every candidate gets the key
``unicodedata.normalize("NFKD", ch)[0].lower()``: its NFKD base letter, case-folded. Candidates whose
NFKD base is not itself a letter are dropped. All candidates with the same key form one class,
represented by the lowest code point among the group's undecomposed letters (``NFKD(ch) == ch``), or
by the group's lowest code point when none is undecomposed: so "A", "a", "á", "Á", "ª" and "𝐀" are one
class drawn as "A", and "µ" (MICRO SIGN) joins "Μ"/"μ" instead of representing it. Case collapses
because instances are centred (and jittered in scale), so many case pairs (o/O, Cyrillic к/К, Greek
ο/Ο) would differ by size alone; only the representative is rendered, so each class has one shape.

Alphabets. A class's alphabet is the Unicode script named by the first word of its representative's
character name ("LATIN CAPITAL LETTER A" -> LATIN), or by a multi-word prefix from
``MULTI_WORD_SCRIPTS`` ("CANADIAN SYLLABICS E" -> CANADIAN SYLLABICS). Letters whose name does not start
with a script (``NON_SCRIPT_PREFIXES``: spacing modifier letters such as ˉ/ˍ, which centring would make
identical, and letterlike symbols such as "TURNED CAPITAL F") are dropped.

Splits. Whole alphabets go to meta-train, meta-val or meta-test, so the splits share no alphabet. Taking
alphabets from the largest to the smallest (ties by name), each goes to the split furthest below its
target number of classes (``SPLIT_FRACTIONS`` of all classes; ties to train, then val). Largest-first
keeps a big alphabet from arriving last and swamping a nearly full split; the rule has no seed, so the
split does not move with the rendering seed. The build fails if val or test ends with fewer than
``MIN_SPLIT_CLASSES`` classes.

Instances. Instance ``i`` of a class is drawn with the ``i % n``-th of the ``n`` fonts that draw it
(font files sorted by name), on a canvas ``SUPERSAMPLE`` times the output size: extra stroke width, then
the glyph is centred by its ink bounding box and given a random affine jitter (rotation, scale, shear,
translation; shrunk where needed so no ink leaves the canvas), then box-filtered down to
``image_size`` x ``image_size``. Ink is high (255), background 0. The jitter comes from
``numpy.random.Generator(PCG64([seed, code point, instance]))``, so an image depends on nothing but
those three numbers (not on class order or process count). Bytes are identical for the same seed and
the same Pillow/FreeType and matplotlib versions, which the manifest records.
"""
from __future__ import annotations

import functools
import math
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import matplotlib
import numpy as np
import PIL
from matplotlib.ft2font import FT2Font
from PIL import Image, ImageDraw, ImageFont, features
from tqdm import tqdm

from metalr import io
from metalr.data.arrays import SPLITS, write_dataset

GENERATOR = "metalr.data.glyphs"
GENERATOR_VERSION = 1
DATASET = "glyphs"

FONT_PATTERNS = ("DejaVu*.ttf", "STIX*.ttf")
MIN_CLASSES = 600
SPLIT_FRACTIONS = {"train": 0.64, "val": 0.16, "test": 0.20}
MIN_SPLIT_CLASSES = 20

# Scripts whose Unicode names take more than one word ("OLD ITALIC LETTER A" is OLD ITALIC, not OLD).
MULTI_WORD_SCRIPTS = (
    "CANADIAN SYLLABICS",
    "OLD ITALIC",
    "OLD PERSIAN",
    "OLD TURKIC",
    "LINEAR B",
    "NEW TAI LUE",
    "TAI LE",
    "TAI VIET",
    "OL CHIKI",
    "SYLOTI NAGRI",
    "MEETEI MAYEK",
    "KAYAH LI",
)
# First words of letter names that are not scripts (MODIFIER LETTER ..., CARON, TURNED CAPITAL F, ...).
NON_SCRIPT_PREFIXES = frozenset({"MODIFIER", "CARON", "TURNED", "ROMAN"})

SUPERSAMPLE = 4  # render at 4x the output size, then box-filter down (antialiasing)
EM_FRACTION = 0.75  # font size as a fraction of the supersampled canvas: capitals fill about half of it
MARGIN_FRACTION = 0.05  # blank border kept around the ink after jitter
MAX_EXTRA_STROKE = 3  # extra stroke width, in supersampled pixels (0..3 each side)
MAX_ROTATION_DEG = 12.0
SCALE_RANGE = (0.8, 1.1)
MAX_SHEAR = 0.15
MAX_SHIFT_FRACTION = 0.06  # translation, as a fraction of the canvas

COLLAPSE_RULE = (
    "one class per key NFKD(ch)[0].lower() (NFKD base letter, case-folded); candidates whose NFKD base "
    "is not a letter are dropped; representative = lowest undecomposed code point of the group "
    "(NFKD(ch) == ch), else the group's lowest code point; only the representative is rendered"
)
SPLIT_RULE = (
    "alphabets from largest to smallest (ties by name), each to the split furthest below its target class "
    "count (split_fractions of all classes; ties to train, then val)"
)


@dataclass(frozen=True)
class GlyphClass:
    code_point: int
    alphabet: str
    fonts: tuple[str, ...]  # font file names (in font_dir()) that draw the letter, sorted

    @property
    def name(self) -> str:
        return f"U+{self.code_point:04X} {unicodedata.name(chr(self.code_point))}"


@dataclass(frozen=True)
class Candidates:
    classes: tuple[GlyphClass, ...]  # sorted by code point
    letters_before_collapse: int
    classes_after_collapse: int  # before dropping letters with no script


def font_dir() -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def font_files() -> list[Path]:
    return sorted({path for pattern in FONT_PATTERNS for path in font_dir().glob(pattern)})


def render_size(image_size: int) -> int:
    return round(EM_FRACTION * SUPERSAMPLE * image_size)


@functools.lru_cache(maxsize=None)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: no libraqm shaping, so output does not depend on whether raqm is installed.
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


def is_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L")


def drawable_letters(path: Path, size: int) -> set[int]:
    """Letters in the font's character map that render to a non-empty bitmap."""
    font = load_font(str(path), size)
    mapped = (cp for cp in FT2Font(str(path)).get_charmap() if is_letter(chr(cp)))
    return {cp for cp in mapped if font.getmask(chr(cp)).getbbox()}


def letter_fonts(paths: Iterable[Path], size: int) -> dict[int, tuple[str, ...]]:
    """Code point -> names of the font files that draw it."""
    fonts: dict[int, list[str]] = defaultdict(list)
    for path in sorted(paths):
        for cp in drawable_letters(path, size):
            fonts[cp].append(path.name)
    return {cp: tuple(names) for cp, names in fonts.items()}


def collapse_key(ch: str) -> str | None:
    """The near-duplicate group of a letter, or None when its NFKD base is not a letter."""
    base = unicodedata.normalize("NFKD", ch)[0]
    return base.lower() if is_letter(base) else None


def representative(code_points: Iterable[int]) -> int:
    code_points = sorted(code_points)
    undecomposed = [cp for cp in code_points if unicodedata.normalize("NFKD", chr(cp)) == chr(cp)]
    return (undecomposed or code_points)[0]


def script_of(ch: str) -> str | None:
    """The script that starts the character's Unicode name, or None for non-script names."""
    name = unicodedata.name(ch, "")
    for script in MULTI_WORD_SCRIPTS:
        if name.startswith(script + " "):
            return script
    first_word = name.split(" ", 1)[0]
    return None if not first_word or first_word in NON_SCRIPT_PREFIXES else first_word


@functools.lru_cache(maxsize=None)  # depends only on the installed fonts; scanning them takes about a second
def candidate_classes(min_fonts: int = 4, image_size: int = 28) -> Candidates:
    """Every class: letters drawn by >= min_fonts fonts, collapsed, with a script."""
    fonts = letter_fonts(font_files(), render_size(image_size))
    letters = sorted(cp for cp, names in fonts.items() if len(names) >= min_fonts)
    groups: dict[str, list[int]] = defaultdict(list)
    for cp in letters:
        key = collapse_key(chr(cp))
        if key is not None:
            groups[key].append(cp)
    representatives = sorted(representative(group) for group in groups.values())
    classes = tuple(
        GlyphClass(code_point=cp, alphabet=script, fonts=fonts[cp])
        for cp in representatives
        if (script := script_of(chr(cp))) is not None
    )
    return Candidates(classes=classes, letters_before_collapse=len(letters), classes_after_collapse=len(groups))


def assign_alphabets(class_counts: dict[str, int]) -> dict[str, str]:
    """Alphabet -> split: largest alphabet first, each to the split furthest below its target."""
    total = sum(class_counts.values())
    deficit = {split: SPLIT_FRACTIONS[split] * total for split in SPLITS}
    assignment = {}
    for alphabet in sorted(class_counts, key=lambda a: (-class_counts[a], a)):
        split = max(SPLITS, key=lambda s: deficit[s])  # ties go to the earlier split in SPLITS
        assignment[alphabet] = split
        deficit[split] -= class_counts[alphabet]
    return assignment


def split_classes(classes: Iterable[GlyphClass]) -> dict[str, list[GlyphClass]]:
    classes = list(classes)
    counts: dict[str, int] = defaultdict(int)
    for glyph_class in classes:
        counts[glyph_class.alphabet] += 1
    assignment = assign_alphabets(dict(counts))
    splits = {split: [c for c in classes if assignment[c.alphabet] == split] for split in SPLITS}
    for split in ("val", "test"):
        if len(splits[split]) < MIN_SPLIT_CLASSES:
            raise ValueError(
                f"glyphs: the {split} split got {len(splits[split])} classes (< {MIN_SPLIT_CLASSES}) from "
                f"alphabets {sorted(a for a, s in assignment.items() if s == split)}; the fonts cover too few alphabets"
            )
    return splits


def draw_glyph(ch: str, font: ImageFont.FreeTypeFont, stroke: int) -> Image.Image:
    """The glyph cropped to its ink bounding box (mode L, ink 255)."""
    left, top, right, bottom = font.getbbox(ch, stroke_width=stroke)
    image = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(image).text((-left, -top), ch, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    ink = image.getbbox()
    if ink is None:
        raise ValueError(f"glyphs: {ch!r} renders empty in {font.path}")
    return image.crop(ink)


def random_affine(rng: np.random.Generator) -> np.ndarray:
    """A 2x2 rotation @ shear @ scale matrix."""
    angle = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    scale = rng.uniform(*SCALE_RANGE)
    shear = rng.uniform(-MAX_SHEAR, MAX_SHEAR)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return rotation @ np.array([[1.0, shear], [0.0, 1.0]]) * scale


def place(glyph: Image.Image, matrix: np.ndarray, shift: np.ndarray, canvas: int) -> Image.Image:
    """Map the glyph's centre to the canvas centre + shift through ``matrix``, keeping all ink inside."""
    half_size = np.array(glyph.size, dtype=float) / 2
    corners = np.array([[sx, sy] for sx in (-1, 1) for sy in (-1, 1)]) * half_size
    half_extent = np.abs(corners @ matrix.T).max(axis=0)
    room = canvas / 2 - MARGIN_FRACTION * canvas
    matrix = matrix * min(1.0, float((room / half_extent).min()))  # too big for the canvas: shrink
    half_extent = np.abs(corners @ matrix.T).max(axis=0)
    shift = np.clip(shift, -(room - half_extent), room - half_extent)
    # PIL wants the inverse map: output pixel -> input pixel.
    inverse = np.linalg.inv(matrix)
    offset = half_size - inverse @ (np.full(2, canvas / 2) + shift)
    coefficients = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    return glyph.transform((canvas, canvas), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)


def instance_rng(seed: int, code_point: int, instance: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed, code_point, instance]))


def render_instance(code_point: int, font_path: Path, seed: int, instance: int, image_size: int = 28) -> np.ndarray:
    """One image_size x image_size uint8 image of the letter (ink high, background 0)."""
    rng = instance_rng(seed, code_point, instance)
    canvas = SUPERSAMPLE * image_size
    stroke = int(rng.integers(0, MAX_EXTRA_STROKE + 1))
    glyph = draw_glyph(chr(code_point), load_font(str(font_path), render_size(image_size)), stroke)
    matrix = random_affine(rng)
    shift = rng.uniform(-MAX_SHIFT_FRACTION, MAX_SHIFT_FRACTION, size=2) * canvas
    return np.asarray(place(glyph, matrix, shift, canvas).reduce(SUPERSAMPLE), dtype=np.uint8)


def render_class(glyph_class: GlyphClass, seed: int, instances: int, image_size: int = 28) -> np.ndarray:
    """instances x 1 x image_size x image_size uint8, cycling through the fonts that draw the letter."""
    fonts = [font_dir() / name for name in glyph_class.fonts]
    images = [
        render_instance(glyph_class.code_point, fonts[i % len(fonts)], seed, i, image_size) for i in range(instances)
    ]
    return np.stack(images)[:, None]


def render_split(
    classes: list[GlyphClass], seed: int, instances: int, image_size: int, progress: bool, desc: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images = [
        render_class(c, seed, instances, image_size) for c in tqdm(classes, desc=desc, unit="class", disable=not progress)
    ]
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), instances)
    return np.concatenate(images), labels, [c.name for c in classes]


def font_hashes(classes: Iterable[GlyphClass]) -> dict[str, str]:
    used = sorted({name for c in classes for name in c.fonts})
    return {name: io.sha256_file(font_dir() / name) for name in used}


def build(
    out_dir: str | Path,
    seed: int = 1,
    instances_per_class: int = 20,
    image_size: int = 28,
    min_fonts: int = 4,
    progress: bool = True,
    max_classes_per_split: int | None = None,
) -> dict:
    """Render the dataset into out_dir (data/arrays.py format) and return its manifest.

    ``max_classes_per_split`` keeps only the first classes of each split (by code point): for fast tests.
    """
    candidates = candidate_classes(min_fonts, image_size)
    if len(candidates.classes) < MIN_CLASSES:
        raise ValueError(
            f"glyphs: only {len(candidates.classes)} classes (< {MIN_CLASSES}) from the fonts in {font_dir()} "
            f"with min_fonts={min_fonts}; lower min_fonts or check the matplotlib install"
        )
    splits = {split: members[:max_classes_per_split] for split, members in split_classes(candidates.classes).items()}
    arrays = {
        split: render_split(members, seed, instances_per_class, image_size, progress, f"glyphs {split}")
        for split, members in splits.items()
    }
    source = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "instances_per_class": instances_per_class,
        "image_size": image_size,
        "min_fonts": min_fonts,
        "fonts": font_hashes(candidates.classes),
        "matplotlib_version": matplotlib.__version__,
        "pillow_version": PIL.__version__,
        "freetype_version": features.version("freetype2"),
        "collapse_rule": COLLAPSE_RULE,
        "candidate_letters_before_collapse": candidates.letters_before_collapse,
        "classes_after_collapse": candidates.classes_after_collapse,
        "classes_with_script": len(candidates.classes),
        "split_rule": SPLIT_RULE,
        "split_fractions": SPLIT_FRACTIONS,
        "max_classes_per_split": max_classes_per_split,
    }
    alphabets = {split: {"alphabets": [c.alphabet for c in members]} for split, members in splits.items()}
    return write_dataset(out_dir, DATASET, arrays, source, alphabets)
