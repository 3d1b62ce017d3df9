"""Generators of the shapes competitions' data (drawn, not read): `shapes` draws
ellipses, polygons and blobs over crops of scikit-learn's sample photographs
(shapes-seg, shapes-det); `captioned_shapes` draws coloured shapes with their
captions (shapes-captions); `digits` lays out scikit-learn's digits (digits,
seq-digits). The competitions' `prepare.py` call them."""
