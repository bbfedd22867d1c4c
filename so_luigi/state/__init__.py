"""The only place that reads or writes so_luigi's marker tables: ``markers`` (every statement)
and ``schema`` (their one definition, versioned, with numbered migrations). The luigi Targets
over them are ``so_luigi.targets``."""
