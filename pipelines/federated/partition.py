"""Deal a competition's training rows out to clients: at random, or non-IID by class.

`dirichlet` is the partition of Hsu et al. (2019), "Measuring the effects of
non-identical data distribution": for every class, the shares of its rows that
go to each client are drawn from Dirichlet(α, …, α); small α gives each client
a few classes, large α approaches IID. Written here (a few lines of NumPy)
rather than taken from Flower Datasets, which partitions Hugging Face
datasets, not a competition's CSV rows.
"""

import numpy as np

from kapps.errors import ConfigError

REDRAWS = 100  # dirichlet: draws tried before giving up on a client that gets no row


def partition(labels, clients, scheme="iid", alpha=0.5, seed=0):
    """The client (0 … clients − 1) of each row, from the rows' class `labels`.

    Every row goes to exactly one client, and every client gets at least one row.
    """
    labels = np.asarray(labels)
    if clients > len(labels):
        raise ConfigError(
            f"federated.clients {clients} is more than the {len(labels)} training rows"
        )
    rng = np.random.default_rng(seed)
    owner = np.empty(len(labels), dtype=np.int64)
    if scheme == "iid":
        for client, rows in enumerate(np.array_split(rng.permutation(len(labels)), clients)):
            owner[rows] = client
        return owner
    for _ in range(REDRAWS):
        for cls in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == cls))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(rows)).round().astype(int)
            for client, part in enumerate(np.split(rows, cuts)):
                owner[part] = client
        if len(np.unique(owner)) == clients:
            return owner
    raise ConfigError(
        f"federated.alpha {alpha} leaves a client without rows in {REDRAWS} draws: "
        "raise federated.alpha or lower federated.clients"
    )


def class_counts(owner, labels, clients, num_classes):
    """(clients × classes) number of rows of each class each client holds."""
    counts = np.zeros((clients, num_classes), dtype=np.int64)
    np.add.at(counts, (owner, np.asarray(labels)), 1)
    return counts
