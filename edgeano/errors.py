"""One exception type for problems the user can fix; the CLI prints it as a single line."""


class EdgeanoError(Exception):
    """A user-facing error: bad input, missing file, wrong artifact. `exit_code` is what the CLI returns."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
