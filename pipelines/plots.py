"""Plots a run leaves behind.

Figures are `matplotlib.figure.Figure` objects written straight to PNG, never
pyplot's: no screen is needed, and a notebook that imports kapps keeps its
own backend (pyplot's inline figures).
"""

import textwrap

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from pipelines.runs import atomic_write


def _subplots(*args, figsize=None, layout=None, **kwargs):
    """`(figure, axes)` as `pyplot.subplots` gives, on a figure pyplot does not hold."""
    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*args, **kwargs)


def _save(fig, path):
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))


def plot_curves(history_csv, path):
    """Loss and every other metric per epoch, training next to validation."""
    history = pd.read_csv(history_csv)
    metrics = [c for c in history.columns if c not in ("epoch", "learning_rate")]
    # each metric once: a validation-only one (generation's val_fid) gets its own panel
    names = [m for m in metrics if not m.startswith("val_") or m[4:] not in metrics]
    fig, axes = _subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False)
    epochs = history["epoch"] + 1
    for ax, name in zip(axes[0], names, strict=True):
        own = "validation" if name.startswith("val_") else "train"
        values = history[name]
        ax.plot(epochs[values.notna()], values.dropna(), label=own, marker=".")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label="validation", marker=".")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)


def plot_confusion_matrix(matrix, class_names, path, title="Confusion matrix (validation)"):
    """Row-normalised confusion matrix with counts written in each cell."""
    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.5 * len(class_names) + 2)
    fig, ax = _subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, [str(c) for c in class_names], rotation=45 if len(ticks) > 10 else 0)
    ax.set_yticks(ticks, [str(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(class_names) <= 30:
        for (row, col), count in np.ndenumerate(matrix):
            colour = "white" if rates[row, col] > 0.5 else "black"
            ax.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    _save(fig, path)


def plot_image_grid(images, captions, path, title, columns=8):
    """A grid of uint8 images with a caption under each (e.g. misclassified ones)."""
    count = len(images)
    if count == 0:
        fig, ax = _subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center")
        ax.axis("off")
        ax.set_title(title)
        _save(fig, path)
        return
    columns = min(columns, count)
    rows = int(np.ceil(count / columns))
    fig, axes = _subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions, strict=False):
        image = np.asarray(image)
        gray = image.shape[-1] == 1
        ax.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None)
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def plot_cam_grid(images, heatmaps, captions, path, title, columns=8):
    """Images with their class-activation heat maps laid over them (jet, 40 %)."""
    count = len(images)
    columns = min(columns, count)
    rows = int(np.ceil(count / columns))
    fig, axes = _subplots(rows, columns, figsize=(1.8 * columns, 2.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, heat, caption in zip(axes.flat, images, heatmaps, captions, strict=False):
        image = np.asarray(image).astype("uint8")
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
        ax.imshow(heat, cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def _mask_colours(num_classes):
    """Transparent background, one tab10 colour per foreground class."""
    colours = np.zeros((num_classes, 4))
    colours[1:] = matplotlib.colormaps.get_cmap("tab10")(np.arange(num_classes - 1) % 10)
    colours[1:, 3] = 0.55
    return colours


def plot_mask_overlays(images, truths, predictions, captions, class_names, path, title):
    """Rows of image | ground truth over the image | prediction over the image."""
    colours = _mask_colours(len(class_names))
    count = len(images)
    fig, axes = _subplots(
        count, 3, figsize=(6.3, 2.1 * count + 0.8), squeeze=False, layout="constrained"
    )
    for row, (image, truth, pred, caption) in enumerate(
        zip(images, truths, predictions, captions, strict=True)
    ):
        image = np.asarray(image).astype("uint8")
        shown = image[..., 0] if image.shape[-1] == 1 else image
        for col, mask in enumerate((None, truth, pred)):
            ax = axes[row, col]
            ax.imshow(shown, cmap="gray")
            if mask is not None:
                ax.imshow(colours[np.asarray(mask)], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(caption, fontsize=8)
    for ax, heading in zip(axes[0], ("image", "ground truth", "prediction"), strict=True):
        ax.set_title(heading, fontsize=9)
    handles = [Patch(color=colours[k], label=str(name)) for k, name in enumerate(class_names) if k]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(5, len(handles)), fontsize=8)
    fig.suptitle(title)
    _save(fig, path)


def plot_bars(values, path, title, ylabel):
    """A labelled bar per key of `values` (e.g. Dice per class), value on top."""
    names = [str(k) for k in values]
    fig, ax = _subplots(figsize=(max(4.0, 0.8 * len(names) + 1.5), 3.4))
    bars = ax.bar(names, list(values.values()), color="tab:blue")
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def plot_retrieval_grid(queries, results, hits, path, title):
    """One row per text query: the caption, then its top results (green frame: a match).

    Args:
        queries: caption strings.
        results: per query, a list of uint8 images, best first.
        hits: per query, a list of booleans (is that result a match).
    """
    rows, columns = len(queries), max((len(r) for r in results), default=1)
    fig, axes = _subplots(
        rows, columns, figsize=(1.5 * columns + 2.6, 1.55 * rows + 0.6), squeeze=False
    )
    for row, (caption, images, matched) in enumerate(zip(queries, results, hits, strict=True)):
        for column, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if column >= len(images):
                ax.axis("off")
                continue
            ax.imshow(np.asarray(images[column]))
            colour = "tab:green" if matched[column] else "tab:red"
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3 if matched[column] else 1)
        wrapped = "\n".join(textwrap.wrap(caption, 28)[:4])
        axes[row][0].set_ylabel(wrapped, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title)
    _save(fig, path)


def _draw_boxes(ax, boxes, labels, scores, class_names):
    colours = matplotlib.colormaps.get_cmap("tab10")
    for index, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        x1, y1, x2, y2 = box
        colour = colours(int(label) % 10)
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=1.2)
        )
        text = str(class_names[int(label)])
        if scores is not None:
            text += f" {scores[index]:.2f}"
        ax.text(
            x1,
            y1,
            text,
            color="white",
            fontsize=5,
            va="bottom",
            bbox={"facecolor": colour, "pad": 0.5, "linewidth": 0},
        )


def plot_detections(images, truths, predictions, captions, class_names, path, title):
    """Pairs of panels per image: ground truth boxes | predicted boxes with scores.

    Args:
        truths: per image `(boxes xyxy, labels)`.
        predictions: per image `(boxes xyxy, labels, scores)`.
    """
    count = len(images)
    columns = min(4, count) * 2
    rows = -(-count // (columns // 2))
    fig, axes = _subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows + 0.5), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    for index, (image, truth, found, caption) in enumerate(
        zip(images, truths, predictions, captions, strict=True)
    ):
        row, col = divmod(index, columns // 2)
        shown = np.asarray(image).astype("uint8")
        shown = shown[..., 0] if shown.shape[-1] == 1 else shown
        for offset, (boxes, labels, scores) in enumerate(((*truth, None), found)):
            ax = axes[row, 2 * col + offset]
            ax.axis("on")
            ax.imshow(shown, cmap="gray")
            _draw_boxes(ax, boxes, labels, scores, class_names)
            ax.set_title("truth" if offset == 0 else caption, fontsize=7)
    fig.suptitle(title)
    _save(fig, path)


def plot_precision_recall(recall, precision, class_names, path, title):
    """One precision–recall curve per class (classes without ground truth are left out)."""
    fig, ax = _subplots(figsize=(4.8, 3.8))
    for name, curve in zip(class_names, precision, strict=True):
        if (curve >= 0).any():
            ap = float(np.mean(np.maximum(curve, 0)))
            ax.plot(recall, np.maximum(curve, 0), label=f"{name} (AP {ap:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    _save(fig, path)


def plot_accuracy_matrix(matrix, path, title):
    """Accuracy on task j (columns) after training task i (rows), each cell written."""
    matrix = np.asarray(matrix)
    tasks = len(matrix)
    fig, ax = _subplots(figsize=(max(4.0, 0.7 * tasks + 2),) * 2)
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(tasks)
    ax.set_xticks(ticks, [str(t + 1) for t in ticks])
    ax.set_yticks(ticks, [str(t + 1) for t in ticks])
    ax.set_xlabel("accuracy on task")
    ax.set_ylabel("after training task")
    ax.set_title(title)
    for (row, col), value in np.ndenumerate(matrix):
        colour = "white" if value > 0.5 else "black"
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8)
    _save(fig, path)


def plot_task_curve(values, path, title, ylabel):
    """One value after each task (e.g. average accuracy over the tasks seen so far)."""
    fig, ax = _subplots(figsize=(6, 4))
    tasks = np.arange(1, len(values) + 1)
    ax.plot(tasks, values, marker="o")
    ax.set_xticks(tasks)
    ax.set_ylim(0, 1)
    ax.set_xlabel("after training task")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_partition(counts, class_names, path, title):
    """Examples of each class held by each client (clients × classes counts), stacked."""
    counts = np.asarray(counts)
    fig, ax = _subplots(figsize=(max(5.0, 0.45 * len(counts) + 2), 4))
    clients = np.arange(len(counts))
    bottom = np.zeros(len(counts))
    colours = matplotlib.colormaps.get_cmap("tab20" if counts.shape[1] > 10 else "tab10")
    for c, name in enumerate(class_names):
        ax.bar(clients, counts[:, c], bottom=bottom, color=colours(c % 20), label=str(name))
        bottom += counts[:, c]
    ax.set_xticks(clients, [str(k) for k in clients])
    ax.set_xlabel("client")
    ax.set_ylabel("training examples")
    ax.set_title(title)
    ax.legend(title="class", fontsize=7, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    _save(fig, path)


def plot_rounds(history, reference, path, metric, title):
    """The global model's validation `metric` after each round, next to a centralised run's
    after the same number of epochs (`reference`: epoch → value, or None)."""
    fig, ax = _subplots(figsize=(6, 4))
    epochs = history["round"] * history["local_epochs"]
    ax.plot(epochs, history[f"val_{metric}"], marker="o", label="federated (after each round)")
    if reference is not None:
        ax.plot(reference.index, reference.values, marker=".", label="centralised")
    ax.set_xlabel("epochs over the data (rounds × local epochs)")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_label_fractions(frame, path, title):
    """Test score against the share of labels, one line per method (mean ± std of seeds)."""
    fig, ax = _subplots(figsize=(6, 4))
    for method, rows in frame.groupby("method"):
        stats = rows.groupby("fraction")["score"].agg(["mean", "std"]).fillna(0.0)
        ax.errorbar(
            stats.index * 100,
            stats["mean"],
            yerr=stats["std"],
            marker="o",
            capsize=3,
            label=method.replace("_", " "),
        )
    ax.set_xscale("log")
    fractions = sorted(frame["fraction"].unique())
    ax.set_xticks([f * 100 for f in fractions], [f"{f * 100:g} %" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("labelled training images")
    ax.set_ylabel(f"test {frame['metric'].iloc[0]}")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)
