"""The loopback Personify over real loopback HTTP, driven as a vendor's own code would drive it.

Nothing here uses Portal's engine: tokens are made with `cryptography`'s primitives and SOAP
envelopes are written out by hand, so these tests pin the fake to the documented shapes.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from portal.devidp import PersonifyProvider, demo_members

from .helpers import query_of

KEY = "00112233445566778899aabbccddeeff" * 2
BLOCK = "A39321266122A223EB1B3A23669721B2"
RETURN = "https://portal.example/sso/acme/callback?state=abc"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
SSO_NS = "http://TIMSSSSO/webservice"
IMS_NS = "http://TIMSSSSO/imswebservice/"


def encrypt(text: str) -> str:
    padder = padding.PKCS7(128).padder()
    data = padder.update(text.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(bytes.fromhex(KEY)), modes.CBC(bytes.fromhex(BLOCK))).encryptor()
    return (enc.update(data) + enc.finalize()).hex()


def decrypt(token: str) -> str:
    dec = Cipher(algorithms.AES(bytes.fromhex(KEY)), modes.CBC(bytes.fromhex(BLOCK))).decryptor()
    data = dec.update(bytes.fromhex(token)) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(data) + unpadder.finalize()).decode()


def stamp(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


@pytest.fixture
def personify() -> Iterator[PersonifyProvider]:
    with PersonifyProvider(
        members=demo_members(), vendor_id="42", vendor_password=KEY, vendor_block=BLOCK
    ) as idp:
        yield idp


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        yield client


def login_url(idp: PersonifyProvider, vt: str | None = None, vi: str = "42") -> str:
    vt = vt if vt is not None else encrypt(f"{stamp()}|{RETURN}")
    return f"{idp.login_url}?{urlencode({'vi': vi, 'vt': vt})}"


def customer_token(idp: PersonifyProvider, username: str = "jdoe") -> str:
    """Sign in at the login page and return the decrypted one-time customer token."""
    ct = query_of(idp.authorize_redirect(login_url(idp), username))["ct"]
    when, sep, token = decrypt(ct).partition("|")
    assert sep == "|" and re.fullmatch(r"\d{17}", when)
    return token


def call(
    http: httpx.Client,
    url: str,
    op: str,
    ns: str = SSO_NS,
    *,
    action: str | None = None,
    **params: str,
) -> httpx.Response:
    """POST a hand-written SOAP 1.1 envelope."""
    params = {"vendorUsername": "portal-vendor", "vendorPassword": KEY, **params}
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in params.items())
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}"><soap:Body>'
        f'<{op} xmlns="{ns}">{inner}</{op}></soap:Body></soap:Envelope>'
    )
    headers = {
        "Content-Type": "text/xml; charset=utf-8",
        "SOAPAction": f'"{action or ns.rstrip("/") + "/" + op}"',
    }
    return http.post(url, content=body, headers=headers)


def result(resp: httpx.Response, op: str, ns: str = SSO_NS) -> ET.Element:
    """The ``<op>Result`` element, checking the documented nesting and namespace."""
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(resp.content)
    found = root.find(f"{{{SOAP}}}Body/{{{ns}}}{op}Response/{{{ns}}}{op}Result")
    assert found is not None, resp.text
    return found


def text(el: ET.Element, name: str, ns: str = SSO_NS) -> str | None:
    child = el.find(f"{{{ns}}}{name}")
    return None if child is None else (child.text or "")


def errors(el: ET.Element, ns: str = SSO_NS) -> list[str]:
    return [s.text or "" for s in el.findall(f"{{{ns}}}Errors/{{{ns}}}string")]


# -- the login page -----------------------------------------------------------------------------


def test_login_page_shows_the_form_and_returns_with_an_encrypted_customer_token(
    personify: PersonifyProvider, http: httpx.Client
) -> None:
    page = http.get(login_url(personify))
    assert page.status_code == 200
    assert '<label for="username">' in page.text and '<label for="password">' in page.text
    back = personify.authorize_redirect(login_url(personify), "jdoe")
    assert back.startswith(RETURN + "&ct=")
    assert re.fullmatch(r"[0-9a-f]+", query_of(back)["ct"])
    assert len(customer_token(personify)) >= 16


@pytest.mark.parametrize(
    ("vi", "make_vt", "says"),
    [
        ("41", lambda: None, "Unknown vendor"),
        ("42", lambda: "00" * 32, "could not be decrypted"),
        ("42", lambda: "not-hex", "could not be decrypted"),
        (
            "42",
            lambda: encrypt(f"{stamp(datetime.now(UTC) - timedelta(minutes=10))}|{RETURN}"),
            "expired",
        ),
        ("42", lambda: encrypt(f"{stamp()}|/relative/path"), "not absolute"),
        ("42", lambda: encrypt(f"nonsense|{RETURN}"), "not a timestamp"),
    ],
    ids=["wrong vendor", "garbage", "not hex", "expired", "relative return", "no timestamp"],
)
def test_login_page_refuses_a_bad_vendor_request(
    personify: PersonifyProvider, http: httpx.Client, vi: str, make_vt, says: str
) -> None:
    # Tokens are made when the test runs: the timestamp must be fresh, not the collection's.
    page = http.get(login_url(personify, make_vt(), vi))
    assert page.status_code == 400
    assert says in page.text


# -- the SSO service ----------------------------------------------------------------------------


def test_customer_token_is_single_use_and_valid_answers_the_next_one(
    personify: PersonifyProvider, http: httpx.Client
) -> None:
    token = customer_token(personify)
    first = result(
        call(http, personify.sso_service_url, "SSOCustomerTokenIsValid", customerToken=token),
        "SSOCustomerTokenIsValid",
    )
    assert text(first, "Valid") == "true"
    new_token = text(first, "NewCustomerToken")
    assert new_token and new_token != token
    replay = result(
        call(http, personify.sso_service_url, "SSOCustomerTokenIsValid", customerToken=token),
        "SSOCustomerTokenIsValid",
    )
    assert text(replay, "Valid") == "false" and not text(replay, "NewCustomerToken")
    again = result(
        call(http, personify.sso_service_url, "SSOCustomerTokenIsValid", customerToken=new_token),
        "SSOCustomerTokenIsValid",
    )
    assert text(again, "Valid") == "true"


def test_identifier_and_customer_record_in_their_documented_fields(
    personify: PersonifyProvider, http: httpx.Client
) -> None:
    token = customer_token(personify)
    ident = result(
        call(http, personify.sso_service_url, "TIMSSCustomerIdentifierGet", customerToken=token),
        "TIMSSCustomerIdentifierGet",
    )
    identifier = text(ident, "CustomerIdentifier")
    assert identifier == f"{personify.members['jdoe'].id:012d}|0"
    record = result(
        call(http, personify.sso_service_url, "SSOCustomerGet", TIMSSCustomerId=identifier),
        "SSOCustomerGet",
    )
    assert text(record, "UserExists") == "true"
    assert text(record, "UserName") == "jdoe"
    assert text(record, "Email") == "jane.doe@example.org"
    assert text(record, "DisableAccountFlag") == "false"
    unknown = result(
        call(http, personify.sso_service_url, "SSOCustomerGet", TIMSSCustomerId="999|0"),
        "SSOCustomerGet",
    )
    assert text(unknown, "UserExists") == "false"


@pytest.mark.parametrize(
    "op", ["SSOCustomerTokenIsValid", "TIMSSCustomerIdentifierGet", "SSOCustomerGet"]
)
def test_wrong_vendor_credentials_get_the_errors_list(
    personify: PersonifyProvider, http: httpx.Client, op: str
) -> None:
    token = customer_token(personify)
    resp = call(
        http,
        personify.sso_service_url,
        op,
        vendorPassword="ff" * 32,
        customerToken=token,
        TIMSSCustomerId="1|0",
    )
    assert errors(result(resp, op)) == ["Invalid vendor credentials."]
    # The refused call did not spend the token.
    ok = call(http, personify.sso_service_url, "SSOCustomerTokenIsValid", customerToken=token)
    assert text(result(ok, "SSOCustomerTokenIsValid"), "Valid") == "true"


def test_a_soapaction_that_does_not_name_the_operation_is_a_fault(
    personify: PersonifyProvider, http: httpx.Client
) -> None:
    resp = call(
        http,
        personify.sso_service_url,
        "SSOCustomerTokenIsValid",
        action="http://TIMSSSSO/webservice/SSOCustomerLogout",
        customerToken="x",
    )
    assert resp.status_code == 500
    assert ET.fromstring(resp.content).find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault") is not None


def test_a_request_with_a_dtd_is_refused(personify: PersonifyProvider, http: httpx.Client) -> None:
    body = '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'
    resp = http.post(personify.sso_service_url, content=body, headers={"SOAPAction": '""'})
    assert resp.status_code == 500 and "DTDs are not accepted" in resp.text


# -- IMS and Data Services ----------------------------------------------------------------------


def test_ims_answers_the_members_groups_as_roles(
    personify: PersonifyProvider, http: httpx.Client
) -> None:
    token = customer_token(personify)
    roles = result(
        call(http, personify.ims_service_url, "IMSCustomerRoleGet", IMS_NS, customerToken=token),
        "IMSCustomerRoleGet",
        IMS_NS,
    )
    values = [
        v.text
        for v in roles.findall(f"{{{IMS_NS}}}CustomerRoles/{{{IMS_NS}}}Role/{{{IMS_NS}}}Value")
    ]
    assert values == ["WEBINARS", "LIBRARY"]


def test_data_services_answers_odata_json_behind_basic_auth(
    personify: PersonifyProvider, http: httpx.Client
) -> None:
    master = f"{personify.members['jdoe'].id:012d}"
    url = (
        f"{personify.data_services_url}/CustomerInfos(MasterCustomerId='{master}',SubCustomerId=0)"
    )
    assert http.get(url).status_code == 401
    wrong = base64.b64encode(b"portal-data:nope").decode()
    assert http.get(url, headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    good = base64.b64encode(b"portal-data:data-secret").decode()
    resp = http.get(url, headers={"Authorization": f"Basic {good}", "Accept": "application/json"})
    assert resp.status_code == 200
    entity = resp.json()["d"]
    assert entity["MasterCustomerId"] == master and entity["SubCustomerId"] == 0
    assert entity["FirstName"] == "Jane" and entity["LastName"] == "Doe"
    missing = url.replace(master, "999")
    assert http.get(missing, headers={"Authorization": f"Basic {good}"}).status_code == 404
