"""Image–text retrieval: the CLIP dual encoder and batched top-k search."""

from kapps.retrieval import clip  # noqa: F401  (registers the builders)
from kapps.retrieval.search import mean_average_precision_at_k, ranks_of, recall_at_k, top_k_search

__all__ = ["mean_average_precision_at_k", "ranks_of", "recall_at_k", "top_k_search"]
