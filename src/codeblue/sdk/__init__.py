"""The application SDK: an in-process Guard that enforces containment in microseconds and reports what the
AI did. Imports only the standard library, httpx and fastjsonschema (``pip install codeblue``).

    from codeblue.sdk import Guard
    guard = Guard(url="http://127.0.0.1:8600", token="…", service="support-bot", environment="production")
    if guard.decide("refund-desk", action="issue_refund", key=account_id).allowed:
        ...
"""

from codeblue.sdk.breaker import BreakerPolicy
from codeblue.sdk.bucket import bucket
from codeblue.sdk.decision import Blocked, ConfigValue, Decision
from codeblue.sdk.guard import AUTO, FAIL_CLOSED, FAIL_OPEN, SDK_VERSION, Guard, default_lkg_path
from codeblue.sdk.reporting import Trace

__all__ = [
    "AUTO",
    "FAIL_CLOSED",
    "FAIL_OPEN",
    "SDK_VERSION",
    "Blocked",
    "BreakerPolicy",
    "ConfigValue",
    "Decision",
    "Guard",
    "Trace",
    "bucket",
    "default_lkg_path",
]
