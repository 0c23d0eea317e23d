"""Task families: synthetic generators and real tables shipped with skmeta."""

from ._adult import load_adult, load_adult_tasks
from ._blobs import make_blob_tasks
from ._sinusoid import make_sinusoid_tasks, sinusoid

__all__ = [
    "load_adult",
    "load_adult_tasks",
    "make_blob_tasks",
    "make_sinusoid_tasks",
    "sinusoid",
]
