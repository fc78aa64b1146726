"""Shared test setup: quiet TensorFlow, and deterministic small thread pools on 2-core CI."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
