"""One exception type for user-facing problems: the CLIs print its message on one line."""


class Lab4Error(Exception):
    """Bad input (a path, a flag, a file's contents). The message names it and what was expected."""
