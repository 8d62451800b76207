"""The one error type for problems a user can fix.

Every error the engine raises on purpose, for an input, a setting, a model or a
download the user can change, derives from :class:`CloudMaskError`, and its
message names the problem and the fix. The Processing layer shows exactly these
messages to the user. Anything else that escapes the engine is a bug: the user
gets a short message and the full traceback goes to the log for the report.

The subclasses keep their historical second base (``ValueError``,
``LookupError``, ``RuntimeError``) so that code catching those still works;
nothing should *rely* on it: catch ``CloudMaskError``.
"""

from __future__ import annotations


class CloudMaskError(Exception):
    """A problem the user can fix; the message says what it is and what to do."""


class SettingsError(CloudMaskError, ValueError):
    """A run setting (threshold, dilation, kind ...) is outside what is allowed."""
