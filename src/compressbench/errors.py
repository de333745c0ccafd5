"""The one error type users see: a single line naming the file, field, step or layer at fault."""


class CompressbenchError(Exception):
    """Bad input or an impossible request. The CLI prints its message as one line and exits non-zero."""
