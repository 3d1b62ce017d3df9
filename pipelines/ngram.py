"""A smoothed n-gram language model: the baseline a neural model has to beat.

Interpolated Kneser-Ney (Chen and Goodman, 1998, eq. 4 with one discount per
order): the highest order uses counts, lower orders use continuation counts
(how many distinct tokens precede an n-gram), each order is interpolated with
the next lower one, and the lowest with the uniform distribution over the
vocabulary, so every token has a probability. Written here because no chosen
dependency has one; NLTK's is the reference we checked it against in spirit
(probabilities over the vocabulary sum to 1, tested).
"""

import math
from collections import Counter, defaultdict

import numpy as np

DISCOUNT = 0.75


class KneserNey:
    """Interpolated Kneser-Ney over token ids, all orders up to `order` at once."""

    def __init__(self, order, vocab_size, discount=DISCOUNT):
        self.order, self.vocab_size, self.discount = order, vocab_size, discount

    def fit(self, tokens):
        tokens = [int(t) for t in tokens]
        grams = {
            k: Counter(zip(*(tokens[i:] for i in range(k)), strict=False))
            for k in range(1, self.order + 1)
        }
        self.counts = {}
        for k in range(1, self.order + 1):
            if k == self.order:
                self.counts[k] = grams[k]
            else:  # continuation counts: distinct left extensions
                self.counts[k] = Counter(g[1:] for g in grams[k + 1])
        self.totals, self.types = {}, {}
        for k, counts in self.counts.items():
            totals, types = defaultdict(int), defaultdict(int)
            for gram, count in counts.items():
                totals[gram[:-1]] += count
                types[gram[:-1]] += 1
            self.totals[k], self.types[k] = dict(totals), dict(types)
        self._followers = {}  # order → context → (tokens, counts): built when first needed
        return self

    def followers(self, k, context):
        """The tokens seen after `context` at order `k`, and their counts, as arrays."""
        if k not in self._followers:
            grouped = defaultdict(list)
            for gram, count in self.counts[k].items():
                grouped[gram[:-1]].append((gram[-1], count))
            self._followers[k] = {
                ctx: tuple(np.array(column) for column in zip(*pairs, strict=True))
                for ctx, pairs in grouped.items()
            }
        return self._followers[k].get(context)

    def distribution(self, context):
        """P(· | context) over the whole vocabulary at the highest order: `probabilities`
        for every token at once (what a sampler blends with a neural model's)."""
        p = np.full(self.vocab_size, 1.0 / self.vocab_size)
        context = [int(t) for t in context]
        for k in range(1, self.order + 1):
            ctx = tuple(context[len(context) - (k - 1) :]) if k > 1 else ()
            if len(ctx) < k - 1 or not self.totals[k].get(ctx):
                continue
            total = self.totals[k][ctx]
            tokens, counts = self.followers(k, ctx)
            p = p * (self.discount * self.types[k][ctx] / total)
            p[tokens] += np.maximum(counts - self.discount, 0.0) / total
        return p

    def next_probabilities(self, token_ids, index):
        """`distribution` for position `index` of each row of `token_ids` (B, V)."""
        start = max(0, index - self.order + 1)
        return np.stack([self.distribution(row[start:index]) for row in token_ids])

    def token_probabilities(self, tokens):
        """P(token | the tokens before it) at the highest order, for every position."""
        tokens = [int(t) for t in tokens]
        return np.array(
            [
                self.probabilities(tokens[max(0, i - self.order + 1) : i], token)[-1]
                for i, token in enumerate(tokens)
            ]
        )

    def probabilities(self, context, token):
        """P(token | context) at every order 1…order (shorter contexts are used as given)."""
        p = 1.0 / self.vocab_size
        out = []
        for k in range(1, self.order + 1):
            ctx = tuple(context[len(context) - (k - 1) :]) if k > 1 else ()
            if len(ctx) == k - 1:
                total = self.totals[k].get(ctx, 0)
                if total:
                    count = self.counts[k].get((*ctx, token), 0)
                    backoff = self.discount * self.types[k][ctx] / total
                    p = max(count - self.discount, 0.0) / total + backoff * p
            out.append(p)
        return out

    def bits_per_token(self, tokens):
        """Mean −log2 P of each token given the tokens before it, for orders 1…order."""
        tokens = [int(t) for t in tokens]
        bits = [0.0] * self.order
        for i, token in enumerate(tokens):
            context = tokens[max(0, i - self.order + 1) : i]
            for k, p in enumerate(self.probabilities(context, token)):
                bits[k] -= math.log2(p)
        return [b / max(len(tokens), 1) for b in bits]


def blend_weight(model_probs, ngram_probs, steps=100):
    """The n-gram's share λ in (1 − λ) · P_model + λ · P_ngram that minimises the
    cross-entropy over the given tokens (a grid of `steps` + 1 values of λ)."""
    weights = np.linspace(0.0, 1.0, steps + 1)[:, None]
    mixed = (1 - weights) * np.asarray(model_probs)[None] + weights * np.asarray(ngram_probs)[None]
    losses = -np.log(np.maximum(mixed, 1e-30)).mean(axis=1)
    return float(weights[int(np.argmin(losses)), 0])
