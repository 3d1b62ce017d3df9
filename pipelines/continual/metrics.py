"""Scores of a continual run from its accuracy matrix.

`matrix[i, j]` is the accuracy on task j's test examples after training
tasks 0…i (tasks not yet trained are scored too: what a model knows of a
task before it is taught).
"""

import numpy as np


def average_accuracy(matrix):
    """Mean accuracy over the tasks trained so far, after each task (its last is the final)."""
    matrix = np.asarray(matrix, dtype=float)
    return np.array([matrix[i, : i + 1].mean() for i in range(len(matrix))])


def forgetting(matrix):
    """Chaudhry et al. 2018: for each earlier task, its best accuracy before the
    last task minus its final accuracy; averaged over every task but the last."""
    matrix = np.asarray(matrix, dtype=float)
    last = len(matrix) - 1
    if last == 0:
        return 0.0
    drops = [matrix[j:last, j].max() - matrix[last, j] for j in range(last)]
    return float(np.mean(drops))


def backward_transfer(matrix):
    """Lopez-Paz & Ranzato 2017: mean over earlier tasks of the final accuracy
    minus the accuracy right after the task was learned (negative: forgetting)."""
    matrix = np.asarray(matrix, dtype=float)
    last = len(matrix) - 1
    if last == 0:
        return 0.0
    return float(np.mean([matrix[last, j] - matrix[j, j] for j in range(last)]))
