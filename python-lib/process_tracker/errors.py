"""The few typed errors the core sees. OS and API errors are translated into these where they enter the code."""


class ProcessTrackerError(Exception):
    """Base class: an expected failure whose message is safe and readable as is (no traceback needed)."""


class ConfigError(ProcessTrackerError, ValueError):
    """A bad parameter or setting. `param` names it; the message says what was wrong and what is accepted."""

    def __init__(self, param, message):
        self.param = param
        self.message = message
        super().__init__("%s: %s" % (param, message))

    def renamed(self, param):
        """The same error naming `param` instead: the CLI flag or option the user typed for a setting."""
        return ConfigError(param, self.message)


class DSSError(ProcessTrackerError):
    """A call to the DSS public API failed. `status` is the HTTP status when known."""

    def __init__(self, message, status=None):
        self.status = status
        super().__init__(message)


class DSSUnreachable(DSSError):
    """DSS could not be reached, or did not answer within the timeout."""


class DSSUnauthorized(DSSError):
    """The API key or ticket is unknown or revoked (HTTP 401)."""


class DSSForbidden(DSSError):
    """The caller is not allowed to do this (HTTP 403): typically an admin-only call made by a non-admin."""


class DSSNotFound(DSSError):
    """The object does not exist (HTTP 404), or the endpoint does not exist on this DSS version."""
