"""Run-length encoding: exact round trips in both orders, Kaggle's conventions, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kapps.segmentation import rle

masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda shape: arrays(np.uint8, shape, elements=st.integers(0, 1))
)


@settings(max_examples=300, deadline=None)
@given(mask=masks, order=st.sampled_from(["F", "C"]))
def test_random_masks_round_trip_exactly(mask, order):
    encoded = rle.encode(mask, order)
    np.testing.assert_array_equal(rle.decode(encoded, mask.shape, order), mask)
    if encoded:  # 1-indexed, strictly increasing, non-touching runs
        starts, lengths = rle.parse(encoded, mask.size)
        assert starts.min() >= 0 and (starts[1:] > starts[:-1] + lengths[:-1]).all()


def test_kaggle_text_example_is_column_major():
    # Kaggle: "1 3 10 5" means pixels 1,2,3,10,11,12,13,14, numbered top to bottom first.
    mask = rle.decode("1 3 10 5", (4, 4), order="F")
    assert mask.ravel(order="F").nonzero()[0].tolist() == [0, 1, 2, 9, 10, 11, 12, 13]
    assert rle.encode(mask, order="F") == "1 3 10 5"


def test_orders_differ_on_a_non_symmetric_mask():
    mask = np.zeros((3, 5), np.uint8)
    mask[0, 1:4] = 1  # a horizontal bar: one run row-major, three column-major
    assert rle.encode(mask, "C") == "2 3"
    assert rle.encode(mask, "F") == "4 1 7 1 10 1"


def test_empty_mask_is_empty_string_and_decodes_from_blank_or_nan():
    assert rle.encode(np.zeros((4, 4)), "F") == ""
    for empty in ("", " ", None, float("nan")):
        assert rle.decode(empty, (2, 3)).sum() == 0


def test_detect_order_finds_the_encoding_order():
    rng = np.random.default_rng(0)
    known = [rng.random((6, 9)) > 0.6 for _ in range(4)]
    for order in ("F", "C"):
        found, agreement = rle.detect_order([rle.encode(m, order) for m in known], known)
        assert (found, agreement) == (order, 1.0)


def test_detect_order_refuses_rles_of_other_masks():
    rng = np.random.default_rng(1)
    masks = [rng.random((6, 9)) > 0.5 for _ in range(3)]
    others = [rle.encode(rng.random((6, 9)) > 0.5, "C") for _ in range(3)]
    with pytest.raises(rle.RLEError, match="neither"):
        rle.detect_order(others, masks)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 x", "'x' is not an integer"),
        ("1 2 3", "start/length pairs"),
        ("0 2", "1-indexed"),
        ("5 0", "at least 1"),
        ("10 8", "past the mask's 16 pixels"),
        ("5 3 6 2", "overlap or are not in increasing order"),
        ("9 1 2 2", "overlap or are not in increasing order"),
    ],
)
def test_malformed_rle_says_what_is_wrong(text, message):
    with pytest.raises(rle.RLEError, match=message):
        rle.decode(text, (4, 4))
