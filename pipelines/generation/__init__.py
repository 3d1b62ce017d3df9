"""The generation family's engine parts: feature extractors, scores and pictures.

The `Task` is `pipelines.tasks.generation`; the models and metric formulas are
`kapps.generation`.
"""
