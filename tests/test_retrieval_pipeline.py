"""Retrieval end to end: shapes-captions, a Flickr8k replica, readers, bad rows."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines.config import load_config
from pipelines.data.captions import caption_tokens, read_caption_table, split_images, token_space
from pipelines.data.text import WordTokenizer, fit_tokenizer
from tests.conftest import FAST, assert_one_line_error, prepare_module
from tests.replicas import corrupt

TINY = [*FAST, "data.image_size=[32,32]", "train.batch_size=16", "model.args.text_width=32"]
LEARN = ["train.epochs=10", "train.lr=0.003", "train.warmup_epochs=1"]  # warm-up: see README


@pytest.fixture
def shapes(competition):
    folder = competition("shapes-captions")
    prepare_module("shapes-captions").generate(folder / "data", train=160, test=24, size=32)
    return folder


def test_shapes_captions_runs_end_to_end_and_scores_its_submission(shapes, cli):
    result = cli("run", shapes, *TINY, *LEARN)
    assert result.exit_code == 0, result.output
    run = next((shapes.parent.parent / "runs" / "shapes-captions").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    validation, test = metrics["validation"], metrics["test"]
    for side in ("text_to_image", "image_to_text"):
        for name in ("recall@1", "recall@5", "recall@10", "median_rank", "map@10"):
            assert f"{side}_{name}" in validation
    # 16 validation images: a caption's image found in the top 5 far more often
    # than the 5/16 of a random ranking.
    assert validation["text_to_image_recall@5"] > 0.5
    assert 0 < validation["zero_shot_images"] <= 16
    assert test.keys() == {"recall@1", "recall@5", "map@5"}
    submission = pd.read_csv(run / "submission.csv", dtype=str)
    sample = pd.read_csv(shapes / "data" / "sample_submission.csv", dtype=str)
    assert list(submission.columns) == ["id", "matches"]
    assert submission["id"].tolist() == sample["id"].tolist()
    gallery = set(pd.read_csv(shapes / "data" / "gallery.csv")["image"])
    rows = submission["matches"].str.split()
    assert rows.map(len).eq(5).all() and rows.map(lambda r: set(r) <= gallery).all()
    embeddings = np.load(run / "embeddings" / "gallery.npy")
    assert embeddings.shape == (24, 128)
    assert pd.read_csv(run / "embeddings" / "gallery_ids.csv")["id"].tolist() == sorted(gallery)
    assert json.loads((run / "tokenizer.json").read_text())["kind"] == "word"
    assert (run / "retrieval.png").stat().st_size > 10_000
    # The local score is the recall of the submission against the answer key.
    solution = pd.read_csv(shapes / "data" / "solution.csv", dtype=str)
    hits = [a in r for a, r in zip(solution["matches"], rows, strict=True)]
    assert test["recall@5"] == pytest.approx(np.mean(hits))


def _flickr_replica(data_dir, images=30):
    """Flickr8k's layout: Images/*.jpg and captions.txt, five captions per image."""
    rng = np.random.default_rng(0)
    (data_dir / "Images").mkdir(parents=True)
    colours = {"red": (200, 30, 30), "green": (30, 160, 40), "blue": (30, 60, 200)}
    rows = []
    for index in range(images):
        name = f"{1000 + index}_{index:x}.jpg"
        colour = list(colours)[index % 3]
        pixels = np.full((40, 48, 3), colours[colour], np.uint8)
        pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(data_dir / "Images" / name)
        for n in range(5):
            rows.append({"image": name, "caption": f"a {colour} picture number {n} ."})
    pd.DataFrame(rows).to_csv(data_dir / "captions.txt", index=False)


def test_flickr8k_replica_holds_out_images_and_submits_every_caption(competition, cli):
    comp = competition("flickr8k")
    _flickr_replica(comp / "data")
    result = cli("run", comp, *TINY, "data.vocab_size=50", "model.args.image_encoder=lenet5")
    assert result.exit_code == 0, result.output
    data = comp / "data"
    gallery = pd.read_csv(data / "gallery.csv")["image"].tolist()
    train = pd.read_csv(data / "train_captions.csv")
    assert len(gallery) == 6 and not set(gallery) & set(train["image"])  # split by image
    run = next((comp.parent.parent / "runs" / "flickr8k").iterdir())
    submission = pd.read_csv(run / "submission.csv")
    assert len(submission) == 30 and submission["id"].str.contains("#").all()
    assert "recall@5" in json.loads((run / "metrics.json").read_text())["test"]


def test_flickr8k_without_its_files_says_where_to_get_them(competition, cli, workdir):
    comp = competition("flickr8k")
    (comp / "data").mkdir()
    (comp / "data" / "README.txt").write_text("placeholder")  # filled: no download
    assert_one_line_error(cli("prepare", comp), "captions.txt not found", "adityajn105/flickr8k")


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        ("empty caption", ("captions.txt: row 4", "empty caption", "00000.png")),
        ("missing image", ("captions.txt: row 2", "'00000.png' not found")),
        ("unreadable image", ("captions.txt: row 7", "'00001.png' cannot be decoded")),
    ],
)
def test_bad_caption_rows_are_named(shapes, cli, damage, fragments):
    data = shapes / "data"
    captions = pd.read_csv(data / "captions.txt")
    if damage == "empty caption":
        captions.loc[2, "caption"] = "  "
        captions.to_csv(data / "captions.txt", index=False)
    elif damage == "missing image":
        (data / "Images" / "00000.png").unlink()
    else:
        corrupt(data / "Images" / "00001.png")
    assert_one_line_error(cli("train", shapes, *TINY), *fragments)


def test_coco_captions_json_and_a_dangling_image_id(workdir):
    data = workdir / "coco" / "data"
    (data / "images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(data / "images" / name)
    notes = [
        {"id": 1, "image_id": 7, "caption": "a dog"},
        {"id": 2, "image_id": 9, "caption": "a cat"},
        {"id": 3, "image_id": 7, "caption": "a brown dog"},
    ]
    spec = {"images": [{"id": 7, "file_name": "a.jpg"}, {"id": 9, "file_name": "b.jpg"}]}
    (data / "captions.json").write_text(json.dumps({**spec, "annotations": notes}))
    yaml = workdir / "coco" / "competition.yaml"
    yaml.write_text(
        "competition: {name: coco, task: retrieval}\n"
        "data: {format: coco_captions, train: captions.json, train_images: 'images/{id}'}\n"
    )
    table = read_caption_table(load_config(yaml))
    assert table.images.tolist() == ["a.jpg", "b.jpg"]
    assert table.owner.tolist() == [0, 1, 0] and table.captions[2] == "a brown dog"
    notes.append({"id": 4, "image_id": 11, "caption": "a bird"})
    (data / "captions.json").write_text(json.dumps({**spec, "annotations": notes}))
    with pytest.raises(Exception, match=r"annotation 3 \(id 4\): image_id 11"):
        read_caption_table(load_config(yaml))


def test_split_is_by_image_and_tokens_end_with_end_of_text():
    train, val = split_images(50, 0.2, seed=3)
    assert len(val) == 10 and not set(train) & set(val) and len(train) + len(val) == 50
    tokenizer = WordTokenizer.fit("a red circle left of a blue square", vocab_size=50)
    tokens = caption_tokens(tokenizer, ["a red circle", "a green circle left of a square"], 5)
    end = WordTokenizer.END
    assert tokens[0].tolist()[:4] == [*tokenizer.encode("a red circle"), end]
    assert tokens[0, 4] == 0  # padding
    assert tokens[1, -1] == end and WordTokenizer.UNKNOWN in tokens[1]  # "green" is unknown
    assert tokenizer.unknown("a green circle") == ["green"]
    assert tokenizer.decode(tokenizer.encode("A red circle!")) == "a red circle [unk]"


def test_subword_caption_tokens_keep_zero_for_padding(tmp_path):
    texts = ["a red circle left of a blue square", "a green star at the top"] * 20
    tokenizer = fit_tokenizer("\n".join(texts), "bpe", 300, tmp_path)  # 256 byte pieces
    vocab, offset, end = token_space(tokenizer)
    tokens = caption_tokens(tokenizer, texts[:2], 24)
    assert offset == 1 and end == vocab - 1 == tokenizer.vocab_size + 1
    for row, text in zip(tokens, texts[:2], strict=True):
        ids = row[row != 0]
        assert ids[-1] == end and (ids[:-1] >= 1).all() and (ids[:-1] < end).all()
        assert tokenizer.decode(ids[:-1] - 1) == text


@pytest.mark.slow  # default-run budget: test_cv blends classification runs
def test_ensemble_ranks_by_the_mean_of_the_runs_similarities(shapes, cli, workdir):
    quick = [*TINY, "train.epochs=1"]  # blending is checked, not quality
    runs = []
    for extra in ([], ["model.args.embed_dim=64"]):
        result = cli("run", shapes, *quick, *extra)
        assert result.exit_code == 0, result.output
        runs.append(
            next(p for p in (workdir / "runs" / "shapes-captions").iterdir() if p not in runs)
        )
    out = workdir / "blend"
    result = cli("ensemble", *runs, "--weights", "0.7,0.3", "--out", out)
    assert result.exit_code == 0, result.output
    sims = []
    for run in runs:
        gallery = np.load(run / "embeddings" / "gallery.npy")
        queries = np.load(run / "embeddings" / "queries.npy")
        sims.append(queries @ gallery.T)
    blended = 0.7 * sims[0] + 0.3 * sims[1]
    gallery_ids = pd.read_csv(out / "embeddings" / "gallery_ids.csv")["id"].tolist()
    submission = pd.read_csv(out / "submission.csv", dtype=str)
    for row, matches in zip(blended, submission["matches"].str.split(), strict=True):
        # The submitted ids hold the five best blended scores, best first (ties aside).
        chosen = row[[gallery_ids.index(m) for m in matches]]
        np.testing.assert_allclose(chosen, np.sort(row)[::-1][:5], atol=1e-5)
    assert np.load(out / "embeddings" / "gallery.npy").shape == (24, 128 + 64)
    assert "recall@5" in json.loads((out / "metrics.json").read_text())["test"]
    # Runs with different tokenizers cannot share one query encoding.
    (runs[1] / "tokenizer.json").write_text('{"kind": "word", "words": ["other"]}')
    assert_one_line_error(cli("ensemble", *runs, "--out", workdir / "again"), "tokenizers differ")
