"""Detection data: images with labelled boxes, from a CSV, COCO JSON or YOLO txt files.

Three layouts:
- `box_csv`: one row per box (`image_id,width,height,bbox` with bbox
  "[x, y, w, h]", Global Wheat), boxes in `data.box_columns` (one column of
  four numbers or four columns) in `data.box_format`, an optional
  `data.class_column`; images at `data.train_images`. Images in that folder
  with no row have no boxes; a row with an empty box marks an image with none.
- `coco`: a COCO instances JSON (`images`, `annotations` with `[x, y, w, h]`
  bboxes, `categories`); images at `data.train_images` (`{id}` = file_name).
- `yolo_txt`: the images in the folder `data.train`, a label file per image at
  `data.labels` (`{stem}`: the image's name without extension) holding
  `class cx cy w h` lines relative to the image size; a missing file means no boxes.

Every box is checked when read (finite, positive size, inside its image,
a known class, a known image) and a bad one is named by its row. Inside the
pipeline boxes are Keras core's `{"boxes": (B, N, 4), "labels": (B, N)}`,
`xyxy` in pixels of the model's input, padded with -1.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from kapps.errors import ConfigError
from pipelines.data.masks import image_sizes
from pipelines.data.sources import IMAGE_SUFFIXES, read_csv, require_columns
from pipelines.errors import DataError

EDGE_SLACK = 1.0  # pixels a box may overhang its image (rounding in real annotations)


@dataclass
class BoxSource:
    """Training rows of a detection set: one per image, with all its boxes."""

    ids: np.ndarray
    paths: list[str]
    sizes: np.ndarray  # (N, 2) original (height, width)
    boxes: list  # per image (n, 4) float32 xyxy in original pixels
    labels: list  # per image (n,) int32 class indices
    classes: list  # the class names the indices index (data.classes, or found in the data)

    def __len__(self):
        return len(self.ids)

    def subset(self, rows):
        return BoxSource(
            ids=self.ids[rows],
            paths=[self.paths[i] for i in rows],
            sizes=self.sizes[rows],
            boxes=[self.boxes[i] for i in rows],
            labels=[self.labels[i] for i in rows],
            classes=self.classes,
        )


def check_boxes(xyxy, sizes, rows, shown, where):
    """Raise on the first bad box, naming its row; return the boxes clipped to their images.

    Args:
        xyxy: (R, 4) boxes in pixels; sizes: (R, 2) (height, width) of each box's
        image (0 where the header was unreadable); rows: what names each box;
        shown: each box as the file wrote it; where: "train.csv row" or similar.
    """
    height, width = sizes[:, 0:1].astype(np.float64), sizes[:, 1:2].astype(np.float64)
    finite = np.all(np.isfinite(xyxy), axis=1)
    positive = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    inside = (height[:, 0] == 0) | (
        np.all(xyxy[:, :2] >= -EDGE_SLACK, axis=1)
        & (xyxy[:, 2] <= width[:, 0] + EDGE_SLACK)
        & (xyxy[:, 3] <= height[:, 0] + EDGE_SLACK)
    )
    for good, problem in (
        (finite, "is not four numbers"),
        (positive, "has no positive width and height"),
        (inside, "lies outside its image"),
    ):
        bad = np.flatnonzero(~good)
        if len(bad):
            i = bad[0]
            size = f" ({sizes[i, 1]}×{sizes[i, 0]})" if problem.startswith("lies") else ""
            raise DataError(f"{where} {rows[i]}: box {shown[i]} {problem}{size}".strip())
    limit = np.concatenate([width, height, width, height], axis=1)
    return np.clip(xyxy, 0, np.where(limit > 0, limit, np.inf)).astype(np.float32)


def class_indices(values, classes, rows, where):
    """Class names (or ids) → indices into `classes`; 0 for all when `classes` is None."""
    if classes is None:
        return np.zeros(len(values), np.int32)
    names = [str(c) for c in classes]
    lookup = {name: k for k, name in enumerate(names)}
    indices = np.asarray([lookup.get(str(v), -1) for v in values], np.int32)
    bad = np.flatnonzero(indices < 0)
    if len(bad):
        i = bad[0]
        raise DataError(f"{where} {rows[i]}: unknown class {values[i]!r} (data.classes: {names})")
    return indices


def to_xyxy(boxes, box_format, height=None, width=None):
    """(n, 4) boxes in a Keras box format → xyxy numpy (relative formats need the size)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    if box_format == "xyxy" or len(boxes) == 0:
        return boxes
    converted = keras.utils.bounding_boxes.convert_format(
        boxes, box_format, "xyxy", height=height, width=width
    )
    return np.asarray(keras.ops.convert_to_numpy(converted), np.float32)


def _template_ids(root, template):
    """Ids of the files matching an image template such as "train/{id}.jpg"."""
    head, found_id, tail = template.partition("{id}")
    if not found_id:
        return {}
    pattern = re.compile(re.escape(head) + "(.+)" + re.escape(tail) + "$")
    found = {}
    for path in sorted(root.glob(template.replace("{id}", "*"))):
        match = pattern.match(path.relative_to(root).as_posix())
        if match and path.suffix.lower() in IMAGE_SUFFIXES:
            found[match.group(1)] = str(path)
    return found


NUMBER = re.compile(r"-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan", re.IGNORECASE)


def _box_table(frame, columns):
    """(R, 4) box numbers per row (NaN row: no box), and each box as written."""
    if len(columns) == 4:
        values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        shown = [str(v) for v in frame[columns].to_numpy().tolist()]
        return values, shown
    cells = frame[columns[0]]
    values = np.full((len(frame), 4), np.nan)
    shown = cells.astype(str).tolist()
    for i, cell in enumerate(cells):
        if isinstance(cell, str) and cell.strip():
            numbers = [float(v) for v in NUMBER.findall(cell)]
            values[i] = numbers if len(numbers) == 4 else [np.inf] * 4  # not four numbers
        elif isinstance(cell, (int, float)) and not pd.isna(cell):
            values[i] = np.inf
    return values, shown


def _csv_source(cfg):
    data = cfg.data
    path = cfg.data_path(data.train)
    frame = read_csv(path, "train CSV", ids_as_text=True)
    columns = list(data.box_columns)
    if len(columns) not in (1, 4):
        raise ConfigError("data.box_columns: one column of four numbers, or four columns")
    require_columns(frame, columns + ([data.class_column] if data.class_column else []), path)
    ids = frame[frame.columns[0]].astype(str).to_numpy()
    paths_by_id = _template_ids(cfg.data_dir, data.train_images)
    for image_id in np.unique(ids):  # ids the glob did not list
        candidate = cfg.data_dir / data.train_images.format(id=image_id)
        if image_id not in paths_by_id and candidate.is_file():
            paths_by_id[image_id] = str(candidate)
    rows = np.arange(len(frame)) + 2
    unknown = [i for i, image_id in enumerate(ids) if image_id not in paths_by_id]
    if unknown:
        i = unknown[0]
        raise DataError(f"{path.name} row {rows[i]}: unknown image id {ids[i]!r} (no image file)")
    if not paths_by_id:
        raise DataError(f"no training images at {cfg.data_dir / data.train_images}")
    sizes_by_id = dict(zip(paths_by_id, image_sizes(list(paths_by_id.values())), strict=True))
    values, shown = _box_table(frame, columns)
    listed_only = np.all(np.isnan(values), axis=1)  # an image listed without a box
    keep = ~listed_only
    ids, rows, values = ids[keep], rows[keep], values[keep]
    shown = [s for s, k in zip(shown, keep, strict=True) if k]
    sizes = np.asarray([sizes_by_id[i] for i in ids], np.int64).reshape(-1, 2)
    xyxy = to_xyxy(np.where(np.isfinite(values), values, 0.0), data.box_format).astype(np.float64)
    xyxy[~np.all(np.isfinite(values), axis=1)] = np.nan
    xyxy = check_boxes(xyxy, sizes, rows, shown, f"{path.name} row")
    if data.class_column:
        class_values = frame[data.class_column].to_numpy()[keep]
        classes = data.classes or sorted({str(v) for v in class_values})
        labels = class_indices(class_values, classes, rows, f"{path.name} row")
    else:
        classes = data.classes or ["object"]
        labels = class_indices(ids, None, rows, f"{path.name} row")
    return _group(paths_by_id, sizes_by_id, ids, xyxy, labels, classes)


def _coco_source(cfg):
    data = cfg.data
    path = cfg.data_path(data.train)
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"COCO file not found: {path} (run `kapps prepare` first?)") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON: {err}") from None
    for key in ("images", "annotations", "categories"):
        if key not in content:
            raise DataError(f"{path}: no {key!r} list (not a COCO instances file)")
    categories = {c["id"]: c["name"] for c in content["categories"]}
    classes = data.classes or [categories[k] for k in sorted(categories)]
    stems, paths_by_id = {}, {}
    for image in content["images"]:
        file_path = cfg.data_dir / data.train_images.format(id=image["file_name"])
        if not file_path.is_file():
            raise DataError(f"{path.name} image {image['id']}: file not found: {file_path}")
        stems[image["id"]] = Path(image["file_name"]).stem
        paths_by_id[stems[image["id"]]] = str(file_path)
    sizes_by_id = dict(zip(paths_by_id, image_sizes(list(paths_by_id.values())), strict=True))
    annotations = content["annotations"]
    rows = [a.get("id", "?") for a in annotations]
    where = f"{path.name} annotation"
    for row, annotation in zip(rows, annotations, strict=True):
        if annotation.get("image_id") not in stems:
            raise DataError(f"{where} {row}: unknown image id {annotation.get('image_id')!r}")
    ids = np.asarray([stems[a["image_id"]] for a in annotations], dtype=object)
    values = np.full((len(annotations), 4), np.nan)
    for i, annotation in enumerate(annotations):
        box = annotation.get("bbox")
        if isinstance(box, list) and len(box) == 4:
            values[i] = pd.to_numeric(pd.Series(box), errors="coerce").to_numpy()
    shown = [str(a.get("bbox")) for a in annotations]
    sizes = np.asarray([sizes_by_id[i] for i in ids], np.int64).reshape(-1, 2)
    xyxy = to_xyxy(np.where(np.isfinite(values), values, 0.0), "xywh").astype(np.float64)
    xyxy[~np.all(np.isfinite(values), axis=1)] = np.nan
    xyxy = check_boxes(xyxy, sizes, rows, shown, where)
    names = [categories.get(a.get("category_id"), a.get("category_id")) for a in annotations]
    labels = class_indices(names, classes, rows, where)
    return _group(paths_by_id, sizes_by_id, ids, xyxy, labels, classes)


def _yolo_source(cfg):
    data = cfg.data
    root = cfg.data_path(data.train)
    if not root.is_dir():
        raise DataError(f"train image folder not found: {root} (run `kapps prepare` first?)")
    if not data.labels:
        raise ConfigError("data.labels (an image's label file, e.g. labels/{stem}.txt) is required")
    if not data.classes:
        raise ConfigError("data.classes is required for yolo_txt (its class ids index it)")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{root} holds no images")
    paths_by_id = {f.stem: str(f) for f in files}
    sizes_by_id = dict(zip(paths_by_id, image_sizes(list(paths_by_id.values())), strict=True))
    ids, rows, values, shown, classes = [], [], [], [], []
    for image_id in paths_by_id:
        label_path = cfg.data_dir / data.labels.format(stem=image_id, id=image_id)
        if not label_path.is_file():
            continue  # no label file: an image without boxes
        for number, line in enumerate(label_path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                class_id = int(parts[0])
                numbers = [float(v) for v in parts[1:]]
            except ValueError:
                numbers = []
            if len(numbers) != 4:
                raise DataError(
                    f"{label_path.name} line {number}: {line.strip()!r} is not `class cx cy w h`"
                )
            if not 0 <= class_id < len(data.classes):
                raise DataError(
                    f"{label_path.name} line {number}: unknown class {class_id} "
                    f"(0..{len(data.classes) - 1})"
                )
            height, width = sizes_by_id[image_id]
            values.append(np.asarray(numbers) * [width, height, width, height])
            ids.append(image_id)
            rows.append(f"{label_path.name} line {number}")
            shown.append(line.strip())
            classes.append(class_id)
    values = np.asarray(values, np.float64).reshape(-1, 4)
    sizes = np.asarray([sizes_by_id[i] for i in ids], np.int64).reshape(-1, 2)
    xyxy = check_boxes(to_xyxy(values, "center_xywh").astype(np.float64), sizes, rows, shown, "")
    labels = np.asarray(classes, np.int32)
    return _group(paths_by_id, sizes_by_id, np.asarray(ids), xyxy, labels, data.classes)


def _group(paths_by_id, sizes_by_id, box_ids, xyxy, labels, class_names):
    """One `BoxSource` row per image from one row per box."""
    order = list(paths_by_id)
    boxes = {i: [] for i in order}
    classes = {i: [] for i in order}
    for image_id, box, label in zip(box_ids, xyxy, labels, strict=True):
        boxes[image_id].append(box)
        classes[image_id].append(label)
    return BoxSource(
        ids=np.asarray(order),
        paths=[paths_by_id[i] for i in order],
        sizes=np.asarray([sizes_by_id[i] for i in order], np.int64).reshape(-1, 2),
        boxes=[np.asarray(boxes[i], np.float32).reshape(-1, 4) for i in order],
        labels=[np.asarray(classes[i], np.int32) for i in order],
        classes=[str(c) for c in class_names],
    )


READERS = {"box_csv": _csv_source, "coco": _coco_source, "yolo_txt": _yolo_source}


def read_box_source(cfg):
    """The training images of a detection competition with their checked boxes."""
    return READERS[cfg.data.format](cfg)
