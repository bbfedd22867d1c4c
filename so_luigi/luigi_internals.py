"""The only place so_luigi reaches into Luigi's private parts, each guarded so that a Luigi release
that changes them costs a nicety, never a run; ``tests/test_luigi_internals.py`` fails on such a
release, so it is noticed before users notice.

* ``a_worker_is_scheduling``: planning creates destination tables, so only a worker scheduling a
  run (``luigi ...``, ``luigi.build``) may plan, not a dry pass that walks requires()
  (``luigi-deps-tree``). Luigi says nothing of who calls requires(): the stack says whether
  luigi.worker does.
* ``scheduling_worker_scheduler``: the scheduler of that worker (its ``_scheduler``), to ask
  which resources it has (``resource_list``) and set those it lacks (``update_resource``, both
  public RPC methods of luigid).
* ``count_work_done_elsewhere``: Luigi's end-of-run summary (``luigi.execution_summary``'s
  private ``_partition_tasks`` and ``_get_run_by_other_worker``) counts a task another process
  completed as not run by this one; wrapped so it counts as done.
"""
import inspect
import logging
import sys

log = logging.getLogger("luigi-interface.so_luigi")


def a_worker_is_scheduling():
    """Whether a Luigi worker is scheduling the tasks for a run (the call comes from
    luigi.worker's Worker.add), rather than a dry pass that only walks their requirements."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "luigi.worker":
            return True
        frame = frame.f_back
    return False


def scheduling_worker_scheduler():
    """The scheduler (local, or luigid's RemoteScheduler) of the Luigi worker scheduling this
    call, or None when no worker is, or it keeps it elsewhere."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "luigi.worker":
            scheduler = getattr(frame.f_locals.get("self"), "_scheduler", None)
            if scheduler is not None:
                return scheduler
        frame = frame.f_back
    return None


def _summary_as_expected(summary):
    """Whether execution_summary still has the two private functions, taking a worker each."""
    try:
        return all(list(inspect.signature(getattr(summary, name)).parameters) == ["worker"]
                   for name in ("_partition_tasks", "_get_run_by_other_worker"))
    except (AttributeError, TypeError, ValueError):
        return False


def count_work_done_elsewhere(task_class):
    """Let a process that shared a run through luigid report success when the run succeeded.

    Luigi's end-of-run summary lists a task that another process (another host on the same
    luigid) completed as "not granted run permission" or "run by another worker" for this one,
    and the exit code becomes [retcode] not_run or already_running even though the replication
    is complete. At the summary, tasks of ``task_class`` still pending or seen running elsewhere
    are checked again: those complete now count as already done. Returns whether it could wrap.
    """
    import luigi.execution_summary as summary
    if not _summary_as_expected(summary):
        log.warning("so_luigi: this Luigi's execution summary is not as so_luigi knows it: work another "
                    "process finished may be reported as not run (the exit code then says so)")
        return False
    partition_tasks, run_by_others = summary._partition_tasks, summary._get_run_by_other_worker
    if getattr(partition_tasks, "so_luigi", False):
        return True

    def complete_now(tasks):
        done = set()
        for task in tasks:
            try:
                if isinstance(task, task_class) and task.complete():
                    done.add(task)
            except Exception:  # noqa: BLE001 -- unknown stays as Luigi had it
                pass
        return done

    def partition(worker):
        sets = partition_tasks(worker)
        for name in ("still_pending_ext", "still_pending_not_ext"):
            done = complete_now(sets.get(name, ()))
            sets[name] -= done
            sets["already_done"] |= done
        return sets

    def still_run_by_others(worker):
        tasks = run_by_others(worker)
        return tasks - complete_now(tasks)
    partition.so_luigi = True
    summary._partition_tasks = partition
    summary._get_run_by_other_worker = still_run_by_others
    return True
