"""A Personify SSO look-alike: the SSO login page, the SSO and IMS SOAP services, Data Services.

It follows the shapes `portal/sso/personify.py` documents (Personify Online Help 7.7.0, the
``service.asmx`` / ``IMService.asmx`` operation pages), written again here from those pages,
not from Portal's code, so that a sign-in through it checks Portal against the documented
shape:

- ``/SSO/Login.aspx?vi=&vt=``: ``vi`` must be the vendor id and ``vt`` decrypt (AES-CBC,
  PKCS#7, hex; key = Vendor Password, IV = Vendor Block) to ``YYYYMMDDHHMMSSsss|ReturnURL``
  with a UTC timestamp within ``token_window`` seconds; then the sign-in form, and the
  browser goes back to the return URL with ``ct`` = the encrypted ``timestamp|customer token``.
- ``/SSO/webservice/service.asmx`` (SOAP 1.1, ``http://TIMSSSSO/webservice``):
  ``SSOCustomerTokenIsValid`` (single use: a valid token is spent and ``NewCustomerToken``
  returned), ``TIMSSCustomerIdentifierGet`` (``master|sub``), ``SSOCustomerGet``
  (``UserExists``, ``UserName``, ``Email``, ``DisableAccountFlag``).
- ``/IMS/IMService.asmx`` (``http://TIMSSSSO/imswebservice/``): ``IMSCustomerRoleGet``, the
  member's groups as ``CustomerRoles/Role/Value``.
- ``/PersonifyDataServices/PersonifyData.svc/CustomerInfos(MasterCustomerId='…',SubCustomerId=…)``:
  OData JSON ``{"d": {...}}`` behind its own Basic credentials.

Wrong vendor credentials get the documented failure shape: the operation's result with an
``Errors`` list (``<Errors><string>…</string></Errors>``) and no data.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from flask import Flask, Response, redirect, request
from markupsafe import escape as html_escape

from portal.devidp.faults import GENERIC_FAULTS
from portal.devidp.members import Member
from portal.devidp.provider import BaseProvider, Route, endpoint_url
from portal.devidp.responses import add_query, html_page, json_response
from portal.devidp.signin import sign_in

BRAND = "Personify Single Sign-On"
SSO_NS = "http://TIMSSSSO/webservice"
IMS_NS = "http://TIMSSSSO/imswebservice/"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
DEFAULT_VENDOR_PASSWORD = "3f" * 32
DEFAULT_VENDOR_BLOCK = "A39321266122A223EB1B3A23669721B2"
DEFAULT_DATA_SERVICES_PASSWORD = "data-secret"
INVALID_VENDOR = "Invalid vendor credentials."

_ENTITY = re.compile(r"CustomerInfos\(MasterCustomerId='([^']*)',SubCustomerId=(\d+)\)")


@dataclass
class _CustomerToken:
    username: str
    expires_at: float
    used: bool = False


def aes_encrypt_hex(text: str, key_hex: str, block_hex: str) -> str:
    """AES-CBC with PKCS#7 padding, as lower-case hex (what SSO sends and expects)."""
    encryptor = Cipher(
        algorithms.AES(bytes.fromhex(key_hex)), modes.CBC(bytes.fromhex(block_hex))
    ).encryptor()
    padder = padding.PKCS7(128).padder()
    data = padder.update(text.encode("utf-8")) + padder.finalize()
    return (encryptor.update(data) + encryptor.finalize()).hex()


def aes_decrypt_hex(token: str, key_hex: str, block_hex: str) -> str | None:
    """The text of a hex AES-CBC token, or ``None`` when it does not decrypt."""
    try:
        decryptor = Cipher(
            algorithms.AES(bytes.fromhex(key_hex)), modes.CBC(bytes.fromhex(block_hex))
        ).decryptor()
        data = decryptor.update(bytes.fromhex(token)) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(data) + unpadder.finalize()).decode("utf-8")
    except ValueError:
        return None


def sso_timestamp(moment: datetime | None = None) -> str:
    """``YYYYMMDDHHMMSSsss`` in UTC."""
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y%m%d%H%M%S") + f"{moment.microsecond // 1000:03d}"


class PersonifyProvider(BaseProvider):
    """A Personify SSO vendor setup: login page, SSO and IMS SOAP services, Data Services."""

    FAULT_KINDS = {
        "login": frozenset({"slow", "status", "html", "garbage_ct"}),
        "sso_service": GENERIC_FAULTS | {"soap_fault", "doctype", "invalid_token"},
        "ims_service": GENERIC_FAULTS | {"soap_fault", "doctype"},
        "data_services": GENERIC_FAULTS,
    }
    AUTHORIZE_PATH = "/SSO/Login.aspx"

    def __init__(
        self,
        *,
        vendor_id: str = "7",
        vendor_username: str = "portal-vendor",
        vendor_password: str = DEFAULT_VENDOR_PASSWORD,
        vendor_block: str = DEFAULT_VENDOR_BLOCK,
        data_services_username: str = "portal-data",
        data_services_password: str = DEFAULT_DATA_SERVICES_PASSWORD,
        token_window: float = 300.0,
        **options: Any,
    ) -> None:
        """Take the vendor's settings and the options of :class:`BaseProvider` (members...)."""
        self.vendor_id = vendor_id
        self.vendor_username = vendor_username
        self.vendor_password = vendor_password
        self.vendor_block = vendor_block
        self.data_services_username = data_services_username
        self.data_services_password = data_services_password
        self.token_window = token_window
        self._tokens: dict[str, _CustomerToken] = {}
        super().__init__(**options)

    def create_app(self) -> Flask:
        """Build the provider's Flask app."""
        return self.build_app(__name__, ROUTES)

    login_url = endpoint_url("/SSO/Login.aspx", "SSO Login URL of the running server.")
    sso_service_url = endpoint_url(
        "/SSO/webservice/service.asmx", "SSO Web Service URL of the running server."
    )
    ims_service_url = endpoint_url("/IMS/IMService.asmx", "IMS Web Service URL.")
    data_services_url = endpoint_url(
        "/PersonifyDataServices/PersonifyData.svc", "Data Services URL of the running server."
    )

    def clear_grants(self) -> None:
        """Forget every customer token."""
        self._tokens.clear()

    def expire_tokens(self) -> None:
        """Make every issued customer token expired."""
        self.expire_grants(self._tokens)

    def master_id(self, member: Member) -> str:
        """The member's Personify master customer id (``extra["MasterCustomerId"]`` or its id)."""
        return str(member.extra.get("MasterCustomerId") or f"{member.id:012d}")

    def member_by_identifier(self, identifier: str) -> Member | None:
        """The member whose ``master|sub`` (or bare master id) this is."""
        master, _, sub = identifier.partition("|")
        if sub not in ("", "0"):
            return None
        return next((m for m in self.members if self.master_id(m) == master), None)

    def issue_customer_token(self, username: str) -> str:
        """Store and return a new one-time customer token."""
        token = secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = _CustomerToken(username, time.time() + self.token_ttl)
        return token

    def live_token(self, token: str) -> _CustomerToken | None:
        """The unused, unexpired customer token, or ``None``."""
        with self._lock:
            found = self._tokens.get(token)
        if found is None or found.used or found.expires_at < time.time():
            return None
        return found

    def spend_token(self, token: str) -> _CustomerToken | None:
        """Mark a live token used and return it (``None`` when it was not live)."""
        with self._lock:
            found = self._tokens.get(token)
            if found is None or found.used or found.expires_at < time.time():
                return None
            found.used = True
            return found

    def customer_token_for(self, username: str) -> str:
        """The encrypted ``ct`` Personify would send back for this member."""
        token = self.issue_customer_token(username)
        return aes_encrypt_hex(
            f"{sso_timestamp()}|{token}", self.vendor_password, self.vendor_block
        )

    def read_vendor_token(self, vt: str) -> tuple[str | None, str]:
        """(return URL, problem) of a Vendor Token: decrypted, timestamp in the window."""
        text = aes_decrypt_hex(vt, self.vendor_password, self.vendor_block)
        if text is None:
            return None, "The vendor token could not be decrypted."
        stamp, sep, url = text.partition("|")
        if not sep or not re.fullmatch(r"\d{17}", stamp):
            return None, "The vendor token is not a timestamp and a return URL."
        sent = datetime.strptime(stamp[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        if abs(time.time() - sent.timestamp()) > self.token_window:
            return None, "The vendor token has expired."
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return None, "The return URL is not absolute."
        return url, ""


def login(idp: PersonifyProvider) -> Response:
    """The SSO login page: check ``vi`` and ``vt``, sign in, return with ``ct``."""
    vi = request.args.get("vi", "")
    if vi != idp.vendor_id:
        return html_page(BRAND, "<h1>Unknown vendor</h1><p>The vendor is not registered.</p>", 400)
    return_url, problem = idp.read_vendor_token(request.args.get("vt", ""))
    if return_url is None:
        return html_page(BRAND, f"<h1>Invalid request</h1><p>{html_escape(problem)}</p>", 400)

    def back(member: Member) -> Response:
        ct = idp.customer_token_for(member.username)
        if idp.faults.take("login", "garbage_ct"):
            ct = "00" * 32
        return redirect(add_query(return_url, {"ct": ct}))

    return sign_in(idp, BRAND, cancelled=lambda: redirect(return_url), signed_in=back)


# -- SOAP ---------------------------------------------------------------------------------------


def _soap(namespace: str, operation: str, inner: str, status: int = 200) -> Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:soap="{SOAP_NS}"><soap:Body>'
        f'<{operation}Response xmlns="{namespace}"><{operation}Result>{inner}'
        f"</{operation}Result></{operation}Response></soap:Body></soap:Envelope>"
    )
    return Response(body, status=status, content_type="text/xml; charset=utf-8")


def _fault(text: str, code: str = "soap:Server", status: int = 500) -> Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body><soap:Fault>'
        f"<faultcode>{code}</faultcode><faultstring>{escape(text)}</faultstring>"
        "</soap:Fault></soap:Body></soap:Envelope>"
    )
    return Response(body, status=status, content_type="text/xml; charset=utf-8")


def _doctype() -> Response:
    body = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body><x>&lol2;</x></soap:Body>'
        "</soap:Envelope>"
    )
    return Response(body, content_type="text/xml; charset=utf-8")


def _errors(*messages: str) -> str:
    return "<Errors>" + "".join(f"<string>{escape(m)}</string>" for m in messages) + "</Errors>"


def _read_call(namespace: str) -> tuple[str, dict[str, str]] | Response:
    """(operation, parameters) of a SOAP 1.1 request, or the fault a bad request gets."""
    action = request.headers.get("SOAPAction", "").strip('"')
    data = request.get_data()
    if b"<!doctype" in data.lower() or b"<!entity" in data.lower():
        return _fault("DTDs are not accepted.", "soap:Client")
    try:
        # Portal is the only caller; DTDs are refused above, so no entity can expand.
        root = ET.fromstring(data)  # noqa: S314
    except ET.ParseError:
        return _fault("Server was unable to read request.", "soap:Client")
    body = root.find(f"{{{SOAP_NS}}}Body")
    call = next(iter(body), None) if body is not None else None
    if call is None or not call.tag.startswith(f"{{{namespace}}}"):
        return _fault("The request has no operation in the service's namespace.", "soap:Client")
    operation = call.tag.split("}", 1)[1]
    if action != f"{namespace.rstrip('/')}/{operation}":
        return _fault(f"Server did not recognize the value of HTTP Header SOAPAction: {action}.")
    params = {child.tag.split("}", 1)[-1]: (child.text or "") for child in call}
    return operation, params


def _vendor_ok(idp: PersonifyProvider, params: dict[str, str]) -> bool:
    return secrets.compare_digest(
        params.get("vendorUsername", "").encode(), idp.vendor_username.encode()
    ) and secrets.compare_digest(
        params.get("vendorPassword", "").encode(), idp.vendor_password.encode()
    )


def sso_service(idp: PersonifyProvider) -> Response:
    """The SSO web service: token check, customer identifier, customer record."""
    if idp.faults.take("sso_service", "doctype"):
        return _doctype()
    if fault := idp.faults.take("sso_service", "soap_fault"):
        return _fault(str(fault.value or "Simulated fault."))
    call = _read_call(SSO_NS)
    if isinstance(call, Response):
        return call
    operation, params = call
    vendor_ok = _vendor_ok(idp, params)
    if operation == "SSOCustomerTokenIsValid":
        if not vendor_ok:
            return _soap(SSO_NS, operation, _errors(INVALID_VENDOR) + "<Valid>false</Valid>")
        spent = idp.spend_token(params.get("customerToken", ""))
        if idp.faults.take("sso_service", "invalid_token"):
            spent = None
        if spent is None:
            return _soap(SSO_NS, operation, "<Valid>false</Valid><NewCustomerToken />")
        new_token = idp.issue_customer_token(spent.username)
        return _soap(
            SSO_NS,
            operation,
            f"<Valid>true</Valid><NewCustomerToken>{new_token}</NewCustomerToken>",
        )
    if operation == "TIMSSCustomerIdentifierGet":
        if not vendor_ok:
            return _soap(SSO_NS, operation, _errors(INVALID_VENDOR))
        live = idp.live_token(params.get("customerToken", ""))
        member = idp.members.get(live.username) if live else None
        if member is None:
            return _soap(SSO_NS, operation, _errors("Invalid customer token."))
        identifier = f"{idp.master_id(member)}|0"
        return _soap(SSO_NS, operation, f"<CustomerIdentifier>{identifier}</CustomerIdentifier>")
    if operation == "SSOCustomerGet":
        if not vendor_ok:
            return _soap(
                SSO_NS, operation, _errors(INVALID_VENDOR) + "<UserExists>false</UserExists>"
            )
        member = idp.member_by_identifier(params.get("TIMSSCustomerId", ""))
        if member is None:
            return _soap(SSO_NS, operation, "<UserExists>false</UserExists>")
        disabled = "true" if member.extra.get("DisableAccountFlag") else "false"
        return _soap(
            SSO_NS,
            operation,
            "<UserExists>true</UserExists>"
            f"<UserName>{escape(member.username)}</UserName>"
            f"<Email>{escape(member.email or '')}</Email>"
            f"<DisableAccountFlag>{disabled}</DisableAccountFlag>",
        )
    return _fault(f"Server did not recognize the value of HTTP Header SOAPAction: {operation}.")


def ims_service(idp: PersonifyProvider) -> Response:
    """The IMS web service: the customer's roles."""
    if idp.faults.take("ims_service", "doctype"):
        return _doctype()
    if fault := idp.faults.take("ims_service", "soap_fault"):
        return _fault(str(fault.value or "Simulated fault."))
    call = _read_call(IMS_NS)
    if isinstance(call, Response):
        return call
    operation, params = call
    if operation != "IMSCustomerRoleGet":
        return _fault(f"Server did not recognize the value of HTTP Header SOAPAction: {operation}.")
    if not _vendor_ok(idp, params):
        return _soap(IMS_NS, operation, _errors(INVALID_VENDOR))
    live = idp.live_token(params.get("customerToken", ""))
    member = idp.members.get(live.username) if live else None
    if member is None:
        return _soap(IMS_NS, operation, _errors("Invalid customer token."))
    roles = "".join(f"<Role><Value>{escape(g)}</Value></Role>" for g in member.groups)
    return _soap(IMS_NS, operation, f"<CustomerRoles>{roles}</CustomerRoles>")


# -- Data Services ------------------------------------------------------------------------------


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def data_services(idp: PersonifyProvider, entity: str) -> Response:
    """``CustomerInfos(MasterCustomerId='…',SubCustomerId=…)`` as OData JSON, Basic auth."""
    creds = _basic(request.headers.get("Authorization"))
    expected = (idp.data_services_username, idp.data_services_password)
    if creds is None or not (
        secrets.compare_digest(creds[0].encode(), expected[0].encode())
        and secrets.compare_digest(creds[1].encode(), expected[1].encode())
    ):
        return Response(
            "Access is denied.", 401, {"WWW-Authenticate": 'Basic realm="PersonifyData"'}
        )
    match = _ENTITY.fullmatch(entity)
    member = idp.member_by_identifier(f"{match[1]}|{match[2]}") if match else None
    if member is None:
        error = {"code": "", "message": {"lang": "en-US", "value": "Resource not found."}}
        return json_response({"error": error}, 404)
    uri = f"{idp.data_services_url}/{entity}"
    doc: dict[str, Any] = {
        "__metadata": {"uri": uri, "type": "PersonifyDataModel.CustomerInfo"},
        "MasterCustomerId": idp.master_id(member),
        "SubCustomerId": 0,
        "FirstName": member.given_name,
        "LastName": member.family_name,
        "LabelName": " ".join(n for n in (member.given_name, member.family_name) if n),
        "PrimaryEmailAddress": member.email,
    }
    doc.update({k: v for k, v in member.extra.items() if k in ("FirstName", "LastName")})
    return Response(json.dumps({"d": doc}), content_type="application/json;charset=utf-8")


ROUTES = (
    Route("/SSO/Login.aspx", "login", login, ("GET", "POST")),
    Route("/SSO/webservice/service.asmx", "sso_service", sso_service, ("POST",)),
    Route("/IMS/IMService.asmx", "ims_service", ims_service, ("POST",)),
    Route("/PersonifyDataServices/PersonifyData.svc/<path:entity>", "data_services", data_services),
)
