"""One exception type for problems the user can fix; the CLI prints it as a single line.

Exit codes (README "Exit codes" table; jetson/edgeano.service restarts on everything but EXIT_USAGE):
most errors are a bad flag, file, checkpoint or artifact, so EdgeanoError defaults to EXIT_USAGE;
the few that are not say so (EXIT_ERROR, EXIT_SOURCE, EXIT_OUTPUT).
"""

EXIT_OK = 0
EXIT_ERROR = 1  # the work failed while running (a failed check of our own result, an unexpected error)
EXIT_USAGE = 2  # bad flag, file, checkpoint or artifact: fix the command or configuration; a restart will not help
EXIT_SOURCE = 3  # the video source will not open, or a live source stayed lost: a restart may help
EXIT_OUTPUT = 4  # an output could not be written (disk full, unwritable folder)
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (systemctl stop, docker stop) outside `run`, which finishes cleanly with 0


class EdgeanoError(Exception):
    """A user-facing error: bad input, missing file, wrong artifact. `exit_code` is what the CLI returns."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code
