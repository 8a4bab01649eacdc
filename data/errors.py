"""The one exception type the command line turns into a one-line message and exit code 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a file, variable or argument that is not what was expected.

    The message is a single line naming the file or argument, what was found and what
    was expected; ``surrogate`` prints it without a traceback and exits with status 2.
    """


class CampaignError(InputError):
    """A campaign file that is missing, unreadable or does not follow the schema."""
