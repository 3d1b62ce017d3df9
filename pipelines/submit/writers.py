"""Writers: predictions → a DataFrame shaped like `sample_submission.csv`."""

import numpy as np
import pandas as pd

from pipelines.errors import SubmissionError
from pipelines.runs import atomic_write


def _typed_like(values, sample_column):
    """Cast predicted labels to the dtype the sample file uses (e.g. ints for digits)."""
    if pd.api.types.is_integer_dtype(sample_column.dtype):
        try:
            return np.asarray(values).astype(np.int64)
        except (TypeError, ValueError):
            return np.asarray(values)
    return np.asarray(values)


def label_frame(ids, labels, sample):
    """`id,label`: one predicted class label per id (Digit Recognizer)."""
    if len(sample.columns) != 2:
        raise SubmissionError(
            f"a label submission has 2 columns, the sample has {list(sample.columns)}"
        )
    id_col, target = sample.columns
    return pd.DataFrame({id_col: ids, target: _typed_like(labels, sample[target])})


def probability_frame(ids, probabilities, classes, sample, positive_class=None, clip=0.0):
    """Probabilities: `id,p` for P(positive_class), or `id,<class1>,<class2>,...`.

    Args:
        probabilities: (N, num_classes) class probabilities in `classes` order.
        clip: clip probabilities to [clip, 1 - clip] (log-loss competitions).
    """
    probabilities = np.clip(probabilities, clip, 1.0 - clip)
    id_col, *targets = sample.columns
    frame = pd.DataFrame({id_col: ids})
    names = [str(c) for c in classes]
    if len(targets) == 1:
        if positive_class is None:
            raise SubmissionError("one probability column needs submission.positive_class")
        if str(positive_class) not in names:
            raise SubmissionError(f"submission.positive_class {positive_class!r} not in {names}")
        frame[targets[0]] = probabilities[:, names.index(str(positive_class))]
        return frame
    unknown = [t for t in targets if str(t) not in names]
    if unknown:
        raise SubmissionError(f"sample submission columns {unknown} are not classes {names}")
    for target in targets:
        frame[target] = probabilities[:, names.index(str(target))]
    return frame


def rle_frame(ids, rles, classes, sample, empty=""):
    """RLE masks in the sample's row layout, in the sample's row order.

    Two layouts: `id,rle` with one row per image (one foreground class,
    Carvana), or `id,class,rle` with one row per image and class.

    Args:
        ids: test image ids, one per entry of `rles`.
        rles: per image, one RLE string per foreground class (`classes` order).
        empty: what an empty mask is written as ("" or "-").
    """
    by_id = {str(i): row for i, row in zip(ids, rles, strict=True)}
    names = [str(c) for c in classes]
    columns = list(sample.columns)
    sample_ids = sample[columns[0]].astype(str)
    missing = sorted(set(sample_ids) - set(by_id))
    if missing:
        raise SubmissionError(f"no prediction for sample ids {missing[:3]}")
    if len(columns) == 2:
        if len(names) != 1:
            raise SubmissionError(
                f"the sample has one RLE column for {len(names)} classes; it needs a class column"
            )
        values = [by_id[i][0] or empty for i in sample_ids]
        return pd.DataFrame({columns[0]: sample[columns[0]], columns[1]: values})
    if len(columns) != 3:
        raise SubmissionError(f"an RLE submission has 2 or 3 columns, the sample {columns}")
    sample_classes = sample[columns[1]].astype(str)
    unknown = sorted(set(sample_classes) - set(names))
    if unknown:
        raise SubmissionError(f"sample submission classes {unknown} are not classes {names}")
    values = [
        by_id[i][names.index(c)] or empty for i, c in zip(sample_ids, sample_classes, strict=True)
    ]
    return pd.DataFrame(
        {columns[0]: sample[columns[0]], columns[1]: sample[columns[1]], columns[2]: values}
    )


def matches_frame(ids, matches, sample):
    """`id,matches`: each query's best gallery ids, best first, space-joined.

    Args:
        ids: query ids, one per entry of `matches`.
        matches: per query, a sequence of gallery ids.
    """
    if len(sample.columns) != 2:
        raise SubmissionError(
            f"a matches submission has 2 columns, the sample has {list(sample.columns)}"
        )
    id_col, target = sample.columns
    joined = [" ".join(str(m) for m in row) for row in matches]
    return pd.DataFrame({id_col: ids, target: joined})


def write_embeddings(folder, name, ids, embeddings):
    """`<name>.npy` (float32, one row per id) and `<name>_ids.csv` in `folder`, atomically."""

    def save(tmp):
        with open(tmp, "wb") as file:  # a file object: np.save would add ".npy" to a name
            np.save(file, np.asarray(embeddings, np.float32))

    atomic_write(folder / f"{name}.npy", save)
    atomic_write(
        folder / f"{name}_ids.csv",
        lambda f: pd.DataFrame({"id": ids}).to_csv(f, index=False),
    )
    return folder / f"{name}.npy"


def box_string(boxes, labels, scores, style, no_finding=None):
    """One image's detections as a PredictionString, most confident first.

    Args:
        boxes: (n, 4) xyxy pixels of the original image.
        style: "conf_xywh" ("0.9 x y w h …", Global Wheat) or "class_conf_xyxy"
            ("class 0.9 x1 y1 x2 y2 …", VinBigData).
        no_finding: the string of an image with no box (VinBigData "14 1 0 0 1 1").
    """
    if len(boxes) == 0:
        return no_finding or ""
    parts = []
    for index in np.argsort(-np.asarray(scores), kind="stable"):
        x1, y1, x2, y2 = (round(float(v)) for v in boxes[index])
        confidence = f"{float(scores[index]):.4f}"
        if style == "conf_xywh":
            parts.append(f"{confidence} {x1} {y1} {x2 - x1} {y2 - y1}")
        else:
            parts.append(f"{labels[index]} {confidence} {x1} {y1} {x2} {y2}")
    return " ".join(parts)


def boxes_frame(ids, detections, sample, style, no_finding=None):
    """`image_id,PredictionString` in the sample's order.

    Args:
        ids: test image ids, one per entry of `detections`.
        detections: per image `(boxes xyxy, labels, scores)`; for "class_conf_xyxy"
            the labels are written as they are (class names or ids).
    """
    if len(sample.columns) != 2:
        raise SubmissionError(
            f"a box submission has 2 columns (id, PredictionString), the sample "
            f"{list(sample.columns)}"
        )
    by_id = {str(i): d for i, d in zip(ids, detections, strict=True)}
    id_col, target = sample.columns
    sample_ids = sample[id_col].astype(str)
    missing = sorted(set(sample_ids) - set(by_id))
    if missing:
        raise SubmissionError(f"no prediction for sample ids {missing[:3]}")
    strings = [box_string(*by_id[i], style, no_finding) for i in sample_ids]
    return pd.DataFrame({id_col: sample[id_col], target: strings})


def parse_box_string(text, style):
    """A PredictionString back to `(boxes xyxy (n, 4), labels (n,), scores (n,))`."""
    values = str(text).split() if isinstance(text, str) else []
    width = 5 if style == "conf_xywh" else 6
    if len(values) % width:
        raise SubmissionError(
            f"PredictionString {str(text)[:40]!r} is not groups of {width} values"
        )
    rows = np.asarray(values, dtype=object).reshape(-1, width)
    if style == "conf_xywh":
        numbers = rows.astype(np.float64)
        scores, xywh = numbers[:, 0], numbers[:, 1:]
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        return boxes, np.zeros(len(rows), np.int64), scores
    return rows[:, 2:].astype(np.float64), rows[:, 0], rows[:, 1].astype(np.float64)
