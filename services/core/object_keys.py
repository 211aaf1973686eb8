"""Object keys: the rules every key in every store follows (a store backend and a manifest both check them).

Keys are relative, '/'-separated, with no empty, '.' or '..' part, so no key can escape a folder
store's root or mean different objects on different backends.
"""

from __future__ import annotations

from skingenbench.services.core.errors import InvalidArgument

MAX_KEY_LENGTH = 1024


def validate_key(key: str) -> str:
    """Reject keys that could escape the store root or confuse a backend."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument("object key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(f"object key longer than {MAX_KEY_LENGTH} characters", key=key[:80])
    if "\x00" in key:
        raise InvalidArgument("object key contains a NUL byte")
    if "\\" in key:
        raise InvalidArgument("object key contains a backslash; use '/' between parts", key=key)
    if key.startswith("/"):
        raise InvalidArgument("object key must be relative, not absolute", key=key)
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidArgument("object key has an empty, '.' or '..' part", key=key)
    return key


def validate_prefix(prefix: str) -> str:
    """A prefix may be empty or end in '/', otherwise it follows the key rules."""
    if prefix == "":
        return prefix
    validate_key(prefix.rstrip("/") if prefix.endswith("/") else prefix)
    return prefix
