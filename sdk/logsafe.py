"""Keep secrets out of third-party debug logs.

At DEBUG level botocore logs whole response bodies (an STS ``AssumeRole`` or IAM
``CreateAccessKey`` answer carries a secret key and a session token) and the canonical
request it signs (with the ``x-amz-security-token`` header).  ``blobfs -vv`` turns DEBUG on
for everything, so :func:`install` puts a filter on those loggers that blanks such values
before any handler sees them.  azure-core redacts SAS signatures and unknown headers in its
own request log already.

The filter only runs for records a logger actually emits (Python checks the level first),
so it costs nothing unless debug logging is on.
"""

from __future__ import annotations

import logging
import re
from typing import Final

REDACTED: Final = "REDACTED"

_PATTERNS: Final = (
    # XML elements of STS and IAM responses.
    re.compile(r"(<(SecretAccessKey|SessionToken)>)[^<]*(</\2>)"),
    # Headers and query parameters: "x-amz-security-token:...", 'X-Amz-Security-Token': b'...',
    # X-Amz-Security-Token=...; and SAS signatures in URLs.
    re.compile(r"((?:x-amz-security-token|sig)['\"]?\s*[:=]\s*b?['\"]?)()[^\s'\"&,;}]+()", re.I),
    # Mappings printed as dicts: 'secret_access_key': '...', "SessionToken": "...".
    re.compile(
        r"(['\"](?:secret_?access_?key|session_?token|aws_secret_access_key|aws_session_token"
        r"|sas_token|account_key|credential)['\"]\s*:\s*b?['\"])()[^'\"]*()",
        re.I,
    ),
)

#: Loggers known to print secrets at DEBUG (aiobotocore logs through botocore's loggers).
LOGGERS: Final = (
    "botocore.parsers",
    "botocore.auth",
    "botocore.endpoint",
    "botocore.hooks",
    "botocore.credentials",
    "botocore.httpsession",
    "aiobotocore.endpoint",
    "aiobotocore.httpsession",
    "aiobotocore.credentials",
)


def redact(text: str) -> str:
    """``text`` with secret values replaced by ``REDACTED``."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3) or ''}", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with :func:`redact` (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logging module's problem
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER: Final = RedactingFilter()


def install() -> None:
    """Put the filter on :data:`LOGGERS` (once; calling again changes nothing)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
