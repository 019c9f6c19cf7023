"""The one exception type that reaches the user as a single line."""


class NeurokdError(Exception):
    """A problem with the user's input or environment.

    The CLI prints ``neurokd: error: <message>`` and exits non-zero, without a traceback
    (unless ``--debug`` is given). Library code raises it for anything a user can fix.
    """
