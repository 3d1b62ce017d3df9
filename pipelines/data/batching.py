"""How every training set is cut into batches, and so how many steps an epoch has.

Training batches drop the last partial batch (each epoch reshuffles, so no
example is left out for good): one static batch shape means the train step is
traced, and under XLA compiled, once rather than twice — a second YOLO compile
costs over a minute on 2 CPU cores. A set smaller than one batch is kept whole.
"""


def drop_remainder(count, batch_size, training):
    """Whether a set of `count` examples drops its last partial batch."""
    return bool(training) and count >= batch_size


def steps_per_epoch(count, batch_size):
    """Train steps in one epoch over `count` examples, as `drop_remainder` cuts them."""
    return count // batch_size if count >= batch_size else 1
