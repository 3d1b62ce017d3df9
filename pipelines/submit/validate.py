"""Hold a submission against `sample_submission.csv` before it is written.

Checks, in order: header, row count, the id set, the id order, the value types,
missing values, and values outside the task's classes. The first failure raises
`SubmissionError` with one line.
"""

from pathlib import Path

import pandas as pd

from pipelines.errors import SubmissionError
from pipelines.runs import atomic_write


def read_sample(path, text=False):
    """The sample submission; `text`: every value as written ("None" is a token)."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"sample submission not found: {path}")
    if text:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    # Ids stay as written: "00042" must not become 42.
    return pd.read_csv(path, dtype={pd.read_csv(path, nrows=0).columns[0]: str})


def _examples(values, n=3):
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:n])
    return shown + (f" … ({len(values)} in all)" if len(values) > n else "")


def _same_kind(column, sample_column):
    if pd.api.types.is_numeric_dtype(sample_column.dtype):
        if not pd.api.types.is_numeric_dtype(column.dtype):
            return False
        if pd.api.types.is_integer_dtype(sample_column.dtype):
            return pd.api.types.is_integer_dtype(column.dtype) or bool(
                (column.dropna() % 1 == 0).all()
            )
    return True


def _row_keys(frame, sample):
    """What names a row: the id column, or id and class when the sample repeats ids."""
    columns = list(sample.columns[:1])
    if len(sample.columns) > 2 and sample[sample.columns[0]].duplicated().any():
        columns = list(sample.columns[:2])
    keys = [table[columns].astype(str).agg(" / ".join, axis=1) for table in (frame, sample)]
    return keys[0], keys[1]


def validate_submission(frame, sample, name="submission", allow_empty=(), valid_values=None):
    """Raise `SubmissionError` unless `frame` matches `sample` in every respect.

    Args:
        allow_empty: columns where an empty value is an answer (an empty RLE
            mask), not a missing one.
        valid_values: `{column: allowed values}` (a label column's classes),
            compared as text.
    """
    if list(frame.columns) != list(sample.columns):
        raise SubmissionError(
            f"{name}: header {list(frame.columns)} differs from the sample's {list(sample.columns)}"
        )
    if len(frame) != len(sample):
        raise SubmissionError(f"{name}: {len(frame)} rows, the sample has {len(sample)}")
    ours, theirs = _row_keys(frame, sample)
    missing, extra = set(theirs) - set(ours), set(ours) - set(theirs)
    if missing:
        raise SubmissionError(f"{name}: missing ids {_examples(sorted(missing))}")
    if extra:
        raise SubmissionError(f"{name}: ids not in the sample {_examples(sorted(extra))}")
    if ours.duplicated().any():
        raise SubmissionError(f"{name}: duplicate ids {_examples(ours[ours.duplicated()])}")
    if not (ours.to_numpy() == theirs.to_numpy()).all():
        first = int((ours.to_numpy() != theirs.to_numpy()).argmax())
        raise SubmissionError(
            f"{name}: ids are not in the sample's order (row {first + 2} has "
            f"{ours.iloc[first]!r}, the sample {theirs.iloc[first]!r})"
        )
    for column in sample.columns[1:]:
        if column in allow_empty:
            continue
        nan_rows = frame.index[frame[column].isna()]
        if len(nan_rows):
            raise SubmissionError(
                f"{name}: column {column!r} has missing values (row {nan_rows[0] + 2})"
            )
        if not _same_kind(frame[column], sample[column]):
            raise SubmissionError(
                f"{name}: column {column!r} holds {frame[column].dtype} values, the "
                f"sample {sample[column].dtype}"
            )
    for column, allowed in (valid_values or {}).items():
        allowed = {str(v) for v in allowed}
        bad = ~frame[column].astype(str).isin(allowed)
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise SubmissionError(
                f"{name}: row {row + 2} has {column} {frame[column].iloc[row]}, not one of "
                f"the competition's classes ({_examples(sorted(allowed))})"
            )


def write_submission(frame, sample, path, allow_empty=(), valid_values=None):
    """Validate, then write atomically: an invalid file is never written."""
    validate_submission(
        frame, sample, name=Path(path).name, allow_empty=allow_empty, valid_values=valid_values
    )
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    return Path(path)
