"""The few exceptions so_luigi raises, and the one place driver errors become them.

Every error a user can cause is a ``SoLuigiError`` whose message is one line naming the thing to
fix. ``TransientError`` marks what a retry may cure (a dropped connection); everything else is
terminal. Tasks log these without a traceback unless ``SO_LUIGI_DEBUG=1``.
"""


class SoLuigiError(Exception):
    """A terminal error with a one-line message meant for the user."""

    transient = False


class ConfigError(SoLuigiError):
    """Bad configuration: URL, parameter, override file."""


class ConnectError(SoLuigiError):
    """A database could not be reached or refused the login."""


class SchemaError(SoLuigiError):
    """The source or destination catalog is not what the run needs (missing table, unmappable type)."""


class Unmappable(SchemaError):
    """A table has a column type (or a name) the destination cannot take: that table is left out."""


class VerificationError(SoLuigiError):
    """Destination data does not match the source."""


class DataError(SoLuigiError):
    """A value the destination cannot hold (e.g. U+0000 in text)."""


class IncompleteCopy(SoLuigiError):
    """Every table is copied, but the report lists objects the copy does not carry."""


class SnapshotGone(SoLuigiError):
    """The run's source snapshot cannot be imported any more (see ``snapshot``): ``snapshot``."""

    def __init__(self, message, snapshot=None):
        super().__init__(message)
        self.snapshot = snapshot


class TransientError(SoLuigiError):
    """A failure a retry may cure: lost connection, server restart."""

    transient = True


def one_line(text):
    """First meaningful line of a driver message, without libpq's trailing detail lines."""
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            return line
    return str(text).strip() or "unknown error"
