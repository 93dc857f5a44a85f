"""Personify SSO engine: the tokens, the SOAP answers as an attacker would shape them, the flow.

The crypto is checked against vectors computed here with `cryptography`'s primitives; the flow
against the loopback Personify (`portal/devidp/personify.py`), which implements the documented
shapes on its own; hostile answers come from canned loopback responses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from werkzeug.wrappers import Request, Response

from portal.devidp import PersonifyProvider, demo_members
from portal.sso.engine import map_fields
from portal.sso.errors import (
    CustomerTokenInvalid,
    CustomerTokenUnreadable,
    PersonifyKeyInvalid,
    PersonifyServiceError,
    ProviderBadResponse,
    ProviderHTTPError,
    SSOError,
    SubjectMismatch,
)
from portal.sso.http import HttpClient
from portal.sso.personify import (
    PersonifyConfig,
    begin_personify_login,
    build_login_url,
    decrypt_customer_token,
    encrypt_vendor_token,
    finish_personify_login,
    parse_xml,
)
from portal.sso.profile_fields import ProfileParam
from portal.sso.trace import Trace
from tests.support.servers import App, LoopbackServer

KEY = bytes(range(32)).hex()
BLOCK = "A39321266122A223EB1B3A23669721B2"
RETURN_URL = "https://portal.example/sso/acme/callback?state=s%2B1&x=é"
STAMP = "20261202153045123"


def reference_encrypt(text: str | bytes, key_hex: str = KEY, block_hex: str = BLOCK) -> str:
    """AES-CBC + PKCS#7 + hex, straight from the primitives (not the code under test)."""
    raw = text.encode() if isinstance(text, str) else text
    padder = padding.PKCS7(128).padder()
    data = padder.update(raw) + padder.finalize()
    cipher = Cipher(algorithms.AES(bytes.fromhex(key_hex)), modes.CBC(bytes.fromhex(block_hex)))
    encryptor = cipher.encryptor()
    return (encryptor.update(data) + encryptor.finalize()).hex()


def reference_decrypt(token: str, key_hex: str = KEY, block_hex: str = BLOCK) -> str:
    cipher = Cipher(algorithms.AES(bytes.fromhex(key_hex)), modes.CBC(bytes.fromhex(block_hex)))
    decryptor = cipher.decryptor()
    data = decryptor.update(bytes.fromhex(token)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(data) + unpadder.finalize()).decode()


# -- the tokens ---------------------------------------------------------------------------------


def test_vendor_token_is_timestamp_pipe_return_url_aes_cbc_in_lower_hex() -> None:
    """The Vendor Token equals AES-CBC/PKCS#7 of ``timestamp|URL`` under the hex key and block."""
    token = encrypt_vendor_token(STAMP, RETURN_URL, KEY, BLOCK)
    assert token == reference_encrypt(f"{STAMP}|{RETURN_URL}")
    assert token == token.lower() and len(token) % 32 == 0


def test_vendor_token_timestamp_is_utc_with_milliseconds() -> None:
    """A datetime becomes ``YYYYMMDDHHMMSSsss`` in UTC."""
    eastern = datetime(2026, 12, 2, 5, 30, 45, 123456, tzinfo=timezone(timedelta(hours=-5)))
    token = encrypt_vendor_token(eastern, "https://x.example/", KEY, BLOCK)
    assert reference_decrypt(token) == "20261202103045123|https://x.example/"


@pytest.mark.parametrize("key", [KEY, KEY[:32], KEY[:48]], ids=["aes256", "aes128", "aes192"])
def test_customer_token_decrypts_to_the_one_time_token(key: str) -> None:
    """``ct`` = AES(``timestamp|token``) gives the token back, whatever AES key size."""
    ct = reference_encrypt(f"{STAMP}|9f1c2d3e-token", key)
    assert decrypt_customer_token(ct, key, BLOCK) == "9f1c2d3e-token"
    assert decrypt_customer_token(ct.upper(), key.upper(), BLOCK.lower()) == "9f1c2d3e-token"


def test_customer_token_with_the_helps_colon_notation_is_read() -> None:
    """The help writes ``{timestamp:customer_token}``; a colon separator is read too."""
    assert decrypt_customer_token(reference_encrypt(f"{STAMP}:tok-1"), KEY, BLOCK) == "tok-1"


@pytest.mark.parametrize(
    ("key", "block", "says"),
    [
        ("zz" * 32, BLOCK, "Vendor Password is not a hexadecimal"),
        (KEY[:-1], BLOCK, "Vendor Password is not a hexadecimal"),
        ("ab" * 20, BLOCK, "Vendor Password is 20 bytes long"),
        ("", BLOCK, "Vendor Password is 0 bytes long"),
        (KEY, BLOCK[:16], "Vendor Block is 8 bytes long"),
        (KEY, "g" * 32, "Vendor Block is not a hexadecimal"),
    ],
)
def test_bad_vendor_key_or_block_is_a_settings_error(key: str, block: str, says: str) -> None:
    """A key or block that is not the hex AES needs is the manager's error, value never shown."""
    for call in (
        lambda: encrypt_vendor_token(STAMP, RETURN_URL, key, block),
        lambda: decrypt_customer_token(reference_encrypt(f"{STAMP}|t"), key, block),
    ):
        with pytest.raises(PersonifyKeyInvalid) as caught:
            call()
        assert says in caught.value.log_detail
        assert (
            caught.value.user_message
            == "The sign-in settings for this identity provider are invalid."
        )
        for value in (key, block):
            if value:
                assert value not in str(caught.value)


_GOOD_CT = reference_encrypt(f"{STAMP}|tok-1")
_FLIPPED = _GOOD_CT[:-2] + format(int(_GOOD_CT[-2:], 16) ^ 0x01, "02x")

TAMPERED = {
    "empty": "",
    "not hex": "xyz" * 22,
    "odd length": _GOOD_CT[:-1],
    "not whole blocks": "00" * 15,
    "zero blocks": "00" * 32,
    "last byte flipped": _FLIPPED,
    "another key": reference_encrypt(f"{STAMP}|tok-1", "11" * 32),
    "no timestamp": reference_encrypt("hello|tok-1"),
    "impossible timestamp": reference_encrypt("20261399250000000|tok-1"),
    "no separator": reference_encrypt(f"{STAMP}tok-1"),
    "empty token": reference_encrypt(f"{STAMP}|"),
    "token with a space": reference_encrypt(f"{STAMP}|to ken"),
    "token too long": reference_encrypt(f"{STAMP}|" + "t" * 600),
    "not UTF-8": reference_encrypt(STAMP.encode() + b"|tok\xff\xfe"),
    "huge": "00" * 5000,
}


@pytest.mark.parametrize("ct", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_or_garbage_ct_is_unreadable(ct: str) -> None:
    """Anything but ``timestamp|token`` under the vendor key: a plain message, no secret shown."""
    with pytest.raises(CustomerTokenUnreadable) as caught:
        decrypt_customer_token(ct, KEY, BLOCK)
    exc = caught.value
    assert exc.user_message == (
        "The sign-in response from the identity provider could not be read. Please start the "
        "sign-in again."
    )
    assert exc.retryable and exc.page_status == 400
    for secret in (KEY, BLOCK, "tok-1"):
        assert secret not in str(exc) and secret not in exc.user_message
    if ct:
        assert ct not in str(exc)


def test_login_url_carries_vi_and_vt_beside_its_own_query() -> None:
    """``vi`` and ``vt`` are added to the SSO Login URL's query (encoded), nothing lost."""
    url = build_login_url("https://sso.example/SSO/Login.aspx?lang=en&vi=old", "12", "ab cd")
    parts = urlsplit(url)
    assert parts.path == "/SSO/Login.aspx"
    assert parse_qs(parts.query) == {"lang": ["en"], "vi": ["12"], "vt": ["ab cd"]}


def test_begin_personify_login_points_at_the_sso_login_page_with_a_fresh_vendor_token() -> None:
    """The login URL's vt decrypts to now and the return URL."""
    config = _config(sso_login_url="https://sso.example/SSO/Login.aspx", vendor_id="7")
    now = datetime(2026, 12, 2, 15, 30, 45, 123000, tzinfo=UTC)
    url = begin_personify_login(config, RETURN_URL, now=now)
    query = parse_qs(urlsplit(url).query)
    assert query["vi"] == ["7"]
    assert reference_decrypt(query["vt"][0]) == f"{STAMP}|{RETURN_URL}"


# -- hostile XML --------------------------------------------------------------------------------

HOSTILE_XML = {
    "internal entities": b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "bb"><!ENTITY c "&b;&b;">]>'
    b"<a>&c;</a>",
    "external entity": b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<a>&x;</a>",
    "external DTD": b'<!DOCTYPE a SYSTEM "http://169.254.169.254/dtd"><a/>',
    "parameter entity": b'<!DOCTYPE a [<!ENTITY % p SYSTEM "http://x/">%p;]><a/>',
    "not XML": b"{'Valid': true}",
    "two roots": b"<a/><b/>",
    "too deep": b"<a>" * 40 + b"</a>" * 40,
}


@pytest.mark.parametrize("data", HOSTILE_XML.values(), ids=HOSTILE_XML.keys())
def test_hostile_xml_is_refused(data: bytes) -> None:
    """DOCTYPEs, entities, malformed or deeply nested documents are a bad response."""
    with pytest.raises(ProviderBadResponse):
        parse_xml(data)


def test_xml_is_read_by_local_names_whatever_the_prefixes() -> None:
    """Namespaces and prefixes are dropped: ``s:Body`` and ``Body`` read the same."""
    root = parse_xml(
        b'<s:Envelope xmlns:s="urn:x"><s:Body><r:Op xmlns:r="urn:y"><V>1</V></r:Op>'
        b"</s:Body></s:Envelope>"
    )
    assert root.tag == "Envelope"
    assert root.find("Body/Op/V").text == "1"


# -- the flow, against the loopback Personify ---------------------------------------------------


def _config(**changes: str) -> PersonifyConfig:
    base = PersonifyConfig(
        slug="acme",
        sso_login_url="https://sso.example/SSO/Login.aspx",
        vendor_id="7",
        vendor_username="portal-vendor",
        vendor_password=KEY,
        vendor_block=BLOCK,
        sso_web_service_url="https://sso.example/SSO/webservice/service.asmx",
    )
    return replace(base, **changes)


@pytest.fixture
def personify() -> Iterator[PersonifyProvider]:
    """The loopback Personify with the demo members (jdoe: two groups; mo: none)."""
    with PersonifyProvider(members=demo_members(), vendor_password=KEY, vendor_block=BLOCK) as idp:
        yield idp


def config_for(idp: PersonifyProvider, **changes: str) -> PersonifyConfig:
    """The settings a manager would save for this Personify."""
    values = dict(
        sso_login_url=idp.login_url,
        vendor_id=idp.vendor_id,
        vendor_username=idp.vendor_username,
        vendor_password=idp.vendor_password,
        vendor_block=idp.vendor_block,
        sso_web_service_url=idp.sso_service_url,
        ims_web_service_url=idp.ims_service_url,
        data_services_url=idp.data_services_url,
        data_services_username=idp.data_services_username,
        data_services_password=idp.data_services_password,
    )
    return _config(**{**values, **changes})


def sign_in_at(idp: PersonifyProvider, config: PersonifyConfig, username: str = "jdoe") -> str:
    """Go through the SSO login page as ``username``; return the ``ct`` it sends back."""
    back = idp.authorize_redirect(begin_personify_login(config, RETURN_URL), username)
    assert back.startswith("https://portal.example/sso/acme/callback?")
    return parse_qs(urlsplit(back).query)["ct"][0]


def secrets_of(idp: PersonifyProvider, config: PersonifyConfig, ct: str) -> list[str]:
    """Every secret a sign-in meets: vendor key and block, ct, customer tokens, Data Services."""
    return [
        config.vendor_password,
        config.vendor_block,
        ct,
        *idp._tokens,
        config.data_services_password,
        "cG9ydGFsLWRhdGE6ZGF0YS1zZWNyZXQ=",  # base64 of portal-data:data-secret
    ]


def rendered(trace: Trace, exc: BaseException | None = None) -> str:
    text = json.dumps(asdict(trace), default=str)
    if isinstance(exc, SSOError):
        text += f"{exc}\n{exc.log_detail}\n{exc.user_message}"
    return text


def test_sign_in_returns_a_flat_profile_that_profile_parameters_read(
    personify: PersonifyProvider, http: HttpClient
) -> None:
    """A member who signs in comes back with ids, username, email, names and roles as a list."""
    config = config_for(personify)
    trace = Trace()
    profile = finish_personify_login(config, sign_in_at(personify, config), http, trace)
    master = f"{personify.members['jdoe'].id:012d}"
    assert profile == {
        "MasterCustomerId": master,
        "SubCustomerId": "0",
        "CustomerIdentifier": f"{master}|0",
        "UserName": "jdoe",
        "Email": "jane.doe@example.org",
        "FirstName": "Jane",
        "LastName": "Doe",
        "Roles": ["WEBINARS", "LIBRARY"],
    }
    params = {
        "user_id": ProfileParam("CustomerIdentifier"),
        "username": ProfileParam("UserName"),
        "email": ProfileParam("Email"),
        "first_name": ProfileParam("FirstName"),
        "last_name": ProfileParam("LastName"),
        "groups": ProfileParam("Roles"),
    }
    fields = map_fields(profile, params)
    assert fields["user_id"] == f"{master}|0" and fields["groups"] == ["WEBINARS", "LIBRARY"]
    assert [e.url.rsplit("/", 1)[-1] for e in trace.entries] == [
        "service.asmx",
        "service.asmx",
        "service.asmx",
        "IMService.asmx",
        f"CustomerInfos(MasterCustomerId='{master}',SubCustomerId=0)",
    ]
    assert trace.profile == profile


def test_calls_after_the_check_use_the_new_customer_token(
    personify: PersonifyProvider, http: HttpClient
) -> None:
    """The checked token is spent; identifier and roles are asked with ``NewCustomerToken``."""
    config = config_for(personify)
    ct = sign_in_at(personify, config)
    first = decrypt_customer_token(ct, KEY, BLOCK)
    finish_personify_login(config, ct, http)
    sso_calls = personify.requests.all("sso_service")
    assert f"<customerToken>{first}</customerToken>".encode() in sso_calls[0].body
    for later in (sso_calls[1], personify.requests.last("ims_service")):
        assert first.encode() not in later.body and b"<customerToken>" in later.body


def test_member_without_roles_gets_an_empty_list(
    personify: PersonifyProvider, http: HttpClient
) -> None:
    """No IMS role is an empty Roles list; a member without a last name has no LastName."""
    config = config_for(personify)
    profile = finish_personify_login(config, sign_in_at(personify, config, "mo"), http)
    assert profile["Roles"] == []
    assert profile["FirstName"] == "Mo" and "LastName" not in profile


def test_without_data_services_the_names_are_absent_not_an_error(
    personify: PersonifyProvider, http: HttpClient
) -> None:
    """Data Services is optional: no URL, no call, no names."""
    config = config_for(personify, data_services_url="")
    profile = finish_personify_login(config, sign_in_at(personify, config), http)
    assert "FirstName" not in profile and "LastName" not in profile
    assert profile["Email"] == "jane.doe@example.org"
    assert personify.requests.all("data_services") == []


def test_without_an_ims_url_there_are_no_roles(
    personify: PersonifyProvider, http: HttpClient
) -> None:
    config = config_for(personify, ims_web_service_url="")
    profile = finish_personify_login(config, sign_in_at(personify, config), http)
    assert profile["Roles"] == []
    assert personify.requests.all("ims_service") == []


def test_a_replayed_ct_is_refused(personify: PersonifyProvider, http: HttpClient) -> None:
    """Customer tokens are single use: the same ``ct`` a second time is an expired sign-in."""
    config = config_for(personify)
    ct = sign_in_at(personify, config)
    finish_personify_login(config, ct, http)
    with pytest.raises(CustomerTokenInvalid) as caught:
        finish_personify_login(config, ct, http)
    assert caught.value.user_message == (
        "Your sign-in at the identity provider has expired or was already used. Please sign "
        "in again."
    )
    assert caught.value.retryable


def test_a_token_personify_calls_invalid_stops_the_sign_in(
    personify: PersonifyProvider, http: HttpClient
) -> None:
    """``Valid=false``: a typed error, and no customer data is asked for."""
    config = config_for(personify)
    ct = sign_in_at(personify, config)
    personify.faults.set("sso_service", "invalid_token", times=1)
    with pytest.raises(CustomerTokenInvalid):
        finish_personify_login(config, ct, http)
    assert len(personify.requests.all("sso_service")) == 1
    assert personify.requests.all("ims_service") == []


def test_wrong_vendor_credentials_name_personifys_errors_for_the_manager(
    personify: PersonifyProvider, http: HttpClient
) -> None:
    """The documented ``Errors`` list ends the sign-in; the log detail quotes it."""
    config = config_for(personify, vendor_username="someone-else")
    with pytest.raises(PersonifyServiceError) as caught:
        finish_personify_login(config, sign_in_at(personify, config), http)
    assert "Invalid vendor credentials." in caught.value.log_detail
    assert caught.value.user_message == "The identity provider refused the sign-in request."


def test_ct_that_does_not_decrypt_calls_nothing(
    personify: PersonifyProvider, http: HttpClient
) -> None:
    config = config_for(personify)
    personify.faults.set("login", "garbage_ct")
    with pytest.raises(CustomerTokenUnreadable):
        finish_personify_login(config, sign_in_at(personify, config), http)
    assert personify.requests.all("sso_service") == []


@pytest.mark.parametrize(
    ("endpoint", "fault", "error"),
    [
        ("sso_service", "soap_fault", PersonifyServiceError),
        ("sso_service", "doctype", ProviderBadResponse),
        ("sso_service", "html", ProviderBadResponse),
        ("sso_service", "status", ProviderHTTPError),
        ("ims_service", "soap_fault", PersonifyServiceError),
        ("ims_service", "doctype", ProviderBadResponse),
        ("data_services", "html", ProviderBadResponse),
        ("data_services", "status", ProviderHTTPError),
        ("data_services", "garbage", ProviderBadResponse),
    ],
)
def test_a_misbehaving_service_ends_in_a_typed_error(
    personify: PersonifyProvider, http: HttpClient, endpoint: str, fault: str, error: type
) -> None:
    config = config_for(personify)
    ct = sign_in_at(personify, config)
    personify.faults.set(endpoint, fault)
    with pytest.raises(error):
        finish_personify_login(config, ct, http)


def test_data_services_gets_its_own_basic_credentials(
    personify: PersonifyProvider, http: HttpClient
) -> None:
    """Data Services is called with Basic base64(username:password), not the vendor's."""
    config = config_for(personify)
    finish_personify_login(config, sign_in_at(personify, config), http)
    call = personify.requests.last("data_services")
    assert call.headers["Authorization"] == "Basic cG9ydGFsLWRhdGE6ZGF0YS1zZWNyZXQ="
    assert call.headers["Accept"] == "application/json"


def test_wrong_data_services_password_is_an_http_error_without_the_password(
    personify: PersonifyProvider, http: HttpClient
) -> None:
    config = config_for(personify, data_services_password="not-the-password")
    trace = Trace()
    with pytest.raises(ProviderHTTPError) as caught:
        finish_personify_login(config, sign_in_at(personify, config), http, trace)
    assert caught.value.status == 401
    assert "not-the-password" not in rendered(trace, caught.value)


def test_secrets_never_reach_the_trace_or_the_log_on_success(
    personify: PersonifyProvider, http: HttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = config_for(personify)
    trace = Trace()
    ct = sign_in_at(personify, config)
    finish_personify_login(config, ct, http, trace)
    text = rendered(trace) + caplog.text
    assert "[redacted]" in text
    for secret in secrets_of(personify, config, ct):
        assert secret not in text


@pytest.mark.parametrize(
    "fault", [("sso_service", "soap_fault"), ("ims_service", "soap_fault"), ("login", "garbage_ct")]
)
def test_secrets_never_reach_the_trace_the_error_or_the_log_on_failure(
    personify: PersonifyProvider,
    http: HttpClient,
    caplog: pytest.LogCaptureFixture,
    fault: tuple[str, str],
) -> None:
    """Even a fault that echoes the request's secrets shows none of them."""
    caplog.set_level(logging.DEBUG)
    config = config_for(personify)
    ct = sign_in_at(personify, config)
    if fault[0] == "login":
        personify.faults.set(*fault)
        ct = sign_in_at(personify, config)
    else:
        # A service that quotes the secrets back in its fault message.
        personify.faults.set(*fault, f"bad call with {config.vendor_password} and {ct}")
    trace = Trace()
    with pytest.raises(SSOError) as caught:
        finish_personify_login(config, ct, http, trace)
    text = rendered(trace, caught.value) + caplog.text
    assert trace.error_code == caught.value.code
    for secret in secrets_of(personify, config, ct):
        assert secret not in text


# -- hostile answers, canned --------------------------------------------------------------------

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def envelope(op: str, inner: str, ns: str = "http://TIMSSSSO/webservice") -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}"><soap:Body>'
        f'<{op}Response xmlns="{ns}"><{op}Result>{inner}</{op}Result></{op}Response>'
        "</soap:Body></soap:Envelope>"
    )


GOOD = {
    "SSOCustomerTokenIsValid": envelope(
        "SSOCustomerTokenIsValid", "<Valid>true</Valid><NewCustomerToken>tok-2</NewCustomerToken>"
    ),
    "TIMSSCustomerIdentifierGet": envelope(
        "TIMSSCustomerIdentifierGet", "<CustomerIdentifier>000123|0</CustomerIdentifier>"
    ),
    "SSOCustomerGet": envelope(
        "SSOCustomerGet",
        "<UserExists>true</UserExists><UserName>kim</UserName><Email>kim@example.org</Email>"
        "<DisableAccountFlag>false</DisableAccountFlag>",
    ),
    "IMSCustomerRoleGet": envelope(
        "IMSCustomerRoleGet",
        "<CustomerRoles><Role><Value>A</Value></Role><Role><Value>B</Value></Role></CustomerRoles>",
        "http://TIMSSSSO/imswebservice/",
    ),
    "CustomerInfos": json.dumps({"d": {"MasterCustomerId": "000123", "FirstName": "Kim"}}),
}


@pytest.fixture
def canned(serve: Callable[..., LoopbackServer]) -> Callable[..., PersonifyConfig]:
    """Serve the four services with GOOD answers, overridden per operation."""

    def start(**answers: Response | str) -> PersonifyConfig:
        table = {**GOOD, **answers}
        app = App()

        def reply(op: str, content_type: str) -> Response:
            answer = table[op]
            return (
                answer
                if isinstance(answer, Response)
                else Response(answer, 200, None, content_type)
            )

        @app.route("/sso")
        def sso(request: Request) -> Response:
            op = request.headers.get("SOAPAction", "").strip('"').rsplit("/", 1)[-1]
            return reply(op, "text/xml; charset=utf-8")

        @app.route("/ims")
        def ims(request: Request) -> Response:
            return reply("IMSCustomerRoleGet", "text/xml; charset=utf-8")

        @app.route("/data/CustomerInfos(MasterCustomerId='000123',SubCustomerId=0)")
        def data(request: Request) -> Response:
            return reply("CustomerInfos", "application/json")

        server = serve(app)
        return _config(
            sso_web_service_url=server.url_for("/sso"),
            ims_web_service_url=server.url_for("/ims"),
            data_services_url=server.url_for("/data"),
            data_services_username="u",
            data_services_password="data-pass-1",
        )

    return start


def test_canned_good_answers_give_the_profile(canned, http: HttpClient) -> None:
    profile = finish_personify_login(canned(), _GOOD_CT, http)
    assert profile["Roles"] == ["A", "B"] and profile["FirstName"] == "Kim"
    assert profile["CustomerIdentifier"] == "000123|0"


def _valid(inner: str) -> str:
    return envelope("SSOCustomerTokenIsValid", inner)


HOSTILE_ANSWERS = {
    "html": {"SSOCustomerTokenIsValid": Response("<html>down</html>", 200, None, "text/html")},
    "empty": {"SSOCustomerTokenIsValid": Response("", 200, None, "text/xml")},
    "doctype": {
        "SSOCustomerTokenIsValid": '<!DOCTYPE x [<!ENTITY a "true">]>'
        + _valid("<Valid>&a;</Valid><NewCustomerToken>t</NewCustomerToken>").replace(
            '<?xml version="1.0" encoding="utf-8"?>', ""
        )
    },
    "no result": {"SSOCustomerTokenIsValid": envelope("SomethingElse", "<Valid>true</Valid>")},
    "not an envelope": {"SSOCustomerTokenIsValid": "<Valid>true</Valid>"},
    "valid not boolean": {"SSOCustomerTokenIsValid": _valid("<Valid>maybe</Valid>")},
    "valid missing": {"SSOCustomerTokenIsValid": _valid("<NewCustomerToken>t</NewCustomerToken>")},
    "valid holds elements": {"SSOCustomerTokenIsValid": _valid("<Valid><b>true</b></Valid>")},
    "no new token": {"SSOCustomerTokenIsValid": _valid("<Valid>true</Valid>")},
    "huge new token": {
        "SSOCustomerTokenIsValid": _valid(
            "<Valid>true</Valid><NewCustomerToken>" + "t" * 5000 + "</NewCustomerToken>"
        )
    },
    "identifier not master|sub": {
        "TIMSSCustomerIdentifierGet": envelope(
            "TIMSSCustomerIdentifierGet", "<CustomerIdentifier>x')/Other|y</CustomerIdentifier>"
        )
    },
    "identifier missing": {
        "TIMSSCustomerIdentifierGet": envelope("TIMSSCustomerIdentifierGet", "")
    },
    "user exists missing": {"SSOCustomerGet": envelope("SSOCustomerGet", "<UserName>k</UserName>")},
    "role too long": {
        "IMSCustomerRoleGet": envelope(
            "IMSCustomerRoleGet",
            "<CustomerRoles><Role><Value>" + "r" * 400 + "</Value></Role></CustomerRoles>",
            "http://TIMSSSSO/imswebservice/",
        )
    },
    "names not JSON": {"CustomerInfos": "<d/>"},
    "first name a number": {"CustomerInfos": json.dumps({"d": {"FirstName": 7}})},
    "entity a list": {"CustomerInfos": json.dumps({"d": [1, 2]})},
}


@pytest.mark.parametrize("answers", HOSTILE_ANSWERS.values(), ids=HOSTILE_ANSWERS.keys())
def test_hostile_answers_are_bad_responses_never_crashes(canned, http, answers) -> None:
    """Missing, empty, huge or mistyped fields and hostile XML each raise ProviderBadResponse."""
    with pytest.raises(ProviderBadResponse) as caught:
        finish_personify_login(canned(**answers), _GOOD_CT, http)
    assert (
        caught.value.user_message == "The identity provider sent an answer we could not understand."
    )


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (Response("oops", 500, None, "text/plain"), ProviderHTTPError),
        (Response("", 302, {"Location": "https://elsewhere/"}), ProviderHTTPError),
        (
            Response(
                f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body><soap:Fault><faultcode>soap:Client'
                "</faultcode><faultstring>Bad</faultstring></soap:Fault></soap:Body></soap:Envelope>",
                500,
                None,
                "text/xml",
            ),
            PersonifyServiceError,
        ),
        (
            _valid("<Errors><string>Vendor locked.</string></Errors><Valid>false</Valid>"),
            PersonifyServiceError,
        ),
        (_valid("<Valid>false</Valid><NewCustomerToken/>"), CustomerTokenInvalid),
    ],
    ids=["500", "redirect", "soap fault", "errors list", "valid false"],
)
def test_status_faults_and_refusals_have_their_own_errors(canned, http, answer, error) -> None:
    with pytest.raises(error):
        finish_personify_login(canned(SSOCustomerTokenIsValid=answer), _GOOD_CT, http)


def test_an_account_personify_disabled_is_refused_with_its_own_words(canned, http) -> None:
    answer = envelope(
        "SSOCustomerGet",
        "<UserExists>true</UserExists><UserName>k</UserName><Email>k@x</Email>"
        "<DisableAccountFlag>true</DisableAccountFlag>",
    )
    with pytest.raises(PersonifyServiceError) as caught:
        finish_personify_login(canned(SSOCustomerGet=answer), _GOOD_CT, http)
    assert "disabled" in caught.value.user_message


def test_an_account_without_email_gives_a_profile_without_email(canned, http) -> None:
    """A missing or empty Email is absent from the profile, not an error; UserName is required."""
    answer = envelope(
        "SSOCustomerGet", "<UserExists>true</UserExists><UserName>k</UserName><Email/>"
    )
    profile = finish_personify_login(canned(SSOCustomerGet=answer), _GOOD_CT, http)
    assert "Email" not in profile and profile["UserName"] == "k"
    answer = envelope("SSOCustomerGet", "<UserExists>true</UserExists><Email>k@x</Email>")
    with pytest.raises(ProviderBadResponse):
        finish_personify_login(canned(SSOCustomerGet=answer), _GOOD_CT, http)


def test_names_of_another_customer_are_refused(canned, http) -> None:
    other = json.dumps({"d": {"MasterCustomerId": "999", "FirstName": "Eve"}})
    with pytest.raises(SubjectMismatch):
        finish_personify_login(canned(CustomerInfos=other), _GOOD_CT, http)
