"""Errors that mean the user gave bad input: the CLI prints them as one line, no traceback."""


class UserError(Exception):
    """Bad input from the user (path, option, file). The message says what to do."""
