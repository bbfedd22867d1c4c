"""Named pause points of the steps, for the fault tests: with SO_LUIGI_PAUSE_AT=<point> a process stops there
(saying so on stderr) so a test can kill it at exactly that moment. Unset, nothing happens."""
import os
import sys
import time

POINTS = ("plan-commit", "load-commit", "index-build", "complete-commit", "extract-write", "foreign-key",
          "sync-commit")


def pause(point):
    if os.environ.get("SO_LUIGI_PAUSE_AT") == point:
        print(f"so_luigi: paused at {point}", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("SO_LUIGI_PAUSE_SECONDS", "3600")))
