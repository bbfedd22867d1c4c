"""What tests, the demo and the benchmarks use, kept out of the copy's way:

* ``sample``:   deterministic StackOverflow-shaped data, written into either kind of database;
* ``embedded``: a throw-away PostgreSQL server (Debian's binaries, or pgserver from PyPI).

The pause points where the fault tests kill a run are ``so_luigi.faults``.
"""
