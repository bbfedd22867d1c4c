"""so_luigi: replicate a SQL Server or PostgreSQL database into PostgreSQL with Luigi.

    luigi --module so_luigi ReplicateAll --workers 8

The tasks live in ``so_luigi.tasks``; they are imported here so ``--module so_luigi`` finds them.
"""
from .luigi_config import apply_luigi_defaults

apply_luigi_defaults()      # exit codes and connection caps, from any directory (luigi_config.LUIGI_DEFAULTS)

from .tasks import CompleteTable, ExtractPartition, LoadDump, LoadPartition, ReplicateAll  # noqa: E402,F401

__all__ = ["ReplicateAll", "CompleteTable", "LoadPartition", "ExtractPartition", "LoadDump"]
