"""Edge exceptions, under the package-wide :class:`emostream.errors.EmostreamError` hierarchy.

They live here rather than in ``emostream.errors`` so the edge area stays in its own files.
"""

from __future__ import annotations

from emostream.errors import EmostreamError, UsageError


class AudioError(UsageError):
    """A WAV file that cannot be read or used: the message names the file and what to do."""


class SttError(EmostreamError):
    """A speech-to-text engine is missing or failed."""


class SpoolError(EmostreamError):
    """The local spool cannot be used."""


class SpoolFullError(SpoolError):
    """The spool holds its maximum number of records and the policy is ``block``."""


class SpoolCorruptError(SpoolError):
    """The spool file is damaged; it is never deleted silently: the user moves it aside."""

    exit_code = 3
