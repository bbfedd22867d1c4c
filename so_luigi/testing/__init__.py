"""What tests, the demo and the benchmarks use, kept out of the copy's way:

* ``sample``:   deterministic StackOverflow-shaped data, written into either kind of database;
* ``embedded``: a throw-away PostgreSQL server (Debian's binaries, or pgserver from PyPI);
* ``faults``:   named pause points (``SO_LUIGI_PAUSE_AT``) where the fault tests kill a run; the
                steps call ``faults.pause``, which does nothing unless that variable is set.
"""
