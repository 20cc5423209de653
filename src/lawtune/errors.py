"""User-facing errors.

Raise `LawtuneError` for anything the user can fix (bad file, bad config value, missing model). The CLI
prints its message as one line and exits with status 2 — never a traceback. The message says what is
wrong, the offending value or location, and how to fix it.
"""


class LawtuneError(Exception):
    """A problem with the user's input or environment, explained in one line."""
