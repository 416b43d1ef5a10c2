"""Exit codes, from sysexits.h where one fits, so scripts and systemd can tell failures apart."""

OK = 0
FAILURE = 1
USAGE = 64  # EX_USAGE: wrong arguments
DATA_ERROR = 65  # EX_DATAERR: the input could not be decoded
NO_INPUT = 66  # EX_NOINPUT: an input file (the dead-letter store) does not exist
UNAVAILABLE = 69  # EX_UNAVAILABLE: a service we need refused or is unreachable
SOFTWARE = 70  # EX_SOFTWARE: a bug; the traceback is worth reporting
TEMPFAIL = 75  # EX_TEMPFAIL: stopped before finishing; unfinished work will be redelivered
CONFIG = 78  # EX_CONFIG: the configuration is wrong
INTERRUPTED = 130  # killed by SIGINT, by shell convention


class CliError(Exception):
    """A failure with a message for the user and its exit code; never shown as a traceback."""

    def __init__(self, message: str, code: int = FAILURE) -> None:
        super().__init__(message)
        self.code = code
