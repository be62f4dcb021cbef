"""User-facing errors: the CLI prints these as one clear line instead of a traceback."""


class GenstructError(Exception):
    """A mistake in the user's input (file, config, argument). The message names what and where."""


class DataError(GenstructError):
    """Bad input data: the message names the file, the line (when there is one) and the field."""

    def __init__(self, message: str, path=None, line: int | None = None, field: str | None = None):
        where = str(path) if path is not None else ""
        if line is not None:
            where += f":{line}"
        if field is not None:
            message = f"field {field!r}: {message}"
        super().__init__(f"{where}: {message}" if where else message)
        self.path, self.line, self.field = path, line, field
