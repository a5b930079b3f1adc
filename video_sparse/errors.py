"""The base class of every mistake a user can make and fix (a config value, a path, a file)."""


class UserError(Exception):
    """A user's mistake: the message names the thing and how to fix it. The apps print it as one
    line and exit with status 2; every layer's own error (annotations, checkpoints, model options,
    ...) derives from it."""
