"""Personify SSO: the vendor token / customer token sign-in, in its named steps.

What this follows (Personify Online Help 7.7.0, SSO section, and the services' own pages):

- *Request Customer Authentication* (``mergedProjects/SSO/Request_Customer_Authentication.htm``):
  the vendor sends the browser to the SSO login page with ``vi`` (the vendor identifier) and
  ``vt``, the Vendor Token ``{timestamp:ReturnURL}K_VendorPassword``: the timestamp
  (``YYYYMMDDHHMMSSsss``) and the absolute return URL, encrypted with the vendor password.
  Its example token is lower-case hexadecimal, 128 digits (four AES blocks).
- *Customer Return from SSO* (``Customer_Return_from_SSO.htm``): the browser comes back to the
  return URL with ``ct``, ``{timestamp:customer_token}K_VendorPassword``, decrypted "using your
  vendor password and initialization block"; the one-time customer token is then checked with
  the web service, whose answer carries the next token in ``NewCustomerToken``.
- *Glossary* (``Glossary.htm``): "SSO uses a 256-bit key and a 16-byte initialization block.
  Passwords and blocks are typically stored as string representations of bytes in hexadecimal
  form". The same help's *SSO Auto Login Page* separates the fields of its token with ``|``
  (``Time Stamp|ReturnURL|...``) and uses the Vendor Password as the key and the Vendor Block
  as the initialization vector: so AES in CBC mode (.NET's Rijndael default) with PKCS#7
  padding (its default too), ``timestamp|URL`` as the text, hex as the encoding. Its glossary's
  own example password is 16 bytes, and .NET picks the key size from the key, so keys of 16,
  24 or 32 bytes are accepted; anything else is refused. A customer token's text is read as 17
  digits, then ``|`` (or the ``:`` of the help's notation), then the token.
- *Web Services for SSO* (``sso/Web_Services.htm``) and the service's operation pages
  (``SSO/webservice/service.asmx?op=...``): SOAP 1.1, namespace ``http://TIMSSSSO/webservice``,
  ``SOAPAction: "http://TIMSSSSO/webservice/<Operation>"``, parameters ``vendorUsername``,
  ``vendorPassword`` then the operation's own (``customerToken``, ``TIMSSCustomerId``), the
  answer ``<Operation>Response/<Operation>Result`` with an ``Errors`` list of ``string``.
  ``SSOCustomerTokenIsValid`` answers ``Valid`` and ``NewCustomerToken``;
  ``TIMSSCustomerIdentifierGet`` answers ``CustomerIdentifier`` (``master|sub``, as the public
  clients split it); ``SSOCustomerGet`` (by ``TIMSSCustomerId``) answers ``UserExists``,
  ``UserName``, ``Email``, ``DisableAccountFlag`` (the shape ``SSOCustomerGetByEmail``'s page
  documents for the same result type).
- *IMS Web Services* (``sso/IMS_Web_Services.htm``) and
  ``IMS/IMService.asmx?op=IMSCustomerRoleGet``: namespace ``http://TIMSSSSO/imswebservice/``,
  the roles as ``CustomerRoles/Role/Value``.
- Personify Data Services (WCF Data Services, OData): ``CustomerInfos(MasterCustomerId='…',
  SubCustomerId=…)`` with its own Basic credentials, answered as ``{"d": {...}}``; first and
  last names are ``FirstName`` and ``LastName``.

Plain envelopes, not zeep: measured on this machine, ``pip download zeep`` brings 12 wheels
(6.0 MB: zeep, lxml, requests, urllib3, attrs, isodate, platformdirs, requests-toolbelt,
requests-file, charset-normalizer, idna, certifi) that take 19 MB installed, and
``import zeep`` costs 141 ms (``python -X importtime``; 0.15 s wall for the process) against
10 ms for ``xml.etree.ElementTree``. Four fixed operations with three string parameters each
do not need a WSDL compiler, and zeep would bring its own HTTP stack beside
``portal/sso/http.py`` (whose address policy, caps and deadlines every call must keep).

Every answer is hostile: XML is parsed by expat with DOCTYPE and entity declarations refused,
names are read by their local part (any namespace prefix), and each field is checked for
presence, type and length before it is used. The vendor password and block, the customer
tokens and the Data Services password are redacted from the trace and from every error.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.parsers import expat
from xml.sax.saxutils import escape as xml_escape

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from portal.sso.engine import SSOResult, map_fields, required_violations
from portal.sso.errors import (
    CustomerTokenInvalid,
    CustomerTokenUnreadable,
    PersonifyKeyInvalid,
    PersonifyServiceError,
    ProviderBadResponse,
    ProviderHTTPError,
    RequiredFieldMissing,
    SubjectMismatch,
)
from portal.sso.http import HttpClient, HttpResponse
from portal.sso.profile_fields import ACCOUNT_FIELDS, FIELD_LABEL, ProfileParam
from portal.sso.trace import SignInSecrets, Trace

log = logging.getLogger(__name__)

#: The SSO web service's namespace (no trailing slash, as its operation pages show it).
SSO_NAMESPACE = "http://TIMSSSSO/webservice"
#: The IMS web service's namespace (with the trailing slash its pages show).
IMS_NAMESPACE = "http://TIMSSSSO/imswebservice/"
SOAP_ENVELOPE_NS = "http://schemas.xmlsoap.org/soap/envelope/"

#: AES key sizes (bytes) a Vendor Password may have; the Vendor Block is one AES block.
KEY_SIZES = (16, 24, 32)
BLOCK_SIZE = 16
#: Longest ``ct`` read (hex digits): a timestamp and a token fit in a few blocks.
MAX_CT_HEX = 4096
#: Longest customer token, identifier part or text field accepted from Personify.
MAX_TOKEN = 512
MAX_FIELD = 320
MAX_ROLES = 500
MAX_ERRORS_SHOWN = 3
#: How deep an answer's XML may nest.
MAX_XML_DEPTH = 32

_TIMESTAMP = re.compile(r"\d{17}")
_TOKEN = re.compile(r"[\x21-\x7e]+")
_MASTER_ID = re.compile(r"[A-Za-z0-9_.-]{1,50}")
_SUB_ID = re.compile(r"\d{1,9}")


@dataclass(frozen=True)
class PersonifyConfig:
    """One Personify SSO system's saved settings, secrets decrypted.

    ``vendor_password`` and ``vendor_block`` are hexadecimal, as Personify hands them out.
    Without an ``ims_web_service_url`` no roles are read; without a ``data_services_url`` no
    names are read.
    """

    slug: str
    sso_login_url: str
    vendor_id: str
    vendor_username: str
    vendor_password: str
    vendor_block: str
    sso_web_service_url: str
    ims_web_service_url: str = ""
    data_services_url: str = ""
    data_services_username: str = ""
    data_services_password: str = ""


# -- the tokens -------------------------------------------------------------------------------


def _hex_bytes(value: str, what: str, sizes: Sequence[int]) -> bytes:
    """Return the bytes of a hexadecimal setting; never echo the value in the error."""
    text = (value or "").strip()
    if not re.fullmatch(r"[0-9A-Fa-f]*", text) or len(text) % 2:
        raise PersonifyKeyInvalid(f"the {what} is not a hexadecimal string")
    raw = bytes.fromhex(text)
    if len(raw) not in sizes:
        expected = " or ".join(str(s) for s in sizes)
        raise PersonifyKeyInvalid(f"the {what} is {len(raw)} bytes long, expected {expected}")
    return raw


def vendor_key_problem(vendor_password_hex: str, vendor_block_hex: str) -> dict[str, str]:
    """Return why the Vendor Password or Vendor Block can't be used, by setting (empty: fine).

    The keys are ``vendor_password`` and ``vendor_block``; a value left empty is not judged
    (the form keeps a stored one). The messages never quote the value.
    """
    problems: dict[str, str] = {}
    checks = (
        ("vendor_password", vendor_password_hex, "Vendor Password", KEY_SIZES),
        ("vendor_block", vendor_block_hex, "Vendor Block", (BLOCK_SIZE,)),
    )
    for key, value, what, sizes in checks:
        if not value:
            continue
        try:
            _hex_bytes(value, what, sizes)
        except PersonifyKeyInvalid as exc:
            digits = " or ".join(str(2 * size) for size in sizes)
            problems[key] = (
                f"{what} must be the hexadecimal string Personify gave you ({digits} hex "
                f"digits): {exc.log_detail}."
            )
    return problems


def _cipher(vendor_password_hex: str, vendor_block_hex: str) -> Cipher:
    key = _hex_bytes(vendor_password_hex, "Vendor Password", KEY_SIZES)
    iv = _hex_bytes(vendor_block_hex, "Vendor Block", (BLOCK_SIZE,))
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def format_timestamp(moment: datetime) -> str:
    """Return Personify's ``YYYYMMDDHHMMSSsss`` (UTC when the moment is aware)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


def encrypt_vendor_token(
    timestamp: datetime | str, return_url: str, vendor_password_hex: str, vendor_block_hex: str
) -> str:
    """Return the Vendor Token: ``timestamp|return URL``, AES-CBC, PKCS#7, lower-case hex."""
    stamp = timestamp if isinstance(timestamp, str) else format_timestamp(timestamp)
    if not _TIMESTAMP.fullmatch(stamp):
        raise ValueError("the timestamp must be 17 digits (YYYYMMDDHHMMSSsss)")
    encryptor = _cipher(vendor_password_hex, vendor_block_hex).encryptor()
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    text = f"{stamp}|{return_url}".encode()
    padded = padder.update(text) + padder.finalize()
    return (encryptor.update(padded) + encryptor.finalize()).hex()


def decrypt_customer_token(ct: str, vendor_password_hex: str, vendor_block_hex: str) -> str:
    """Return the one-time customer token that ``ct`` carries, or raise a typed error.

    The settings are checked first (a bad key is the manager's to fix, not the member's); a
    ``ct`` that is not hex, not whole blocks, does not unpad, is not text, or is not
    ``timestamp|token`` raises `CustomerTokenUnreadable`.
    """
    cipher = _cipher(vendor_password_hex, vendor_block_hex)
    text = (ct or "").strip()
    if not text:
        raise CustomerTokenUnreadable("the return carried no ct")
    if len(text) > MAX_CT_HEX:
        raise CustomerTokenUnreadable(f"ct is {len(text)} characters long (cap {MAX_CT_HEX})")
    if not re.fullmatch(r"[0-9A-Fa-f]+", text) or len(text) % (2 * BLOCK_SIZE):
        raise CustomerTokenUnreadable("ct is not whole AES blocks in hexadecimal")
    decryptor = cipher.decryptor()
    padded = decryptor.update(bytes.fromhex(text)) + decryptor.finalize()
    unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
    try:
        plain = (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise CustomerTokenUnreadable(
            "ct does not decrypt with the Vendor Password and Vendor Block"
        ) from None
    stamp, separator, token = plain[:17], plain[17:18], plain[18:]
    if not _TIMESTAMP.fullmatch(stamp) or separator not in ("|", ":"):
        raise CustomerTokenUnreadable("ct decrypts, but not to a timestamp and a customer token")
    try:
        datetime.strptime(stamp[:14], "%Y%m%d%H%M%S")
    except ValueError:
        raise CustomerTokenUnreadable("ct carries an impossible timestamp") from None
    if not _TOKEN.fullmatch(token) or len(token) > MAX_TOKEN:
        raise CustomerTokenUnreadable("ct decrypts, but its customer token is not usable text")
    return token


def build_login_url(sso_login_url: str, vendor_id: str, vendor_token: str) -> str:
    """Return the SSO Login URL with ``vi`` and ``vt`` added to its query."""
    parts = urlsplit(sso_login_url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k not in ("vi", "vt")]
    query += [("vi", vendor_id), ("vt", vendor_token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def begin_personify_login(
    config: PersonifyConfig, return_url: str, *, now: datetime | None = None
) -> str:
    """Return where the browser goes to sign in: the SSO Login URL with a fresh Vendor Token."""
    moment = now or datetime.now(UTC)
    token = encrypt_vendor_token(moment, return_url, config.vendor_password, config.vendor_block)
    return build_login_url(config.sso_login_url, config.vendor_id, token)


# -- reading hostile XML ------------------------------------------------------------------------


def _local(name: str) -> str:
    """Return the local part of an expat name (``uri local`` with our separator)."""
    return name.rsplit(" ", 1)[-1]


def parse_xml(data: bytes) -> ET.Element:
    """Parse an answer into elements named by their local names; refuse DTDs and entities.

    Expat is driven directly (as defusedxml does) so that a DOCTYPE, an entity declaration or
    an external entity reference stops the parse, and nesting is bounded.
    """
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator=" ")
    depth = 0

    def refuse(*_: Any) -> None:
        raise ProviderBadResponse("the XML answer declares a DOCTYPE or entities (refused)")

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_XML_DEPTH:
            raise ProviderBadResponse(f"the XML answer nests deeper than {MAX_XML_DEPTH}")
        builder.start(_local(name), {_local(k): v for k, v in attrs.items()})

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        builder.end(_local(name))

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
        return builder.close()
    except expat.ExpatError as exc:
        raise ProviderBadResponse(f"the answer is not well-formed XML ({exc.code})") from None
    except AssertionError:
        raise ProviderBadResponse("the answer is not a whole XML document") from None


def _child(parent: ET.Element, name: str) -> ET.Element | None:
    return next((el for el in parent if el.tag == name), None)


def _text(result: ET.Element, name: str, where: str, *, required: bool = True) -> str | None:
    """Return a child's text, stripped; missing/empty is None (or an error when required)."""
    el = _child(result, name)
    if el is not None and len(el):
        raise ProviderBadResponse(f"{where}: {name} holds elements, not text")
    value = (el.text or "").strip() if el is not None else ""
    if len(value) > MAX_FIELD:
        raise ProviderBadResponse(f"{where}: {name} is {len(value)} characters (cap {MAX_FIELD})")
    if not value:
        if required:
            raise ProviderBadResponse(f"{where}: the answer has no {name}")
        return None
    return value


def _flag(result: ET.Element, name: str, where: str, *, default: bool | None = None) -> bool:
    """Return an ``xsd:boolean`` child; missing gives ``default`` (when there is one)."""
    value = _text(result, name, where, required=default is None)
    if value is None:
        assert default is not None
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ProviderBadResponse(f"{where}: {name} is not a boolean")


# -- the SOAP calls -----------------------------------------------------------------------------


def soap_envelope(namespace: str, operation: str, params: Sequence[tuple[str, str]]) -> bytes:
    """Return a SOAP 1.1 request: the operation element in its namespace, one child a param."""
    body = "".join(f"<{name}>{xml_escape(value)}</{name}>" for name, value in params)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_ENVELOPE_NS}">'
        f'<soap:Body><{operation} xmlns="{namespace}">{body}</{operation}></soap:Body>'
        "</soap:Envelope>"
    ).encode()


def _service_errors(result: ET.Element) -> list[str]:
    errors = _child(result, "Errors")
    if errors is None:
        return []
    found = [(el.text or "").strip() for el in errors if el.tag == "string"]
    return [e[:200] for e in found if e]


def _errors_detail(operation: str, errors: list[str]) -> str:
    shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
    more = f" (+{len(errors) - MAX_ERRORS_SHOWN} more)" if len(errors) > MAX_ERRORS_SHOWN else ""
    return f"{operation} answered errors: {shown}{more}"


def call_soap(
    url: str,
    namespace: str,
    operation: str,
    params: Sequence[tuple[str, str]],
    http: HttpClient,
    trace: Trace | None,
) -> ET.Element:
    """POST one SOAP 1.1 operation and return its ``<Operation>Result`` element.

    A SOAP fault or a non-empty ``Errors`` list raises `PersonifyServiceError`; another non-2xx
    status `ProviderHTTPError`; HTML, malformed or DTD-carrying XML, or an answer without the
    result element `ProviderBadResponse`.
    """
    headers = [
        ("Content-Type", "text/xml; charset=utf-8"),
        ("SOAPAction", f'"{namespace.rstrip("/")}/{operation}"'),
        ("Accept", "text/xml"),
    ]
    body = soap_envelope(namespace, operation, params)
    resp = http.request("POST", url, headers=headers, body=body, trace=trace, step="personify_sso")
    return _read_soap_result(resp, operation)


def _read_soap_result(resp: HttpResponse, operation: str) -> ET.Element:
    if 300 <= resp.status < 400:
        raise ProviderHTTPError(resp.status, f"{operation}: redirects are not followed")
    if resp.content_type in ("text/html", "application/xhtml+xml"):
        raise ProviderBadResponse(f"{operation}: HTML instead of XML (HTTP {resp.status})")
    if not resp.content.strip():
        raise ProviderBadResponse(f"{operation}: empty answer (HTTP {resp.status})")
    try:
        root = parse_xml(resp.content)
    except ProviderBadResponse as exc:
        if not 200 <= resp.status < 300:
            raise ProviderHTTPError(resp.status, operation) from None
        raise ProviderBadResponse(f"{operation}: {exc.log_detail}") from None
    body = _child(root, "Body") if root.tag == "Envelope" else None
    if body is None:
        raise ProviderBadResponse(f"{operation}: the answer is not a SOAP envelope")
    fault = _child(body, "Fault")
    if fault is not None:
        code = (getattr(_child(fault, "faultcode"), "text", "") or "").strip()[:100]
        text = (getattr(_child(fault, "faultstring"), "text", "") or "").strip()[:200]
        raise PersonifyServiceError(f"{operation}: SOAP fault {code}: {text}")
    if not 200 <= resp.status < 300:
        raise ProviderHTTPError(resp.status, operation)
    response = _child(body, f"{operation}Response")
    result = _child(response, f"{operation}Result") if response is not None else None
    if result is None:
        raise ProviderBadResponse(f"{operation}: the answer has no {operation}Result")
    return result


def _vendor(config: PersonifyConfig) -> list[tuple[str, str]]:
    return [("vendorUsername", config.vendor_username), ("vendorPassword", config.vendor_password)]


def validate_customer_token(
    config: PersonifyConfig, customer_token: str, http: HttpClient, trace: Trace | None
) -> str:
    """Check the customer token with ``SSOCustomerTokenIsValid``; return ``NewCustomerToken``."""
    op = "SSOCustomerTokenIsValid"
    params = [*_vendor(config), ("customerToken", customer_token)]
    result = call_soap(config.sso_web_service_url, SSO_NAMESPACE, op, params, http, trace)
    errors = _service_errors(result)
    if errors:
        raise PersonifyServiceError(_errors_detail(op, errors))
    if not _flag(result, "Valid", op):
        raise CustomerTokenInvalid(f"{op} answered Valid=false")
    new_token = _text(result, "NewCustomerToken", op)
    assert new_token is not None
    if not _TOKEN.fullmatch(new_token) or len(new_token) > MAX_TOKEN:
        raise ProviderBadResponse(f"{op}: NewCustomerToken is not usable text")
    return new_token


def _result_without_errors(
    url: str,
    namespace: str,
    op: str,
    params: list[tuple[str, str]],
    http: HttpClient,
    trace: Trace | None,
) -> ET.Element:
    result = call_soap(url, namespace, op, params, http, trace)
    errors = _service_errors(result)
    if errors:
        raise PersonifyServiceError(_errors_detail(op, errors))
    return result


@dataclass(frozen=True)
class CustomerIdentifier:
    """Personify's customer number: master and sub customer ids (``master|sub``)."""

    master: str
    sub: str

    def __str__(self) -> str:
        return f"{self.master}|{self.sub}"


def parse_customer_identifier(value: str) -> CustomerIdentifier:
    """Read ``master|sub`` (a missing sub is 0); refuse anything else."""
    master, _, sub = value.partition("|")
    sub = sub or "0"
    if not _MASTER_ID.fullmatch(master) or not _SUB_ID.fullmatch(sub):
        raise ProviderBadResponse("CustomerIdentifier is not of the form master|sub")
    return CustomerIdentifier(master, str(int(sub)))


def fetch_customer_identifier(
    config: PersonifyConfig, customer_token: str, http: HttpClient, trace: Trace | None
) -> CustomerIdentifier:
    """Return the Personify customer number from ``TIMSSCustomerIdentifierGet``."""
    op = "TIMSSCustomerIdentifierGet"
    params = [*_vendor(config), ("customerToken", customer_token)]
    result = _result_without_errors(
        config.sso_web_service_url, SSO_NAMESPACE, op, params, http, trace
    )
    value = _text(result, "CustomerIdentifier", op)
    assert value is not None
    return parse_customer_identifier(value)


def fetch_sso_customer(
    config: PersonifyConfig, identifier: CustomerIdentifier, http: HttpClient, trace: Trace | None
) -> dict[str, str | None]:
    """Return the SSO account's ``UserName`` (required) and ``Email`` from ``SSOCustomerGet``.

    An account that does not exist, or that Personify has disabled, is refused.
    """
    op = "SSOCustomerGet"
    params = [*_vendor(config), ("TIMSSCustomerId", str(identifier))]
    result = _result_without_errors(
        config.sso_web_service_url, SSO_NAMESPACE, op, params, http, trace
    )
    if not _flag(result, "UserExists", op):
        raise PersonifyServiceError(f"{op}: UserExists is false for this customer")
    if _flag(result, "DisableAccountFlag", op, default=False):
        raise PersonifyServiceError(
            f"{op}: the SSO account is disabled",
            user_message=(
                "Your account at the identity provider is disabled. Please contact the "
                "community team."
            ),
        )
    # An account may lack an email address: the profile then has none (must-supply decides).
    return {
        "UserName": _text(result, "UserName", op),
        "Email": _text(result, "Email", op, required=False),
    }


def fetch_customer_roles(
    config: PersonifyConfig, customer_token: str, http: HttpClient, trace: Trace | None
) -> list[str]:
    """Return the customer's roles from ``IMSCustomerRoleGet`` (none without an IMS URL)."""
    if not config.ims_web_service_url:
        return []
    op = "IMSCustomerRoleGet"
    params = [*_vendor(config), ("customerToken", customer_token)]
    result = _result_without_errors(
        config.ims_web_service_url, IMS_NAMESPACE, op, params, http, trace
    )
    container = _child(result, "CustomerRoles")
    if container is None:
        return []
    roles: list[str] = []
    for role in container:
        if role.tag != "Role":
            continue
        value = _text(role, "Value", op, required=False)
        if value is not None and value not in roles:
            roles.append(value)
        if len(roles) > MAX_ROLES:
            raise ProviderBadResponse(f"{op}: more than {MAX_ROLES} roles")
    return roles


def data_services_basic(config: PersonifyConfig) -> str:
    """Return the Data Services ``Authorization`` value (RFC 7617 Basic, UTF-8)."""
    pair = f"{config.data_services_username}:{config.data_services_password}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def customer_info_url(data_services_url: str, identifier: CustomerIdentifier) -> str:
    """Return the OData address of one customer's ``CustomerInfos`` entity."""
    key = f"MasterCustomerId='{identifier.master}',SubCustomerId={identifier.sub}"
    return f"{data_services_url.rstrip('/')}/CustomerInfos({key})"


def fetch_customer_names(
    config: PersonifyConfig, identifier: CustomerIdentifier, http: HttpClient, trace: Trace | None
) -> dict[str, str]:
    """Return ``FirstName`` and ``LastName`` from Data Services (none when it is not set)."""
    if not config.data_services_url:
        return {}
    where = "CustomerInfos"
    headers = [("Authorization", data_services_basic(config)), ("Accept", "application/json")]
    url = customer_info_url(config.data_services_url, identifier)
    resp = http.request("GET", url, headers=headers, trace=trace, step="personify_profile")
    if not 200 <= resp.status < 300:
        raise ProviderHTTPError(resp.status, where)
    if resp.content_type in ("text/html", "application/xhtml+xml"):
        raise ProviderBadResponse(f"{where}: HTML instead of JSON")
    try:
        doc = json.loads(resp.content)
    except (ValueError, UnicodeDecodeError):
        raise ProviderBadResponse(f"{where}: the answer is not JSON") from None
    entity = doc.get("d", doc) if isinstance(doc, dict) else None
    if not isinstance(entity, dict):
        raise ProviderBadResponse(f"{where}: the answer is not an OData entity")
    master = entity.get("MasterCustomerId")
    if master is not None and str(master).strip() != identifier.master:
        raise SubjectMismatch(f"{where}: the entity is another customer's")
    names: dict[str, str] = {}
    for key in ("FirstName", "LastName"):
        value = entity.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ProviderBadResponse(f"{where}: {key} is not text")
        if len(value) > MAX_FIELD:
            raise ProviderBadResponse(f"{where}: {key} is {len(value)} characters")
        if value.strip():
            names[key] = value.strip()
    return names


# -- the whole return -------------------------------------------------------------------------


def _keep_secrets(seen: SignInSecrets, *values: str | None) -> None:
    """Register secrets and the XML-escaped form they take inside an envelope."""
    for value in values:
        if value:
            seen.keep(value, xml_escape(value))


def finish_personify_login(
    config: PersonifyConfig, ct: str, http: HttpClient, trace: Trace | None = None
) -> dict[str, Any]:
    """Complete a return from Personify SSO and return the member's flat profile.

    The steps: decrypt ``ct``, check the customer token (keeping ``NewCustomerToken`` for the
    calls after), read the customer number, the SSO account, the IMS roles and, when Data
    Services is set, the names. The profile: ``MasterCustomerId``, ``SubCustomerId``,
    ``CustomerIdentifier`` (``master|sub``), ``UserName``, ``Email``, ``Roles`` (a list) and,
    when known, ``FirstName`` and ``LastName``: what the profile parameters' JMESPaths read.
    """
    seen = SignInSecrets(trace)
    _keep_secrets(seen, config.vendor_password, config.vendor_block, ct)
    _keep_secrets(seen, config.data_services_password)
    if config.data_services_password:
        pair = f"{config.data_services_username}:{config.data_services_password}"
        _keep_secrets(seen, pair, data_services_basic(config))
    with seen.failures_reported(log, config.slug, "Personify sign-in"):
        customer_token = decrypt_customer_token(ct, config.vendor_password, config.vendor_block)
        _keep_secrets(seen, customer_token)
        token = validate_customer_token(config, customer_token, http, trace)
        _keep_secrets(seen, token)
        identifier = fetch_customer_identifier(config, token, http, trace)
        account = fetch_sso_customer(config, identifier, http, trace)
        roles = fetch_customer_roles(config, token, http, trace)
        names = fetch_customer_names(config, identifier, http, trace)
        profile: dict[str, Any] = {
            "MasterCustomerId": identifier.master,
            "SubCustomerId": identifier.sub,
            "CustomerIdentifier": str(identifier),
            **{k: v for k, v in account.items() if v is not None},
            **names,
            "Roles": roles,
        }
        if trace is not None:
            trace.profile = trace.redact_doc(profile)
        return profile


def personify_result(
    profile: dict[str, Any], params: Mapping[str, ProfileParam], *, enforce_required: bool = True
) -> SSOResult:
    """Map a Personify profile through the profile parameters into what account resolution reads.

    As ``engine.finish_login`` does for OAuth 2.0: a missing User ID or must-supply field
    raises `RequiredFieldMissing`, or with ``enforce_required`` off (the test screen) is listed
    in ``violations``. Personify vouches for no email address (no ``email_verified``): an
    upgrade by email needs the manager's "This provider verifies email addresses".
    """
    fields = map_fields(profile, params)
    result = SSOResult(
        subject=fields["user_id"] or "",
        fields=fields,
        missing_required=[FIELD_LABEL[key] for key in ACCOUNT_FIELDS if fields[key] is None],
        token_response={},
        profile=profile,
        violations=required_violations(fields, params),
    )
    if enforce_required and result.violations:
        raise RequiredFieldMissing(result.violations[0])
    return result
