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
        return self

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


def ngram_baseline(train_tokens, val_tokens, vocab_size, orders=(5,)):
    """The best Kneser-Ney model of the given orders: `(order, bits per token)`.

    The default is the language-modelling literature's standard baseline, the
    5-gram ("KN5"). With several orders, each is fitted on its own (the highest
    order of a model counts differently from the lower ones) and the best on
    the validation split is returned, which favours the baseline.
    """
    bits = {
        order: KneserNey(order, vocab_size).fit(train_tokens).bits_per_token(val_tokens)[-1]
        for order in orders
    }
    best = min(bits, key=bits.get)
    return best, bits[best]
