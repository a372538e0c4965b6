"""The one exception type for bad user input: the CLI prints its message as one line, exit 2."""


class UserError(Exception):
    """A mistake the user can fix; the message names the fix."""
