"""The text-normalization replica's generator and rules, and the token files' reading."""

import numpy as np
import pandas as pd
import pytest

from pipelines.data.tokens import CLASSES, PATTERN, contexts, needs_model, read_tokens
from pipelines.errors import DataError
from pipelines.synthetic import textnorm
from pipelines.synthetic.textnorm import RULES, normalise, token_rows

EXAMPLES = [  # (class, written, spoken): Kaggle's style, one or more per class
    ("PLAIN", "attribute", "attribute"),
    ("PUNCT", ",", ","),
    ("DATE", "1999", "nineteen ninety nine"),
    ("DATE", "2005", "two thousand five"),
    ("DATE", "1905", "nineteen o five"),
    ("DATE", "1990s", "nineteen nineties"),
    ("DATE", "March 5, 2001", "march fifth two thousand one"),
    ("DATE", "5 March 2010", "the fifth of march twenty ten"),
    ("DATE", "2001-03-05", "the fifth of march two thousand one"),
    ("LETTERS", "HTML", "h t m l"),
    ("LETTERS", "e.g.", "e g"),
    ("CARDINAL", "1,234", "one thousand two hundred thirty four"),
    ("CARDINAL", "-12", "minus twelve"),
    ("CARDINAL", "0", "zero"),
    ("VERBATIM", "&", "and"),
    ("VERBATIM", "α", "alpha"),
    ("DECIMAL", "3.14", "three point one four"),
    ("DECIMAL", "0.05", "zero point zero five"),
    ("MEASURE", "10 kg", "ten kilograms"),
    ("MEASURE", "1 ft", "one foot"),
    ("MEASURE", "2.5 km", "two point five kilometers"),
    ("MEASURE", "20%", "twenty percent"),
    ("MONEY", "$3.50", "three dollars fifty cents"),
    ("MONEY", "£1", "one pound"),
    ("MONEY", "€2.01", "two euros one cent"),
    ("ORDINAL", "1st", "first"),
    ("ORDINAL", "22nd", "twenty second"),
    ("ORDINAL", "113th", "one hundred thirteenth"),
    ("TIME", "12:30", "twelve thirty"),
    ("TIME", "3:05 pm", "three o five p m"),
    ("TIME", "7:00", "seven o'clock"),
    ("TIME", "7:00 am", "seven a m"),
    ("ELECTRONIC", "www.python.org", "w w w dot p y t h o n dot o r g"),
    ("ELECTRONIC", "ab@cd.com", "a b at c d dot c o m"),
    ("ELECTRONIC", "http://x.com", "h t t p colon slash slash x dot c o m"),
    ("DIGIT", "0420", "zero four two zero"),
    ("FRACTION", "1/2", "one half"),
    ("FRACTION", "3/4", "three quarters"),
    ("FRACTION", "2/3", "two thirds"),
    ("FRACTION", "1/10", "one tenth"),
    ("TELEPHONE", "555-0123", "five five five sil o one two three"),
    ("TELEPHONE", "1-800-555-0199", "one sil eight o o sil five five five sil o one nine nine"),
    ("ADDRESS", "I-95", "i ninety five"),
]


def test_the_generator_has_kaggles_sixteen_classes():
    assert tuple(RULES) == CLASSES


@pytest.mark.parametrize(("cls", "written", "spoken"), EXAMPLES)
def test_each_class_is_read_by_its_rule(cls, written, spoken):
    assert normalise(cls, written) == spoken


def test_every_class_occurs_and_every_row_is_its_rules_reading():
    frame = token_rows(120, seed=3)
    assert set(frame["class"]) == set(CLASSES)
    assert list(frame.columns) == ["sentence_id", "token_id", "class", "before", "after"]
    for row in frame.itertuples():
        assert row.after == normalise(row._3, row.before)
    # a bare year reads as a date after "in", as a number after "exactly"
    sentences = frame.groupby("sentence_id")["token_id"].apply(list)
    assert all(ids == list(range(len(ids))) for ids in sentences)


def test_the_same_seed_gives_the_same_sentences():
    pd.testing.assert_frame_equal(token_rows(30, seed=1), token_rows(30, seed=1))
    assert not token_rows(30, seed=1).equals(token_rows(30, seed=2))


def test_generate_writes_kaggles_files_with_matching_ids(tmp_path):
    textnorm.generate(tmp_path, train=40, test=10)
    train = pd.read_csv(tmp_path / "en_train.csv", dtype=str, keep_default_na=False)
    test = pd.read_csv(tmp_path / "en_test_2.csv", dtype=str, keep_default_na=False)
    sample = pd.read_csv(tmp_path / "en_sample_submission_2.csv", dtype=str, keep_default_na=False)
    key = pd.read_csv(tmp_path / "en_test_2_solution.csv", dtype=str, keep_default_na=False)
    assert list(test.columns) == ["sentence_id", "token_id", "before"]
    assert list(sample.columns) == ["id", "after"] and list(key.columns) == ["id", "after", "class"]
    assert (sample["id"] == test["sentence_id"] + "_" + test["token_id"]).all()
    assert (sample["id"] == key["id"]).all() and (sample["after"] == test["before"]).all()
    assert len(train) > 40 * 5


def test_the_model_reads_numbers_symbols_acronyms_and_what_training_saw_changed():
    for written in ("1999", "12:30", "HTML", "www.python.org", "α", "I-95", "$3"):
        assert PATTERN.search(written), written
    for written in ("attribute", "The", ",", ".", "don't", "("):
        assert not PATTERN.search(written), written
    assert needs_model(["&", "and", "Mr"], {"&", "Mr"}).tolist() == [True, False, True]


def test_contexts_stay_inside_their_sentence():
    frame = pd.DataFrame(
        {"sentence_id": ["0"] * 3 + ["1"] * 2, "before": ["a", "b", "c", "d", "e"]}
    )
    left, right = contexts(frame, 2)
    assert left.tolist() == ["", "a", "a b", "", "d"]
    assert right.tolist() == ["b c", "c", "", "e", ""]


def write(path, rows, columns=("sentence_id", "token_id", "class", "before", "after")):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def test_tokens_named_none_or_na_are_text(tmp_path):
    path = write(tmp_path / "t.csv", [(0, 0, "PLAIN", "None", "None"), (0, 1, "PLAIN", "NA", "NA")])
    assert read_tokens(path, training=True)["before"].tolist() == ["None", "NA"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(0, 0, "PLAIN", "", "x")], "row 2 has an empty `before`"),
        ([(0, 0, "PLAIN", "a", "a"), (0, 1, "NUMBER", "1", "one")], "unknown class 'NUMBER'"),
    ],
)
def test_bad_training_tokens_are_one_data_error(tmp_path, rows, message):
    with pytest.raises(DataError, match=message):
        read_tokens(write(tmp_path / "t.csv", rows), training=True)


@pytest.mark.parametrize("shuffle", [False, True])
def test_length_buckets_pad_to_their_bound_and_keras_knows_the_batch_count(shuffle):
    from pipelines.data.tokens import BUCKETS, batches

    rng = np.random.default_rng(0)
    sources = [list(range(1, n + 1)) for n in rng.integers(3, 70, 300)]
    outputs = [[7] * n for n in rng.integers(1, 9, 300)]
    data = batches(sources, outputs, outputs, 16, shuffle=shuffle, seed=1)
    longest = max(map(len, sources))  # the last bucket's width
    got = list(data.as_numpy_iterator())
    assert len(got) == int(data.cardinality())  # what Keras reads for its progress and epochs
    seen = 0
    for x, y in got:
        width, lengths = x["encoder_token_ids"].shape[1], (x["encoder_token_ids"] > 0).sum(1)
        bound = next((b for b in BUCKETS if lengths.max() <= b), None)
        assert width == (bound or longest) and lengths.min() > (
            max([b for b in BUCKETS if b < lengths.max()], default=0)
        )
        assert y.shape == x["decoder_token_ids"].shape
        seen += len(y)
    if shuffle:  # each full bucket's last partial batch is dropped
        assert 300 - 16 * (len(BUCKETS) + 1) < seen <= 300
    else:
        assert seen == 300
