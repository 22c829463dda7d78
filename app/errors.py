"""Errors the web layer maps to 4xx answers."""


class InvalidInput(ValueError):
    """Input a client must fix (400)."""


class NotFound(LookupError):
    """The object named does not exist (404)."""


class BadUpload(ValueError):
    """An upload that is not an acceptable image; `status` is 400 or 413."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
