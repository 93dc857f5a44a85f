"""The SSO failure page as a member sees it: message, reference, nothing secret."""

from __future__ import annotations

import re

REFERENCE = re.compile(r"Reference: <code>([0-9a-f]{8})</code>")


def assert_failure_page(resp, caplog, message: str, code: str, secrets: list[str]) -> str:
    """Check an SSO failure page: message, reference logged once with the code, no secrets."""
    page = resp.get_data(as_text=True)
    # Failure messages never quote the page: it is checked for secrets only below.
    assert message in page, f"the page does not say {message!r}"
    match = REFERENCE.search(page)
    assert match, "the failure page shows no reference"
    reference = match.group(1)
    lines = [r.getMessage() for r in caplog.records if f"ref={reference}" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"code={code}" in lines[0], lines[0]
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for secret in filter(None, secrets):
        assert secret not in page, f"secret {secret[:6]}... in the page"
        assert secret not in logs, f"secret {secret[:6]}... in the logs"
    return reference
