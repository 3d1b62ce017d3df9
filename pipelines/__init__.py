"""The competition engine: config, tf.data loaders, tasks, train, predict, submit, CLI."""

import os

# TensorFlow's C++ start-up chatter hides the run's own output; users who want
# it back set TF_CPP_MIN_LOG_LEVEL themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
