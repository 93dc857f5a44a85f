"""The deprovisioning webhook: a signed event from the association re-syncs a member, signs
them out or disables their binding at once; a forged, stale or replayed request is refused and
changes nothing. The documented curl/openssl recipe is run and accepted."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from portal.models import AuditEvent, ContentItem, GroupMembership, Identity, MemberGroup, User
from portal.models.content import VISIBILITY_GROUPS
from portal.services import audit, provider_logout
from portal.services.group_mapping import add_rule, save_mapping_settings
from portal.services.provider_logout import sign_webhook
from portal.services.secrets import encrypt_secret
from portal.urls import webhook_url_for
from tests.auth.test_throttling import first_limit
from tests.support.accounts import second_manager_client
from tests.support.providers import SSO, Provider

SECRET = "whsec-" + 'k3y+/=&"é' * 4  # 42 characters, every one that tends to get mangled
DOC = Path(__file__).resolve().parents[2] / "docs" / "membership-lifecycle.md"


def is_signed_in(client: FlaskClient) -> bool:
    return client.get("/account").status_code == 200


def signed_request(
    client: FlaskClient,
    provider: Provider,
    doc: dict[str, Any] | bytes,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
    signature: str | None = None,
):
    """POST an event as the association does: JSON body, timestamp and HMAC headers."""
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        provider_logout.TIMESTAMP_HEADER: ts,
        provider_logout.SIGNATURE_HEADER: signature or sign_webhook(secret, ts, body),
    }
    return client.post(
        f"/sso/{provider.slug}/webhook",
        data=body,
        headers=headers,
        content_type="application/json",
    )


def _group(name: str) -> MemberGroup:
    group = MemberGroup(name=name, name_key=name.casefold(), description="")
    db.session.add(group)
    db.session.commit()
    return group


@pytest.fixture
def webinars(oidc: Provider) -> MemberGroup:
    """Members whose provider says WEBINARS are in Webinars, which sees the gated recording."""
    group = _group("Webinars")
    add_rule(oidc.system, "groups_contains", "WEBINARS", group.id)
    db.session.add(
        ContentItem(
            title="Annual meeting recording",
            kind="recording",
            url="https://video.example.com/watch/1",
            visibility=VISIBILITY_GROUPS,
            groups=[group],
        )
    )
    db.session.commit()
    return group


@pytest.fixture
def jane(oidc: Provider, webinars: MemberGroup, sso: SSO, client: FlaskClient) -> FlaskClient:
    """Jane, signed in through the system, which has a Webhook Signing Secret."""
    oidc.system.webhook_secret_encrypted = encrypt_secret(SECRET)
    db.session.commit()
    assert sso.sign_in(oidc).status_code == 302
    assert "Annual meeting recording" in client.get("/library").get_data(as_text=True)
    return client


def jane_id() -> str:
    return db.session.scalar(sa.select(Identity.subject))


def jane_user() -> User:
    db.session.expire_all()
    return db.session.scalar(sa.select(User).where(User.email == "jane.doe@example.org"))


def snapshot() -> dict[str, Any]:
    """What a refused request must leave as it was."""
    db.session.expire_all()
    user = jane_user()
    identity = db.session.scalar(sa.select(Identity))
    return {
        "status": user.membership_status,
        "groups": sorted(db.session.scalars(sa.select(GroupMembership.group_id)).all()),
        "disabled": (user.disabled_at, identity.disabled_at),
        "generation": user.session_generation,
        "logout": user.provider_logout_at,
        "events": sorted(db.session.scalars(sa.select(AuditEvent.kind)).all()),
        "used": db.session.scalar(sa.text("SELECT count(*) FROM used_tokens")),
    }


def test_the_form_shows_the_deprovisioning_webhook_url(oidc: Provider):
    assert webhook_url_for(oidc.slug) == f"http://localhost/sso/{oidc.slug}/webhook"


def test_a_lapsed_member_loses_the_gated_recording_at_their_next_request(
    oidc: Provider, jane: FlaskClient, app: Flask
):
    """member.updated without WEBINARS: the recording is gone; Jane stays signed in."""
    resp = signed_request(
        app.test_client(),
        oidc,
        {"event": "member.updated", "user_id": jane_id(), "status": "Lapsed", "groups": []},
    )

    assert resp.status_code == 200 and resp.get_json()["result"] == "updated"
    assert resp.headers["Cache-Control"] == "no-store"
    library = jane.get("/library")
    assert library.status_code == 200
    assert "Annual meeting recording" not in library.get_data(as_text=True)
    assert jane_user().membership_status == "Lapsed"
    assert audit.WEBHOOK_MEMBER_UPDATED in snapshot()["events"]


def test_an_update_without_groups_keeps_the_groups_from_the_provider(
    oidc: Provider, jane: FlaskClient, app: Flask, webinars: MemberGroup
):
    """Only the status changes: the Webinars membership (from the Groups claim) stays."""
    signed_request(
        app.test_client(),
        oidc,
        {"event": "member.updated", "user_id": jane_id(), "type": "Student"},
    )

    assert webinars.id in snapshot()["groups"]
    assert jane_user().membership_type == "Student"
    assert jane_user().membership_status == "Active"
    assert "Annual meeting recording" in jane.get("/library").get_data(as_text=True)


def test_a_member_the_restriction_now_refuses_is_signed_out(
    oidc: Provider, jane: FlaskClient, app: Flask
):
    """Only Active members may sign in; the association marks Jane Lapsed: she is signed out."""
    save_mapping_settings(
        oidc.system,
        default_group_id=None,
        restrict_sign_in=True,
        allowed_statuses="Active",
        deny_message="Your membership has lapsed.",
        group_object_key="",
    )

    resp = signed_request(
        app.test_client(),
        oidc,
        {"event": "member.updated", "user_id": jane_id(), "status": "Lapsed"},
    )

    assert resp.get_json()["result"] == "signed_out"
    assert not is_signed_in(jane)


def test_access_rules_the_event_cannot_speak_to_do_not_sign_a_member_out(
    oidc: Provider, jane: FlaskClient, app: Flask
):
    """An Allowed Email Domain Jane's account matches and a Required Claim (over a profile the
    webhook does not carry): an update of her type leaves her signed in; her groups re-sync."""
    save_mapping_settings(
        oidc.system,
        default_group_id=None,
        restrict_sign_in=False,
        allowed_statuses="",
        deny_message="",
        group_object_key="",
        allowed_email_domains="example.org",
        required_claim="email_verified",
        required_claim_message="Verify your address first.",
    )

    resp = signed_request(
        app.test_client(),
        oidc,
        {"event": "member.updated", "user_id": jane_id(), "type": "Student"},
    )

    assert resp.get_json()["result"] == "updated"
    assert is_signed_in(jane)
    assert jane_user().membership_type == "Student"


def test_a_member_whose_account_address_is_outside_the_allowed_domains_is_signed_out(
    oidc: Provider, jane: FlaskClient, app: Flask
):
    """Allowed Email Domains no longer lists Jane's domain: the next update signs her out."""
    save_mapping_settings(
        oidc.system,
        default_group_id=None,
        restrict_sign_in=False,
        allowed_statuses="",
        deny_message="Members of partner associations only.",
        group_object_key="",
        allowed_email_domains="partner.example",
    )

    resp = signed_request(
        app.test_client(),
        oidc,
        {"event": "member.updated", "user_id": jane_id(), "status": "Active"},
    )

    assert resp.get_json()["result"] == "signed_out"
    assert not is_signed_in(jane)


def test_a_deleted_member_without_a_password_is_signed_out_and_disabled(
    oidc: Provider, jane: FlaskClient, app: Flask, sso: SSO
):
    """member.deleted: sessions end, the binding and (no other way in) the account are disabled."""
    resp = signed_request(
        app.test_client(), oidc, {"event": "member.deleted", "user_id": jane_id()}
    )

    assert resp.status_code == 200 and resp.get_json()["result"] == "deleted"
    assert not is_signed_in(jane)
    user = jane_user()
    assert user.disabled_at is not None
    assert db.session.scalar(sa.select(Identity.disabled_at)) is not None
    again = sso.sign_in(oidc)
    assert again.status_code == 403, "a deleted member signed in again through the system"
    assert not is_signed_in(jane)
    assert audit.WEBHOOK_MEMBER_DELETED in snapshot()["events"]


def test_a_deleted_member_with_a_password_keeps_the_account_but_not_the_binding(
    oidc: Provider, jane: FlaskClient, app: Flask, sso: SSO
):
    """Jane also has a local password: her account stays, only the system's binding is off."""
    user = jane_user()
    user.set_password("a local password 123")
    db.session.commit()

    signed_request(app.test_client(), oidc, {"event": "member.deleted", "user_id": jane_id()})

    assert not is_signed_in(jane)
    assert jane_user().disabled_at is None
    assert sso.sign_in(oidc).status_code == 403
    local = app.test_client()
    local.post("/login", data={"email": "jane.doe@example.org", "password": "a local password 123"})
    assert is_signed_in(local)


def test_an_event_for_someone_portal_does_not_know_changes_nothing(
    oidc: Provider, jane: FlaskClient, app: Flask
):
    before = snapshot()
    resp = signed_request(
        app.test_client(), oidc, {"event": "member.deleted", "user_id": "someone-else"}
    )

    assert resp.status_code == 200 and resp.get_json()["result"] == "no_account"
    after = snapshot()
    assert {k: v for k, v in after.items() if k != "used"} == {
        k: v for k, v in before.items() if k != "used"
    }
    assert is_signed_in(jane)


def _tampered(provider: Provider) -> dict[str, Any]:
    """A body signed for one member, then changed to delete Jane."""
    ts = str(int(time.time()))
    signed = json.dumps({"event": "member.updated", "user_id": "me"}).encode()
    return {"timestamp": int(ts), "signature": sign_webhook(SECRET, ts, signed)}


#: The attacker's requests: (name, keyword arguments of signed_request).
ATTACKS: list[tuple[str, Any]] = [
    ("signed with another secret", lambda p: {"secret": "x" * 40}),
    ("without a signature", lambda p: {"signature": "sha256="}),
    ("signature of another body", _tampered),
    ("timestamp 6 minutes old", lambda p: {"timestamp": int(time.time()) - 360}),
    ("timestamp 6 minutes ahead", lambda p: {"timestamp": int(time.time()) + 360}),
    ("signature without the timestamp", lambda p: {"signature": "sha256=" + "0" * 64}),
]


@pytest.mark.parametrize("name, attack", ATTACKS, ids=[name for name, _ in ATTACKS])
def test_a_forged_or_stale_webhook_is_refused_and_changes_nothing(
    oidc: Provider, jane: FlaskClient, app: Flask, caplog, name: str, attack
):
    """The attacker tries to delete Jane: 401, she is still signed in, nothing written."""
    before = snapshot()

    resp = signed_request(
        app.test_client(),
        oidc,
        {"event": "member.deleted", "user_id": jane_id()},
        **attack(oidc),
    )

    assert resp.status_code == 401, f"{name}: answered {resp.status_code}"
    assert resp.get_json()["error"] in {"invalid_signature", "stale_timestamp"}
    assert snapshot() == before, f"{name}: something changed"
    assert is_signed_in(jane)
    assert SECRET not in caplog.text


def test_a_replayed_webhook_is_refused(oidc: Provider, jane: FlaskClient, app: Flask):
    """The same signed request twice inside the window: the second is refused (409)."""
    ts = int(time.time())
    doc = {"event": "member.updated", "user_id": jane_id(), "status": "Lapsed", "groups": []}
    attacker = app.test_client()
    assert signed_request(attacker, oidc, doc, timestamp=ts).status_code == 200
    # Jane's membership is restored by a later event; the attacker replays the first one.
    signed_request(
        attacker,
        oidc,
        {
            "event": "member.updated",
            "user_id": jane_id(),
            "status": "Active",
            "groups": ["WEBINARS"],
        },
    )
    before = snapshot()

    replay = signed_request(attacker, oidc, doc, timestamp=ts)

    assert replay.status_code == 409 and replay.get_json()["error"] == "replayed"
    assert snapshot() == before
    assert jane_user().membership_status == "Active"


def test_a_signed_request_that_is_not_an_event_is_refused(
    oidc: Provider, jane: FlaskClient, app: Flask
):
    """Signed, but not an event Portal knows: 400 and nothing written."""
    before = snapshot()
    for doc in (
        b"not json",
        {"event": "member.renamed", "user_id": jane_id()},
        {"event": "member.deleted"},
        {"event": "member.updated", "user_id": jane_id(), "groups": "WEBINARS"},
    ):
        resp = signed_request(app.test_client(), oidc, doc)
        assert resp.status_code == 400, f"{doc!r}: answered {resp.status_code}"
    assert snapshot() == before


def test_a_system_without_a_signing_secret_has_no_webhook(oidc: Provider, jane: FlaskClient, app):
    """Until the manager sets a Webhook Signing Secret, the URL answers 404 and does nothing."""
    oidc.system.webhook_secret_encrypted = ""
    db.session.commit()
    before = snapshot()

    resp = signed_request(
        app.test_client(), oidc, {"event": "member.deleted", "user_id": jane_id()}, secret=""
    )

    assert resp.status_code == 404
    assert snapshot() == before


def _documented_recipe() -> str:
    """Return the shell block of docs/membership-lifecycle.md that signs and sends an event."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    recipe = [block for block in blocks if "openssl dgst" in block]
    assert len(recipe) == 1, "the documentation lost its curl/openssl example"
    return recipe[0]


@pytest.mark.skipif(
    shutil.which("openssl") is None and os.environ.get("CI") != "true",
    reason="needs the openssl command (CI has it: there a missing openssl fails)",
)
def test_the_documented_openssl_recipe_is_accepted(
    oidc: Provider, jane: FlaskClient, app: Flask, tmp_path
):
    """Run the docs' block as pasted (curl replaced by a recorder) and send what it signed."""
    recorder = 'curl() { printf "%s\\0" "$@" > "$CURL_ARGS"; }\n'
    script = recorder + _documented_recipe().replace('"12345"', f'"{jane_id()}"')
    args_file = tmp_path / "curl-args"
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        check=True,
        timeout=30,
        env={
            "PATH": "/usr/bin:/bin",
            "PORTAL_WEBHOOK_SECRET": SECRET,
            "PORTAL_WEBHOOK_URL": webhook_url_for(oidc.slug),
            "CURL_ARGS": str(args_file),
            "LC_ALL": "C.UTF-8",
        },
    )
    args = args_file.read_bytes().split(b"\0")[:-1]
    headers = dict(args[i + 1].decode().split(": ", 1) for i, a in enumerate(args) if a == b"-H")
    body = args[args.index(b"--data-binary") + 1]
    assert args[args.index(b"-X") + 2].decode() == webhook_url_for(oidc.slug)

    resp = app.test_client().post(f"/sso/{oidc.slug}/webhook", data=body, headers=headers)

    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["result"] == "deleted"
    assert not is_signed_in(jane)


def test_a_flood_of_forged_webhooks_is_throttled(oidc: Provider, jane: FlaskClient, app: Flask):
    """From one address, forged requests stop at PORTAL_RATELIMIT_SSO_INITIATE with 429."""
    allowed = first_limit(app, "PORTAL_RATELIMIT_SSO_INITIATE")
    attacker = app.test_client()
    doc = {"event": "member.deleted", "user_id": jane_id()}

    statuses = [
        signed_request(attacker, oidc, doc, secret="x" * 40).status_code for _ in range(allowed + 2)
    ]

    assert statuses == [401] * allowed + [429, 429]
    assert is_signed_in(jane)


def test_managers_see_which_binding_the_webhook_deleted(
    oidc: Provider, jane: FlaskClient, app: Flask, manager: User
):
    """The user's page names the disabled binding, so a manager knows why sign-in is refused."""
    signed_request(app.test_client(), oidc, {"event": "member.deleted", "user_id": jane_id()})
    desk = second_manager_client(app)

    page = desk.get(f"/admin/users/{jane_user().id}").get_data(as_text=True)

    assert (
        "deleted by the provider&#39;s webhook" in page
        or "deleted by the provider's webhook" in page
    )
