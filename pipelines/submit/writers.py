"""Writers: predictions → a DataFrame shaped like `sample_submission.csv`."""

import numpy as np
import pandas as pd

from kapps.errors import SubmissionError
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
