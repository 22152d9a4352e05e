"""Hyperparameter sweeps of audio classifiers on ESC-50, built on fastai and Weights & Biases."""

__version__ = "0.1.0"
