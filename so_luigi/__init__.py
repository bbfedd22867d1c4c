"""so_luigi: replicate a SQL Server or PostgreSQL database into PostgreSQL with Luigi.

    luigi --module so_luigi ReplicateAll --workers 8

The tasks live in ``so_luigi.tasks``; they are imported here so ``--module so_luigi`` finds them.
"""
import gc
import os

# numpy, which pyarrow imports, starts OpenBLAS's thread pool, whose threads spin for about 0.1 s
# of CPU before they sleep; nothing here multiplies matrices
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .luigi_config import apply_luigi_defaults  # noqa: E402

apply_luigi_defaults()      # exit codes and connection caps, from any directory (luigi_config.LUIGI_DEFAULTS)

from .tasks import CompleteTable, ExtractPartition, LoadDump, LoadPartition, ReplicateAll  # noqa: E402,F401

gc.freeze()     # the modules' objects live as long as the process: no collection walks them again

__all__ = ["ReplicateAll", "CompleteTable", "LoadPartition", "ExtractPartition", "LoadDump"]
