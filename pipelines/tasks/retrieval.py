"""Image–text retrieval: a dual encoder trained on captions; text queries → ranked images.

Validation embeds every validation image and caption and ranks both ways
(text→image: a caption's own image among all validation images;
image→text: any of an image's captions among all validation captions), plus
zero-shot classification of labelled images from class-name prompts. The
test is a search: `data.test` holds query captions, `data.gallery` the images
searched, and the submission lists each query's `submission.top_k` best
gallery ids.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kapps.errors import ConfigError
from kapps.retrieval.search import (
    mean_average_precision_at_k,
    ranks_of,
    recall_at_k,
    top_k_search,
)
from pipelines.data import decoded_images
from pipelines.data.augment import build_augmenter
from pipelines.data.captions import (
    caption_tokens,
    image_batches,
    pairs,
    read_caption_table,
    split_images,
    token_space,
)
from pipelines.data.sources import ImageSource, read_csv, require_columns, submission_id_column
from pipelines.data.text import (
    SENTENCEPIECE_FILE,
    TOKENIZER_FILE,
    fit_tokenizer,
    load_tokenizer,
    saved_tokenizer,
)
from pipelines.errors import DataError
from pipelines.plots import plot_retrieval_grid
from pipelines.submit import matches_frame, write_embeddings
from pipelines.tasks.base import Evaluation, Task, TestSet, TrainingData

RECALL_AT = (1, 5, 10)
MAP_AT = 10
GRID_QUERIES = 8


def ranking_scores(queries, gallery, relevant):
    """Recall@1/5/10, median rank and mAP@10 of queries against a gallery."""
    ranks = ranks_of(queries, gallery, relevant)
    top, _ = top_k_search(queries, gallery, MAP_AT)
    scores = {f"recall@{k}": recall_at_k(ranks, k) for k in RECALL_AT}
    scores["median_rank"] = float(np.median(ranks))
    scores[f"map@{MAP_AT}"] = mean_average_precision_at_k(top, relevant, MAP_AT)
    return scores


@dataclass
class Validation:
    """The validation split as `evaluate` sees it: images, their captions, the table."""

    images: Any  # ImageSet of the validation images
    captions: list  # per validation image, the indices of its captions in the table
    caption_tokens: np.ndarray  # every caption of the table, tokenized
    image_rows: np.ndarray  # each validation image's row in the table
    table: Any  # the caption table (labels for zero-shot, caption texts)
    tokenizer: Any


@dataclass
class Gallery:
    """What the test search needs besides the query tokens and gallery images."""

    ids: np.ndarray  # the gallery's image ids, by row
    tokenizer: Any
    embeddings: Path  # where the searched embeddings are exported


class RetrievalTask(Task):
    name = "retrieval"
    supports = frozenset({"blend_models"})  # `kapps ensemble` averages the runs' similarities

    # Data ------------------------------------------------------------------
    def _decode(self, source, cache_path, row_of):
        """Decode a split's images once; an unreadable image is an error naming its row."""
        data = self.cfg.data
        images = decoded_images(
            source, data.image_size, data.channels, cache=data.cache, cache_path=cache_path
        )
        if images.skipped:
            bad = source.paths.index(images.skipped[0])
            raise DataError(f"{row_of(bad)}: image {source.ids[bad]!r} cannot be decoded")
        return images

    def tokens(self, tokenizer, texts):
        return caption_tokens(tokenizer, texts, self.cfg.data.seq_len)

    def training_data(self, run):
        cfg, data = self.cfg, self.cfg.data
        table = read_caption_table(cfg)
        train_idx, val_idx = split_images(len(table.images), data.val_fraction, cfg.train.seed)
        per_image = table.captions_of(range(len(table.images)))
        train_text = "\n".join(table.captions[c] for i in train_idx for c in per_image[i])
        tokenizer = load_tokenizer(run.path) or fit_tokenizer(
            train_text, data.tokenizer, data.vocab_size, run.path
        )
        all_tokens = self.tokens(tokenizer, table.captions)

        def row_of(indices):
            return lambda i: f"{table.where}: {table.row_name(indices[i])}"

        train_set = self._decode(table.source(train_idx), run.cache("train"), row_of(train_idx))
        val_set = self._decode(table.source(val_idx), run.cache("val"), row_of(val_idx))
        val_captions = [per_image[i] for i in val_idx]
        bs, seed = cfg.train.batch_size, cfg.train.seed
        vocabulary = token_space(tokenizer)[0]
        note = (
            f"captions: {len(table.captions):,} for {len(table.images):,} images, split by "
            f"image: {len(train_idx):,} train / {len(val_idx):,} validation; "
            f"{data.tokenizer} tokenizer, vocabulary {vocabulary:,}"
        )
        return TrainingData(
            train=pairs(
                train_set,
                all_tokens,
                [per_image[i] for i in train_idx],
                batch_size=bs,
                shuffle=True,
                augment=build_augmenter(cfg.augment, seed),
                seed=seed,
            ),
            val=pairs(val_set, all_tokens, val_captions, batch_size=bs),
            train_size=len(train_idx),
            val_size=len(val_idx),
            model_args={
                "image_shape": (*data.image_size, data.channels),
                "vocab_size": vocabulary,
                "max_length": data.seq_len,
            },
            validation=Validation(val_set, val_captions, all_tokens, val_idx, table, tokenizer),
            notes=[note],
        )

    def test_data(self, run):
        """`(gallery batches, query tokens)` and the query ids; the gallery ids as context."""
        cfg, data = self.cfg, self.cfg.data
        tokenizer = saved_tokenizer(run.path)
        path = cfg.data_path(data.test)
        queries = read_csv(path, "test queries", ids_as_text=True)
        id_column = submission_id_column(cfg)
        require_columns(queries, [id_column, data.caption_column], path)
        texts = queries[data.caption_column]
        empty = texts.isna() | (texts.astype(str).str.strip() == "")
        if empty.any():
            raise DataError(f"{path}: row {int(np.argmax(empty)) + 2}: empty query caption")
        if not data.gallery:
            raise ConfigError("data.gallery (the CSV of test images searched) is not set")
        gallery_path = cfg.data_path(data.gallery)
        gallery = read_csv(gallery_path, "gallery", ids_as_text=True)
        column = data.image_column if data.image_column in gallery else gallery.columns[0]
        gallery_ids = gallery[column].astype(str).to_numpy()
        paths = [str(cfg.data_dir / data.test_images.format(id=i)) for i in gallery_ids]
        for row, file in enumerate(paths):
            if not Path(file).is_file():
                raise DataError(f"{gallery_path}: row {row + 2}: image not found: {file}")
        source = ImageSource(ids=gallery_ids, paths=paths)
        images = self._decode(
            source, run.cache("gallery"), lambda i: f"{gallery_path}: row {i + 2}"
        )
        tokens = self.tokens(tokenizer, texts.astype(str).tolist())
        return TestSet(
            (image_batches(images, cfg.train.batch_size), tokens),
            queries[id_column].to_numpy(),
            context=Gallery(gallery_ids, tokenizer, run.embeddings),
        )

    # Model -----------------------------------------------------------------
    def compile_args(self):
        if self.cfg.train.loss is not None:
            raise ConfigError(
                f"train.loss {self.cfg.train.loss!r}: a dual encoder trains with its own "
                "contrastive loss; remove train.loss"
            )
        return {}  # the model's compute_loss: symmetric InfoNCE over the batch

    # After training ----------------------------------------------------------
    def evaluate(self, model, data, run):
        val, bs = data.validation, self.cfg.train.batch_size
        images = model.encode_images(image_batches(val.images, bs))
        flat = np.concatenate(val.captions)
        owner = np.repeat(np.arange(len(val.captions)), [len(c) for c in val.captions])
        texts = model.encode_texts(val.caption_tokens[flat])
        starts = np.cumsum([0] + [len(c) for c in val.captions])
        own_texts = [np.arange(starts[i], starts[i + 1]) for i in range(len(val.captions))]
        metrics = {}
        for name, value in ranking_scores(texts, images, [[o] for o in owner]).items():
            metrics[f"text_to_image_{name}"] = value
        for name, value in ranking_scores(images, texts, own_texts).items():
            metrics[f"image_to_text_{name}"] = value
        metrics.update(self._zero_shot(model, val, images))
        metrics["logit_scale"] = model.logit_scale()
        self._plot_queries(val, texts, images, flat, owner, run.plot("retrieval"))
        return Evaluation(metrics)

    def _zero_shot(self, model, val, images):
        """Accuracy of naming a labelled validation image's class from prompts alone."""
        labels = val.table.labels
        if labels is None:
            return {}
        val_labels = [labels[i] for i in val.image_rows]
        known = [i for i, label in enumerate(val_labels) if label is not None]
        classes = self.cfg.data.classes or sorted({x for x in labels if x is not None})
        classes = [str(c) for c in classes]
        if not known or len(classes) < 2:
            return {}
        template = self.cfg.data.prompt_template
        prompts = model.encode_texts(
            self.tokens(val.tokenizer, [template.format(c) for c in classes])
        )
        guess = np.argmax(images[known] @ prompts.T, axis=1)
        truth = [classes.index(val_labels[i]) if val_labels[i] in classes else -1 for i in known]
        return {
            "zero_shot_accuracy": float(np.mean(guess == np.asarray(truth))),
            "zero_shot_images": len(known),
        }

    def _plot_queries(self, val, texts, images, flat, owner, path):
        """Validation captions with their five best validation images."""
        picks = np.linspace(0, len(flat) - 1, min(GRID_QUERIES, len(flat))).astype(int)
        top, _ = top_k_search(texts[picks], images, 5)
        pictures = np.stack([x.numpy() for x, _ in val.images.dataset])
        plot_retrieval_grid(
            [val.table.captions[flat[p]] for p in picks],
            [pictures[row] for row in top],
            [(row == owner[p]).tolist() for row, p in zip(top, picks, strict=True)],
            path,
            "Validation captions → top-5 images (green: the captioned image)",
        )

    def predict_folds(self, models, test, weights=None):
        """Top-k gallery rows by the weighted mean of the models' cosine similarities.

        Each model's unit embeddings, scaled by √weight and placed side by side,
        form one unit embedding whose cosine is that weighted mean, so the
        blended gallery is searched (and exported) like a single model's.
        """
        weights = weights or [1 / len(models)] * len(models)
        gallery_batches, query_tokens = test.inputs
        members = list(zip(models, weights, strict=True))
        gallery = np.concatenate(
            [np.sqrt(w) * m.encode_images(gallery_batches) for m, w in members], 1
        )
        queries = np.concatenate([np.sqrt(w) * m.encode_texts(query_tokens) for m, w in members], 1)
        folder = test.context.embeddings
        write_embeddings(folder, "gallery", test.context.ids, gallery)
        write_embeddings(folder, "queries", np.arange(len(queries)), queries)
        top, _ = top_k_search(queries, gallery, self.cfg.submission.top_k)
        return top

    def prepare_blend(self, run_dirs, out):
        """An ensemble searches with one tokenizer: the runs' must be the same."""
        files = [
            name for name in (TOKENIZER_FILE, SENTENCEPIECE_FILE) if (run_dirs[0] / name).is_file()
        ]
        for name in files:
            if len({(Path(r) / name).read_bytes() for r in run_dirs}) > 1:
                raise ConfigError(
                    "the runs' tokenizers differ (other training captions or tokenizer "
                    "settings): their text embeddings cannot be blended"
                )
            shutil.copy(run_dirs[0] / name, Path(out) / name)

    def submission_frame(self, test, predictions, sample):
        matches = [[test.context.ids[j] for j in row] for row in predictions]
        return matches_frame(test.ids, matches, sample)

    def score(self, frame, answers, test):
        """Recall@1, recall@k and mAP@k of the submitted matches against the answer key."""
        k = self.cfg.submission.top_k
        id_col, target = answers.columns[:2]
        truth = dict(zip(answers[id_col].astype(str), answers[target].astype(str), strict=True))
        predicted = frame.set_index(frame.columns[0])[frame.columns[1]]
        found = [str(predicted[i]).split() for i in truth if i in predicted.index]
        wanted = [truth[i].split() for i in truth if i in predicted.index]
        if not found:
            raise DataError("the answer key and the submission share no ids")
        ranks = [
            next((n for n, item in enumerate(row, 1) if item in set(w)), k + 1)
            for row, w in zip(found, wanted, strict=True)
        ]
        names = {item for row in found + wanted for item in row}
        index = {name: i for i, name in enumerate(sorted(names))}
        top = [[index[x] for x in row] for row in found]
        return {
            "recall@1": recall_at_k(ranks, 1),
            f"recall@{k}": recall_at_k(ranks, k),
            f"map@{k}": mean_average_precision_at_k(
                top, [[index[x] for x in w] for w in wanted], k
            ),
        }


__all__ = ["RetrievalTask", "ranking_scores"]
