"""Live progress of a loading task, sent to its luigi task (percentage + status message) when it
has one.

Updates are throttled (at most one a second) and cheap: the stream counts rows as it passes
chunks on; a load the server runs by itself is watched by polling the server (``watching``, with
the question its dialect asks).
"""
import threading
import time
from contextlib import contextmanager


class Progress:
    """Rows so far of one partition; ``task`` is the running luigi.Task (or None in tests)."""

    def __init__(self, task, label, every=1.0):
        self.task, self.label, self.every = task, label, every
        self.expected = None
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, rows, force=False):
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        rate = rows / max(now - self.started, 1e-6)
        of = f" of {self.expected:,}" if self.expected else ""
        message = f"{self.label}: {rows:,}{of} rows, {rate:,.0f} rows/s"
        if self.task is not None:
            self.task.set_status_message(message)
            if self.expected:
                self.task.set_progress_percentage(min(99, int(100 * rows / self.expected)))

    def finish(self, message):
        if self.task is not None:
            self.task.set_status_message(message)
            self.task.set_progress_percentage(100)


@contextmanager
def watching(rows, progress, every=1.0):
    """While the block runs, feed ``progress`` from ``rows()``, the rows the server says a load
    has processed so far, or None (a COPY the server runs by itself reports nothing to the client
    until it ends). First asked after ``every`` seconds: a load that ends sooner costs no query."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def poll():
        try:
            while not stop.wait(every):
                found = rows()
                if found is not None:
                    progress.update(found, force=True)
        except Exception:  # noqa: BLE001 -- progress is best effort, never a failure
            pass
    watcher = threading.Thread(target=poll, name="so_luigi-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=5)
