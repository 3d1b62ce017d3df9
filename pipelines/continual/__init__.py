"""Continual learning over any classification competition: scenarios, replay, metrics.

`scenarios` says which examples each task holds and how it sees them,
`buffer` keeps the replay memory (reservoir sampling), `replay` builds each
training step's batch of current and replayed examples with the targets the
methods' loss reads, and `metrics` scores the accuracy matrix.
"""
