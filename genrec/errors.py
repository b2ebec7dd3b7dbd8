"""Errors that genrec reports to the user as one clear line (the CLI prints them without a traceback)."""


class GenrecError(Exception):
    """Base class: a problem with the user's input, files or settings, not a bug in genrec."""


class ConfigError(GenrecError):
    """A configuration key is unknown or its value is invalid."""


class DataError(GenrecError):
    """A data file is missing, malformed or inconsistent."""

    def __init__(self, message: str, path=None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line
