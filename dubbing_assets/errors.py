"""The project's own exception types.

Every error a user can cause (a bad file, a missing model, a wrong key) is one
of these, with a message that says what is wrong and what to do about it, so
the web UI, the CLI and the logs can show it as it is.
"""

from __future__ import annotations


class DubbingError(Exception):
    """Base class: a problem the user can act on; the message says how."""


class ConfigError(DubbingError):
    """A setting is missing or invalid."""


class RequestError(DubbingError, ValueError):
    """A submit or re-run request (from the CLI, a request file or the UI) asks for something invalid.

    Also a ValueError, which request handling raised before it had a type of its own."""


class UnsafeNameError(DubbingError):
    """A key or file name would escape its root folder or is not allowed."""


class MediaError(DubbingError):
    """The input media cannot be dubbed (no audio, truncated, not media...)."""


class ModelNotFoundError(DubbingError):
    """A model could not be resolved locally, from packages or by download."""


class EngineError(DubbingError):
    """An engine (ASR, TTS, MT, separation...) failed on valid input."""


class ToolNotFoundError(DubbingError):
    """An external program (ffmpeg, espeak-ng...) is not installed."""


class StageError(DubbingError):
    """A stage cannot go on with this episode as it stands (no episode record, a file replaced after
    the run was queued, no dialogue to dub); the message says what to do."""
