"""Deterministic pictures of one to three coloured shapes, captioned from templates.

Each picture places shapes in distinct cells of a 3×3 grid (with jitter) on a
plain, noisy background. Its captions name every shape by colour and kind,
with synonyms ("scarlet disc" for "red circle") and in varied word order,
either by where each shape is ("a red circle in the top left") or by how two
shapes sit ("a red circle left of a blue square", "a blue square to the right
of a red circle").

Some colour–shape pairs (`HELD_OUT`) never occur in training pictures; every
test picture holds at least one, so the test measures whether the model
composes a colour and a shape it has only seen apart.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {  # name: (RGB, words for it)
    "red": ((205, 40, 40), ("red", "scarlet")),
    "green": ((40, 160, 60), ("green", "emerald")),
    "blue": ((45, 80, 215), ("blue", "azure")),
    "yellow": ((235, 205, 35), ("yellow", "golden")),
    "purple": ((140, 60, 180), ("purple", "violet")),
    "orange": ((245, 135, 25), ("orange", "amber")),
}
SHAPES = {"circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle",)}
SHAPES["star"] = ("star",)
HELD_OUT = {("red", "triangle"), ("green", "circle"), ("blue", "star"), ("yellow", "square")}
PLACES = {  # (row, column) of the 3×3 grid: ways to say it
    (0, 0): ("in the top left", "at the top left"),
    (0, 1): ("at the top", "in the top middle"),
    (0, 2): ("in the top right", "at the top right"),
    (1, 0): ("on the left", "at the left"),
    (1, 1): ("in the centre", "in the middle"),
    (1, 2): ("on the right", "at the right"),
    (2, 0): ("in the bottom left", "at the bottom left"),
    (2, 1): ("at the bottom", "in the bottom middle"),
    (2, 2): ("in the bottom right", "at the bottom right"),
}
RELATIONS = {  # how the first shape sits relative to the second
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above", "over"),
    "below": ("below", "under"),
}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


@dataclass
class Thing:
    colour: str
    shape: str
    cell: tuple  # (row, column)


def _outline(shape, centre, radius, angle):
    cx, cy = centre
    if shape == "circle":
        theta = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        r = np.full_like(theta, radius)
    elif shape == "square":
        theta = np.pi / 4 + np.arange(4) * np.pi / 2
        r = np.full(4, radius * 1.05)
    elif shape == "triangle":
        theta = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        r = np.full(3, radius * 1.15)
    else:  # a five-pointed star
        theta = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius * 1.25, radius * 0.5)
    theta = theta + angle
    xs, ys = (cx + r * np.cos(theta)).tolist(), (cy + r * np.sin(theta)).tolist()
    return list(zip(xs, ys, strict=True))


def draw(things, rng, size=64):
    """The picture of `things` (uint8 H×W×3)."""
    background = rng.integers(165, 225) + rng.integers(-12, 13, 3)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in background))
    paint = ImageDraw.Draw(image)
    cell = size / 3
    for thing in things:
        row, column = thing.cell
        jitter = rng.uniform(-0.12, 0.12, 2) * cell
        centre = ((column + 0.5) * cell + jitter[0], (row + 0.5) * cell + jitter[1])
        radius = rng.uniform(0.26, 0.34) * cell
        angle = rng.uniform(-0.25, 0.25)
        shade = np.clip(np.array(COLOURS[thing.colour][0]) + rng.integers(-15, 16, 3), 0, 255)
        paint.polygon(_outline(thing.shape, centre, radius, angle), fill=tuple(shade.tolist()))
    pixels = np.asarray(image).astype(np.int16) + rng.integers(-6, 7, (size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _name(thing, rng):
    """ "a red circle", "an amber box": the shape with its article."""
    colour = rng.choice(COLOURS[thing.colour][1])
    article = "an" if colour[0] in "aeiou" else "a"
    return f"{article} {colour} {rng.choice(SHAPES[thing.shape])}"


def _relation(first, second):
    (r1, c1), (r2, c2) = first.cell, second.cell
    if abs(c2 - c1) >= abs(r2 - r1):
        return "left" if c1 < c2 else "right"
    return "above" if r1 < r2 else "below"


def caption(things, rng):
    """One caption of `things`, in a randomly chosen form."""
    if len(things) == 2 and rng.uniform() < 0.6:
        first, second = things if rng.uniform() < 0.5 else things[::-1]
        word = rng.choice(RELATIONS[_relation(first, second)])
        return f"{_name(first, rng)} {word} {_name(second, rng)}"
    order = rng.permutation(len(things))
    parts = []
    for i in order:
        place = rng.choice(PLACES[things[i].cell])
        parts.append(
            f"{_name(things[i], rng)} {place}"
            if rng.uniform() < 0.7
            else f"{place} {_name(things[i], rng)}"
        )
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"there is {text}" if text.startswith("a") and rng.uniform() < 0.2 else text


def scene(rng, held_out=False, counts=(0.25, 0.4, 0.35)):
    """Shapes for one picture: with `held_out`, the first is a held-out pair and the
    others anything; without, no held-out pair occurs."""
    count = int(rng.choice([1, 2, 3], p=counts))
    cells = rng.permutation(9)[:count]
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    allowed = [p for p in pairs if p not in HELD_OUT]
    things = []
    for index, cell in enumerate(cells):
        pool = sorted(HELD_OUT) if held_out and index == 0 else (pairs if held_out else allowed)
        colour, shape = pool[rng.integers(len(pool))]
        things.append(Thing(colour, shape, (int(cell) // 3, int(cell) % 3)))
    return things


def label(things):
    """The zero-shot class of a one-shape picture ("red circle"); None otherwise."""
    return f"{things[0].colour} {things[0].shape}" if len(things) == 1 else None
