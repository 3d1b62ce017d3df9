"""The replay memory: a fixed number of examples kept by reservoir sampling.

Reservoir sampling (Vitter's algorithm R) keeps each example of the stream
seen so far with the same probability, capacity / seen, without knowing the
stream's length: the n-th example replaces a random slot with probability
capacity / n. What is kept with an example (its image, label, task, and for
DER the logits the model gave it when it was seen) is stored as it was then.
"""

import numpy as np


class ReservoirBuffer:
    """`capacity` examples, each a dict of arrays with one row per example."""

    def __init__(self, capacity, seed=0):
        self.capacity = int(capacity)
        self.seen = 0
        self.rng = np.random.default_rng(seed)
        self.data = {}

    def __len__(self):
        return min(self.seen, self.capacity)

    def add(self, **columns):
        """Offer a batch of examples (keyword arrays of equal length) to the reservoir."""
        count = len(next(iter(columns.values())))
        if not self.data:
            self.data = {
                name: np.zeros((self.capacity, *np.shape(v)[1:]), dtype=np.asarray(v).dtype)
                for name, v in columns.items()
            }
        for i in range(count):
            full = self.seen >= self.capacity
            slot = int(self.rng.integers(0, self.seen + 1)) if full else self.seen
            self.seen += 1
            if slot < self.capacity:
                for name, value in columns.items():
                    self.data[name][slot] = value[i]

    def sample(self, size, rng=None):
        """`size` examples drawn without replacement (all of them if fewer are kept)."""
        rng = rng or self.rng
        rows = rng.choice(len(self), size=min(size, len(self)), replace=False)
        return {name: values[rows] for name, values in self.data.items()}
