"""Task declarations, one module per family; importing this package registers them all."""

from bench.tasks import blobs, genetic, medmnist_pair, offline  # noqa: F401
