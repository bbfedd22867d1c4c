"""The one module that reaches into Luigi's private parts (so_luigi/luigi_internals.py): this
fails when a Luigi release changes what it relies on (the execution summary's task partitioning,
scheduling from luigi.worker). setup.py asks for no newer bound than these tests need: a release
that breaks them fails here first, and so_luigi itself only warns there (see the module)."""
import subprocess
import sys

PROBE = """
import inspect
import luigi
import luigi.execution_summary as summary
import luigi.worker

assert list(inspect.signature(summary._partition_tasks).parameters) == ["worker"]
assert list(inspect.signature(summary._get_run_by_other_worker).parameters) == ["worker"]
with luigi.worker.Worker() as worker:
    sets = summary._partition_tasks(worker)
    others = summary._get_run_by_other_worker(worker)
assert {"still_pending_ext", "still_pending_not_ext", "already_done"} <= set(sets), sorted(sets)
assert all(isinstance(sets[k], set) for k in ("still_pending_ext", "still_pending_not_ext", "already_done"))
assert isinstance(others, set)
print("ok", luigi.__version__)
"""


def test_the_luigi_internals_so_luigi_wraps_are_as_it_expects():
    # in a fresh interpreter that has not imported so_luigi, which wraps them at import
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr[-2000:]


def test_importing_so_luigi_wraps_them():
    probe = ("import luigi.execution_summary as s; before = s._partition_tasks; import so_luigi; "
             "assert s._partition_tasks is not before and s._get_run_by_other_worker.__module__ == 'so_luigi.luigi_internals'")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_run_schedules_from_luigi_worker(tmp_path):
    """Only a worker's scheduling plans (luigi_internals.a_worker_is_scheduling looks for
    luigi.worker on the stack); a dry pass walking requires() from elsewhere does not."""
    probe = f"""
import luigi, so_luigi.luigi_internals as t
seen = []
class Probe(luigi.Task):
    def requires(self):
        seen.append(t.a_worker_is_scheduling())
        return []
    def output(self):
        return luigi.LocalTarget({str(tmp_path / 'done')!r})
    def run(self):
        self.output().open('w').close()
Probe().requires()
assert luigi.build([Probe()], local_scheduler=True, log_level='WARNING')
assert seen[0] is False and seen[1:] and all(seen[1:]), seen
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stderr[-2000:]
