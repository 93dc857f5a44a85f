"""Chained profile requests: each reads the token response and earlier answers, in its context."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, unquote

import pytest
from werkzeug.wrappers import Response

from portal.sso.engine import ProfileRequest, SSOConfig, finish_login, merge_responses
from portal.sso.errors import REDACTED, SubjectMismatch, TemplateError
from portal.sso.idtoken import JWKSCache
from portal.sso.profile_fields import ProfileParam
from portal.sso.trace import Trace
from tests.support.servers import App

ACCESS = "at-chain+s3cret/="
SESSION = "ym-session-s3cret"
#: What a hostile provider may put in an identifier: URL, form, JSON and template syntax.
HOSTILE = 'a/b?c=d&e#f %Token% "q" \\ ü'


def json_response(doc, status=200):
    return Response(json.dumps(doc), status=status, content_type="application/json")


class ChainProvider:
    """A provider whose member profile needs three calls: who am I, the member, the groups."""

    def __init__(self, serve):
        self.token_doc = {"access_token": ACCESS, "token_type": "Bearer", "site": "acme"}
        self.whoami = {"MemberID": 4711, "SessionToken": SESSION, "Shared": "from 1"}
        self.member = {
            "Member": {"Id": "4711", "Email": "ada@example.org", "First": "Ada"},
            "Shared": "from 2",
        }
        self.groups = {
            "$type": "Asi.Soa.Core.DataContracts.PagedResult, Asi.Contracts",
            "Items": {"$type": "System.Collections.Generic.List", "$values": [{"Name": "Gold"}]},
        }
        self.app = App()
        self.app.routes["/token"] = lambda r: json_response(self.token_doc)
        self.app.routes["/whoami"] = lambda r: json_response(self.whoami)
        self.app.routes["/member/4711"] = lambda r: json_response(self.member)
        self.app.routes["/groups"] = lambda r: json_response(self.groups)
        self.url = serve(self.app).url

    def received(self, path):
        return [r for r in self.app.requests if r["path"] == path]

    def config(self, *requests: ProfileRequest, **params: str) -> SSOConfig:
        mapping = {"user_id": "Member.Id", "email": "Member.Email", **params}
        return SSOConfig(
            slug="chain",
            client_id="client-1",
            client_secret="s3cret",
            redirect_url="https://portal.example/sso/chain/callback",
            login_url=self.url + "/authorize?state=%State%",
            token_url=self.url + "/token",
            token_body="code=%Code%&client_secret=%ClientSecret%",
            scope="",
            profile_requests=requests,
            params={key: ProfileParam(path) for key, path in mapping.items()},
        )

    def three_requests(self) -> tuple[ProfileRequest, ...]:
        return (
            ProfileRequest(self.url + "/whoami", headers="Authorization: Bearer %Token%"),
            ProfileRequest(
                self.url + "/member/%Response1:MemberID%",
                method="POST",
                headers="Content-Type: application/json\nX-SS-ID: %Response1:SessionToken%",
                body='{"site": "%TokenResponse:site%", "id": "%Response1:MemberID%"}',
            ),
            ProfileRequest(self.url + "/groups?PartyId=%Response2:Member.Id%"),
        )


@pytest.fixture
def idp(serve):
    return ChainProvider(serve)


@pytest.fixture
def finish(http):
    def run(config, trace=None):
        return finish_login(
            config,
            params={"code": "the-code", "state": "st"},
            nonce="nonce-chain-1",
            code_verifier="verifier-" + "v" * 40,
            http=http,
            jwks_cache=JWKSCache(),
            trace=trace,
        )

    return run


def test_three_chained_requests_each_read_earlier_answers_and_sign_the_member_in(idp, finish):
    """Request 2 uses request 1's MemberID and session, request 3 request 2's member id."""
    config = idp.config(*idp.three_requests(), groups='Response3.Items."$values"[].Name')

    result = finish(config)

    (member,) = idp.received("/member/4711")
    assert member["method"] == "POST"
    assert member["headers"]["X-Ss-Id"] == SESSION
    assert json.loads(member["body"]) == {"site": "acme", "id": "4711"}
    (groups,) = idp.received("/groups")
    assert groups["args"] == {"PartyId": ["4711"]}
    assert result.subject == "4711"
    assert result.fields["email"] == "ada@example.org"
    assert result.fields["groups"] == ["Gold"]


def test_the_profile_merges_the_answers_later_keys_winning_each_kept_under_its_name(idp, finish):
    """Shallow merge in order, plus Response1..3 whole; the token response is not in it."""
    result = finish(idp.config(*idp.three_requests()))

    assert result.profile["Shared"] == "from 2"
    assert result.profile["MemberID"] == 4711
    assert result.profile["Response1"]["Shared"] == "from 1"
    assert result.profile["Response3"]["Items"]["$values"] == [{"Name": "Gold"}]
    assert "TokenResponse" not in result.profile and "access_token" not in result.profile


def test_one_request_gives_its_answer_unchanged_as_before_chaining(idp, finish):
    """A single Profile API keeps today's profile: the answer itself, no Response1 key."""
    config = idp.config(ProfileRequest(idp.url + "/member/4711", headers="X-Key: %Token%"))

    result = finish(config)

    assert result.profile == idp.member
    assert merge_responses([{"a": 1}]) == {"a": 1}


@pytest.mark.parametrize(
    ("template", "check"),
    [
        # URL: percent-encoded, so the value stays one path segment and adds no query.
        ("/member/%Response1:MemberID%?x=%Response1:Evil%", "url"),
        # Form body: form-encoded, so it adds no field.
        ("form", "form"),
        # JSON body: JSON-escaped, so it stays one string.
        ("json", "json"),
    ],
)
def test_a_hostile_value_is_encoded_for_its_context_and_never_read_as_a_template(
    idp, finish, template, check
):
    """A provider's value holding URL, form, JSON and placeholder syntax arrives intact."""
    idp.whoami["Evil"] = HOSTILE
    if check == "url":
        second = ProfileRequest(idp.url + template)
    elif check == "form":
        second = ProfileRequest(
            idp.url + "/member/4711", method="POST", body="who=%Response1:Evil%&next=1"
        )
    else:
        second = ProfileRequest(
            idp.url + "/member/4711",
            method="POST",
            headers="Content-Type: application/json",
            body='{"who": "%Response1:Evil%"}',
        )
    config = idp.config(ProfileRequest(idp.url + "/whoami"), second)

    finish(config)

    (sent,) = idp.received("/member/4711")
    if check == "url":
        assert sent["args"] == {"x": [HOSTILE]}
        assert b"%25Token%25" in sent["raw_query"]
    elif check == "form":
        assert parse_qs(sent["body"].decode()) == {"who": [HOSTILE], "next": ["1"]}
    else:
        assert json.loads(sent["body"]) == {"who": HOSTILE}
    assert ACCESS not in unquote(sent["raw_query"].decode()) + sent["body"].decode()


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (ProfileRequest("{url}/member/%Response1:Missing%"), "found nothing"),
        (ProfileRequest("{url}/member/%Response1:Shared[]%"), "found nothing"),
        (ProfileRequest("{url}/member/%Response1:@%"), "a list or an object"),
        (ProfileRequest("{url}/member/%Response2:MemberID%"), "does not have"),
        (ProfileRequest("{url}/member/%Response7:MemberID%"), "does not have"),
        (ProfileRequest("{url}/member/4711", headers="X-Who: %Response1:Evil%"), "line break"),
    ],
)
def test_a_value_that_cannot_be_read_is_a_template_error_and_nothing_more_is_sent(
    idp, finish, second, reason
):
    """Nothing found, a non-scalar, a later or missing response, a line break in a header."""
    idp.whoami["Evil"] = "x\r\nInjected: 1"
    second = ProfileRequest(
        second.url.format(url=idp.url), method=second.method, headers=second.headers
    )
    config = idp.config(ProfileRequest(idp.url + "/whoami"), second)

    with pytest.raises(TemplateError) as caught:
        finish(config)

    assert reason in caught.value.log_detail
    assert "Injected" not in str(caught.value)
    assert idp.received("/member/4711") == []
    assert caught.value.user_message  # the member's usual failure page has words to show


def test_the_trace_shows_every_request_with_tokens_and_secret_values_redacted(idp, finish):
    """Test this configuration lists each request; the token and a session token never show."""
    trace = Trace()

    finish(idp.config(*idp.three_requests()), trace=trace)

    paths = [entry.url.split("?")[0].removeprefix(idp.url) for entry in trace.entries]
    assert paths == ["/token", "/whoami", "/member/4711", "/groups"]
    shown = json.dumps([vars(e) for e in trace.entries]) + json.dumps(trace.profile)
    assert ACCESS not in shown and SESSION not in shown
    assert ("X-SS-ID", REDACTED) in trace.entries[2].headers
    assert trace.profile["Response1"]["SessionToken"] == REDACTED


def test_the_merged_profile_must_carry_the_id_tokens_subject(idp, finish, make_id_token):
    """The ID token's sub check stays: a chain whose answers name another sub is refused."""
    idp.token_doc["id_token"] = make_id_token(sub="someone-else")
    idp.member["sub"] = "4711"
    config = idp.config(*idp.three_requests())

    with pytest.raises(SubjectMismatch):
        finish(config)
