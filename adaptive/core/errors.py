"""The one exception type the toolkit raises for bad input.

The CLI prints a ``ToolkitError`` as a single line (no traceback) and exits non-zero, so every
message should say what is wrong and what to do about it.
"""


class ToolkitError(Exception):
    """A problem with the user's input, files or environment, explained in one line."""
