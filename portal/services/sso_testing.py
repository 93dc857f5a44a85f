"""*Test this configuration*: a traced sign-in that reports what it would do, and signs nobody in.

A community manager starts it from the admin; the provider sends the browser back to the
system's ordinary Redirect URL, where the callback sees a test attempt and calls
`complete_test_login`. That runs the same engine as a real sign-in with a `Trace`, works out
what account resolution and the group rules *would* do (reading only), and stores the
redacted report on the attempt for the admin's result page. Nothing about users is written.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from portal.extensions import db
from portal.models import AuthSystem, LoginAttempt, MemberGroup, Team, User
from portal.models.base import utcnow
from portal.services import audit
from portal.services.account_resolution import (
    check_membership_allowed,
    group_sync_fields,
    plan_account,
    provider_values,
)
from portal.services.group_mapping import provider_grants_manager, resolve_member_groups
from portal.services.login_attempts import attempt_of_browser, claim_login_attempt
from portal.services.settings_snapshot import SystemSettings, settings_of
from portal.services.sso_login import finish_attempt, start_sso_login
from portal.sso.engine import SSOResult
from portal.sso.errors import (
    EmailNotVerified,
    LinkNotAllowed,
    MembershipDenied,
    RequiredFieldMissing,
    SSOError,
    UsernameNotTrusted,
)
from portal.sso.paths import PathNode, path_tree
from portal.sso.profile_fields import FIELD_LABEL, PARAM_OPTIONS, PROFILE_FIELDS, param_options
from portal.sso.trace import Trace

log = logging.getLogger(__name__)

#: The audit outcome of a test run that would sign the member in.
SUCCESS = "success"


def start_test_login(system: AuthSystem, *, browser_key: str) -> str:
    """Record a test attempt for this browser and return the provider's login URL.

    Works whatever the system's Alternate Login mode, and while it is disabled.
    """
    return start_sso_login(system, browser_key=browser_key, is_test=True)


def _account_label(user: User) -> str:
    name = " ".join(p for p in (user.first_name, user.last_name) if p)
    who = user.email or user.username or f"user #{user.id}"
    return f"{name} <{who}>" if name else who


def _field_rows(system: SystemSettings, result: SSOResult, trace: Trace) -> list[dict[str, Any]]:
    rows = []
    for key, label in PROFILE_FIELDS:
        row = system.param(key)
        value = result.fields.get(key)
        if isinstance(value, list):
            shown: Any = [trace.redact_text(v) for v in value] or None
        else:
            shown = trace.redact_text(value) if value is not None else None
        options = param_options(key, {o: getattr(row, o) for o in PARAM_OPTIONS} if row else {})
        rows.append(
            {
                "key": key,
                "label": label,
                "path": row.path if row else "",
                "value": shown,
                "must_supply": options["must_supply"] or key == "user_id",
                "can_upgrade": options["can_upgrade"],
                "violation": label in result.violations,
            }
        )
    return rows


def _account_outcome(system: SystemSettings, result: SSOResult) -> dict[str, str]:
    """Say what account resolution would do with this result, reading only."""
    if result.violations:
        missing = ", ".join(result.violations)
        return {
            "action": "refused",
            "summary": f"Sign-in would fail: the provider did not supply {missing}.",
            "code": RequiredFieldMissing.code,
        }
    try:
        check_membership_allowed(system, result)
        plan = plan_account(system, result)
    except SSOError as exc:
        action, summary = "refused", f"{exc.user_message} ({exc.log_detail})"
        if isinstance(exc, MembershipDenied):
            rule = (exc.log_detail or "").removeprefix("access rule: ")
            summary = f"Sign-in would be refused ({rule}): {exc.user_message}"
        elif isinstance(exc, EmailNotVerified | UsernameNotTrusted | LinkNotAllowed):
            summary = f"Sign-in would be refused: {summary}"
        else:  # AccountConflict, and whatever else account resolution refuses
            action = "conflict"
        return {"action": action, "summary": summary, "code": exc.code}
    if plan.action == "sign_in":
        summary = f"Would sign in {_account_label(plan.user)}, already connected to this User ID."
    elif plan.action == "upgrade":
        summary = (
            f"Would connect the existing account {_account_label(plan.user)} to this system "
            f"(matched on {FIELD_LABEL[plan.matched_on]})."
        )
    elif plan.action == "confirm":
        summary = (
            f"Would connect the existing account {_account_label(plan.user)} to this system "
            f"(matched on {FIELD_LABEL[plan.matched_on]}) only once the member confirms by "
            "signing in to that account with its password; nobody is signed in until then."
        )
    else:
        summary = "Would create a new account"
        team = (
            db.session.get(Team, system.onboarding_team_id) if system.onboarding_team_id else None
        )
        if team is not None:
            summary += f" in the team {team.name}"
        summary += "."
        if result.missing_required:
            summary += (
                " The member would be asked for "
                + ", ".join(result.missing_required)
                + " on Complete your profile."
            )
    return {"action": plan.action, "summary": summary}


def _granted_groups(system: SystemSettings, result: SSOResult) -> list[str]:
    fields = group_sync_fields(provider_values(system, result), result)
    ids = resolve_member_groups(system, fields)
    role = ["Community manager (role)"] if provider_grants_manager(system, fields) else []
    if not ids:
        return role
    query = sa.select(MemberGroup.name).where(MemberGroup.id.in_(ids)).order_by(MemberGroup.name)
    return [*db.session.scalars(query), *role]


def _report(
    system: SystemSettings, trace: Trace, result: SSOResult | None, error: SSOError | None
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "tested_at": utcnow().isoformat(timespec="seconds"),
        "outcome": "failed" if error is not None or result is None else "ok",
        "error": None,
        "requests": [asdict(entry) for entry in trace.entries],
        "token_response": trace.token_response,
        "id_claims": trace.id_claims,
        "profile": trace.profile,
        "profile_from": _profile_source(system),
        "fields": [],
        "account": None,
        "groups": [],
    }
    if error is not None:
        report["error"] = {
            "code": error.code,
            "message": trace.redact_text(error.user_message),
            "detail": trace.redact_text(error.log_detail or ""),
        }
    if result is not None:
        report["fields"] = _field_rows(system, result, trace)
        report["account"] = _account_outcome(system, result)
        report["groups"] = _granted_groups(system, result)
        if result.violations or report["account"]["action"] in ("refused", "conflict"):
            report["outcome"] = "failed"
    return report


def _profile_source(system: SystemSettings) -> str:
    """Say where the profile parameters read from, for the report."""
    if system.personify_config is not None:
        return "Personify SSO web services"
    return "Profile API" if system.sso_config.profile_requests else "token response and ID token"


def test_outcome(report: Mapping[str, Any]) -> str:
    """Return a report's audit outcome: ``success``, or the code of what would fail."""
    if report.get("error"):
        return str(report["error"]["code"])
    account = report.get("account") or {}
    if account.get("code"):
        return str(account["code"])
    return SUCCESS


def _record_test_run(
    system: SystemSettings, *, actor: User | None, outcome: str, reference: str
) -> None:
    audit.record_event(
        audit.TEST_RUN,
        actor=actor,
        system=system,
        reference=reference,
        details={"outcome": outcome[:40], "reference": reference},
    )


def record_failed_test_run(system: SystemSettings, error: SSOError, *, actor: User | None) -> str:
    """Log and audit a test run whose callback was refused (bad state...); return its reference.

    The failure is a test run's outcome, not a failed sign-in: it is recorded as ``test_run``
    with the error code, never as ``sign_in_failed``. Whatever the refused callback left in
    the session is rolled back first; a database problem is logged and swallowed.
    """
    reference = secrets.token_hex(4)
    log.warning(
        "SSO test run failed ref=%s system=%s code=%s detail=%s",
        reference,
        system.slug,
        error.code,
        " ".join((error.log_detail or "-").split()),
    )
    try:
        db.session.rollback()
        _record_test_run(system, actor=actor, outcome=error.code, reference=reference)
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        log.exception("Could not record the test run ref=%s in the audit log", reference)
    return reference


def complete_test_login(
    system: AuthSystem | SystemSettings,
    params: Mapping[str, str],
    *,
    browser_key: str | None,
    actor: User | None = None,
) -> LoginAttempt:
    """Finish a test attempt: trace the whole flow, store the report, and sign nobody in.

    The state is checked exactly as for a real sign-in (StateInvalid when it fails); every
    later failure is part of the report rather than an error page. The run and its outcome
    are audited (``test_run``) with ``actor``, the manager who ran it, in the same commit as
    the report.
    """
    system = settings_of(system)
    attempt = claim_login_attempt(system, params.get("state"), browser_key, is_test=True)
    trace = Trace()
    result: SSOResult | None = None
    error: SSOError | None = None
    try:
        result = finish_attempt(system, attempt, params, trace=trace, enforce_required=False)
    except SSOError as exc:
        error = exc
    report = _report(system, trace, result, error)
    report["reference"] = reference = secrets.token_hex(4)
    # Reading the account plan may have loaded users; make sure nothing about them is saved.
    db.session.rollback()
    attempt = db.session.get(LoginAttempt, attempt.id)
    attempt.test_result = report
    _record_test_run(system, actor=actor, outcome=test_outcome(report), reference=reference)
    db.session.commit()
    return attempt


def get_test_result(system: AuthSystem, attempt_id: int, browser_key: str | None) -> dict | None:
    """Return the stored report of a test attempt started by this browser, or None."""
    attempt = db.session.get(LoginAttempt, attempt_id)
    if (
        attempt is None
        or not attempt.is_test
        or attempt.auth_system_id != system.id
        or attempt.test_result is None
        or not attempt_of_browser(attempt, browser_key)
    ):
        return None
    return attempt.test_result


def document_trees(report: Mapping[str, Any]) -> list[tuple[str, str, PathNode]]:
    """Return (title, what its paths are for, tree) for each JSON document of a report."""
    trees = []
    if report.get("token_response") is not None:
        trees.append(
            (
                "Token response",
                "Paths here are what the Access Token Path reads"
                + ("" if report.get("profile_from") == "Profile API" else ", and the profile"),
                path_tree(report["token_response"]),
            )
        )
    if report.get("id_claims") is not None:
        trees.append(("ID token claims", "The validated claims", path_tree(report["id_claims"])))
    if report.get("profile") is not None:
        trees.append(
            (
                "Profile",
                f"What the profile parameter paths read (from the {report['profile_from']})",
                path_tree(report["profile"]),
            )
        )
    return trees
