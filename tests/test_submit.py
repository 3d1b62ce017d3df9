"""Writers and the validator that holds every file against sample_submission.csv."""

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import SubmissionError
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


def _kaggle_run(digits_run, tmp_path):
    """A copy of the shared digits run, as if it were a Kaggle competition's."""
    import shutil

    import yaml

    run_dir = tmp_path / "run"
    shutil.copytree(digits_run[0], run_dir, ignore=shutil.ignore_patterns("backup", "cache"))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["competition"]["kaggle"] = "digit-recognizer"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def _stand_in_kaggle(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = (
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/kaggle-args\necho "Successfully submitted"\n'
    )
    (bin_dir / "kaggle").write_text(script)
    (bin_dir / "kaggle").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    return tmp_path / "kaggle-args"


def test_submit_kaggle_hands_the_validated_file_to_the_kaggle_cli(
    digits_run, cli, tmp_path, monkeypatch
):
    run_dir = _kaggle_run(digits_run, tmp_path)
    recorded = _stand_in_kaggle(tmp_path, monkeypatch)
    result = cli("submit", run_dir, "--kaggle", "--message", "first try")
    assert result.exit_code == 0, result.output
    assert "valid:" in result.output and "Successfully submitted" in result.output
    args = recorded.read_text().splitlines()
    assert args == [
        "competitions",
        "submit",
        "-c",
        "digit-recognizer",
        "-f",
        str(run_dir / "submission.csv"),
        "-m",
        "first try",
    ]


def test_submit_kaggle_refuses_what_it_cannot_upload(digits_run, cli, tmp_path, monkeypatch):
    run_dir = _kaggle_run(digits_run, tmp_path)
    recorded = _stand_in_kaggle(tmp_path, monkeypatch)
    # An invalid file is never uploaded.
    bad = tmp_path / "bad.csv"
    bad.write_text("ImageId,Label\n1,3\n")
    result = cli("submit", run_dir, "--file", bad, "--kaggle")
    assert result.exit_code == 2 and not recorded.exists()
    # A competition without a Kaggle slug.
    result = cli("submit", digits_run[0], "--kaggle")
    assert result.exit_code == 2 and "not a Kaggle competition" in result.output
    # No Kaggle CLI: one line saying what to do.
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    result = cli("submit", run_dir, "--kaggle")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "pip install kaggle" in errors[0]
