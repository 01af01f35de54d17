"""The one user-facing error type: the CLI prints it and exits 2, without a traceback."""


class GridError(Exception):
    """Bad input from the user: a spec, a flag, a data root or a store.

    The message names the file and the key, one problem per line.
    """
