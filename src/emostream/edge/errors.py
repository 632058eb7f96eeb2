"""Edge exceptions, under the package-wide :class:`emostream.errors.EmostreamError` hierarchy.

They live here rather than in ``emostream.errors`` so the edge area stays in its own files.
"""

from __future__ import annotations

from emostream.errors import ConfigError, EmostreamError, UsageError


class AudioError(UsageError):
    """A WAV file that cannot be read or used: the message names the file and what to do."""


class SttError(EmostreamError):
    """A speech-to-text engine is missing or failed."""


class SpoolError(EmostreamError):
    """The local spool cannot be used."""


class SpoolFullError(SpoolError):
    """The spool holds its maximum number of records and the policy is ``block``."""


class SpoolRowError(SpoolError):
    """One spool row is not a row this spool can deliver (refused on write; on read, the file was edited or damaged)."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"spool row {seq}: {reason}" if seq else f"spool row: {reason}")
        self.seq = seq
        self.reason = reason


class TranscriptError(UsageError):
    """A transcript that cannot be sent (bad device id, empty or too long text): refused before it is spooled."""


class SigningKeyError(ConfigError):
    """The device's signing key in its profile is not a usable Ed25519 key."""


class SpoolCorruptError(SpoolError):
    """The spool file is damaged; it is never deleted silently: the user moves it aside."""

    exit_code = 3
