"""Task declarations, one module per family; importing this package registers them all."""

from bench.tasks import blobs, genetic  # noqa: F401
