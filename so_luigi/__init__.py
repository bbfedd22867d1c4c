"""so_luigi: replicate a SQL Server or PostgreSQL database into PostgreSQL with Luigi.

    luigi --module so_luigi ReplicateAll --workers 8

The tasks live in ``so_luigi.tasks``; they are imported here so ``--module so_luigi`` finds them.
"""
from .tasks import CompleteTable, ExtractPartition, LoadDump, LoadPartition, ReplicateAll  # noqa: F401

__all__ = ["ReplicateAll", "CompleteTable", "LoadPartition", "ExtractPartition", "LoadDump"]
