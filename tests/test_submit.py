"""Writers and the validator that holds every file against sample_submission.csv."""

import numpy as np
import pandas as pd
import pytest

from kapps.errors import SubmissionError
from pipelines.submit import label_frame, probability_frame, validate_submission, write_submission

SAMPLE = pd.DataFrame({"ImageId": [1, 2, 3], "Label": [0, 0, 0]})


def test_label_frame_matches_sample_types():
    frame = label_frame(np.array([1, 2, 3]), np.array([7, 1, 4], dtype=object), SAMPLE)
    validate_submission(frame, SAMPLE)
    assert frame["Label"].dtype == np.int64


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"ImageId": [1, 2, 3], "label": [1, 2, 3]}), "header"),
        (pd.DataFrame({"ImageId": [1, 2], "Label": [1, 2]}), "2 rows, the sample has 3"),
        (pd.DataFrame({"ImageId": [1, 2, 4], "Label": [1, 2, 3]}), "missing ids '3'"),
        (pd.DataFrame({"ImageId": [1, 2, 2], "Label": [1, 2, 3]}), "missing ids"),
        (pd.DataFrame({"ImageId": [2, 1, 3], "Label": [1, 2, 3]}), "not in the sample's order"),
        (pd.DataFrame({"ImageId": [1, 2, 3], "Label": [1, np.nan, 3]}), "missing values"),
        (pd.DataFrame({"ImageId": [1, 2, 3], "Label": ["a", "b", "c"]}), "holds str values"),
        (pd.DataFrame({"ImageId": [1, 2, 3], "Label": [0.5, 1, 2]}), "holds float64 values"),
    ],
)
def test_validator_rejects(frame, message):
    with pytest.raises(SubmissionError, match=message):
        validate_submission(frame, SAMPLE)


def test_invalid_file_is_never_written_and_old_one_survives(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_text("previous\n")
    bad = pd.DataFrame({"ImageId": [1, 2, 3], "Label": [1, None, 3]})
    with pytest.raises(SubmissionError):
        write_submission(bad, SAMPLE, path)
    assert path.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]


def test_valid_file_is_written_atomically(tmp_path):
    path = tmp_path / "submission.csv"
    write_submission(pd.DataFrame({"ImageId": [1, 2, 3], "Label": [4, 5, 6]}), SAMPLE, path)
    assert pd.read_csv(path).equals(pd.DataFrame({"ImageId": [1, 2, 3], "Label": [4, 5, 6]}))
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]


def test_probability_of_positive_class_with_clipping():
    sample = pd.DataFrame({"id": [1, 2], "label": [0.5, 0.5]})
    probs = np.array([[1.0, 0.0], [0.2, 0.8]])
    frame = probability_frame(np.array([1, 2]), probs, ["cat", "dog"], sample, "dog", clip=0.01)
    validate_submission(frame, sample)
    np.testing.assert_allclose(frame["label"], [0.01, 0.8])


def test_probability_per_class_columns():
    sample = pd.DataFrame({"id": ["a"], "dog": [0.5], "cat": [0.5]})
    frame = probability_frame(np.array(["a"]), np.array([[0.3, 0.7]]), ["cat", "dog"], sample)
    assert frame.to_dict("list") == {"id": ["a"], "dog": [0.7], "cat": [0.3]}
    with pytest.raises(SubmissionError, match="positive_class"):
        probability_frame(
            np.array(["a"]), np.array([[0.3, 0.7]]), ["cat", "dog"], sample[["id", "dog"]]
        )
