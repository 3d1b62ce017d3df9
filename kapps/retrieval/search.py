"""Top-k cosine search and ranking metrics, in blocks so memory stays bounded.

A gallery of 100,000 embeddings searched by 10,000 queries would need a
4 GB similarity matrix at once; here only a `query_batch × gallery_batch`
block (8 MB by default) and the running top-k exist at any time.
"""

import numpy as np

QUERY_BATCH = 256
GALLERY_BATCH = 8192
TIE = 1e-6  # cosine similarities this close are equal


def _normalise(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _blocks(queries, gallery, query_batch, gallery_batch):
    """Yield `(query_start, gallery_start, cosine block)`."""
    for q0 in range(0, len(queries), query_batch):
        q = _normalise(queries[q0 : q0 + query_batch])
        for g0 in range(0, len(gallery), gallery_batch):
            yield q0, g0, q @ _normalise(gallery[g0 : g0 + gallery_batch]).T


def top_k_search(queries, gallery, k=5, query_batch=QUERY_BATCH, gallery_batch=GALLERY_BATCH):
    """The `k` gallery items most cosine-similar to each query, best first.

    Args:
        queries: (Q, D) embeddings.
        gallery: (G, D) embeddings (any array-like that slices, e.g. a memmap).
        k: results per query (at most G).

    Returns:
        `(indices, scores)`, both (Q, k), best first.

    Example:
    >>> indices, scores = top_k_search([[1.0, 0.0]], [[0.0, 1.0], [2.0, 0.1]], k=1)
    >>> indices.tolist()
    [[1]]
    """
    count, size = len(queries), len(gallery)
    k = min(k, size)
    indices = np.zeros((count, k), np.int64)
    scores = np.full((count, k), -np.inf, np.float32)
    for q0, g0, block in _blocks(queries, gallery, query_batch, gallery_batch):
        rows = slice(q0, q0 + len(block))
        # The block's own best k (unordered), then the best k of those and the running top-k.
        width = min(k, block.shape[1])
        best = np.argpartition(-block, width - 1, axis=1)[:, :width]
        all_scores = np.concatenate([scores[rows], np.take_along_axis(block, best, 1)], axis=1)
        all_indices = np.concatenate([indices[rows], best + g0], axis=1)
        order = np.lexsort((all_indices, -all_scores), axis=1)[:, :k]
        scores[rows] = np.take_along_axis(all_scores, order, axis=1)
        indices[rows] = np.take_along_axis(all_indices, order, axis=1)
    return indices, scores


def ranks_of(queries, gallery, relevant, query_batch=QUERY_BATCH, gallery_batch=GALLERY_BATCH):
    """1-based rank of each query's best-ranked relevant gallery item.

    Args:
        relevant: for each query, the gallery indices that count as a match.

    The rank is 1 + the number of other items at least as similar as the best
    relevant one: a tie counts against the query, so a model whose embeddings
    have collapsed to one point ranks last, not first.
    """
    queries_n = _normalise(queries)
    scores = [_normalise(gallery[list(r)]) @ q for q, r in zip(queries_n, relevant, strict=True)]
    best = np.array([s.max() for s in scores], np.float32) - TIE
    # The relevant items at the best score or above it are not counted against the query.
    ahead = -np.array([(s >= b).sum() for s, b in zip(scores, best, strict=True)], np.int64)
    for q0, _, block in _blocks(queries, gallery, query_batch, gallery_batch):
        ahead[q0 : q0 + len(block)] += (block >= best[q0 : q0 + len(block), None]).sum(1)
    return ahead + 1


def recall_at_k(ranks, k):
    """Fraction of queries whose first match is within the top `k`."""
    return float(np.mean(np.asarray(ranks) <= k))


def mean_average_precision_at_k(top_indices, relevant, k):
    """mAP@k: average precision over the first `k` results, per query, averaged.

    A query's AP@k divides by min(k, number of relevant items), and an item
    listed twice counts at its first place only, as Kaggle's `apk` does.
    """
    total = 0.0
    for found, wanted in zip(top_indices, relevant, strict=True):
        found, wanted = list(found)[:k], set(wanted)
        hits, precision, seen = 0, 0.0, set()
        for position, item in enumerate(found, start=1):
            if item in wanted and item not in seen:
                hits += 1
                precision += hits / position
            seen.add(item)
        total += precision / max(1, min(k, len(wanted)))
    return total / max(1, len(relevant))
