"""Loopback identity providers for development and tests (never started in production).

- :class:`OIDCProvider` / :func:`create_oidc_app`: a standards-shaped OpenID Connect provider.
- :class:`AMSProvider` / :func:`create_ams_app`: an association-management-system provider
  with non-standard quirks (JSON-only token endpoint, ``X-Api-Key`` profile API).
- :class:`PersonifyProvider`: a Personify SSO look-alike (vendor token, SOAP services, OData).
- :class:`YourMembershipProvider`: YourMembership's OAuth code, Authenticate session and
  MemberProfile (PascalCase, .NET dates).
- :class:`IMISProvider`: iMIS's token, ``/api/user``, ``/api/party`` and ``/api/GroupMember``
  (``$type``/``$values``).
- :class:`NoviProvider`: Novi AMS's OpenID Connect SSO at its paths, Permitted Groups.
- :class:`MemberClicksProvider`: MemberClicks' OAuth 2.0 (HTTP Basic token call) and
  ``/api/v1/profile/me`` with bracketed attribute names.
- :class:`MembesProvider`: Membes' SSO login form, its GET token call, member details.
- :class:`LiveServer` / :func:`serve` / :func:`closed_port_url`: the background runner.
"""

from portal.devidp.ams import AMSProvider, create_ams_app
from portal.devidp.client import RegisteredClient
from portal.devidp.faults import Fault, Faults
from portal.devidp.imis import IMISProvider
from portal.devidp.memberclicks import MemberClicksProvider
from portal.devidp.members import Member, Members, demo_members
from portal.devidp.membes import MembesProvider
from portal.devidp.novi import NoviProvider
from portal.devidp.oidc import OIDCProvider, create_oidc_app
from portal.devidp.oidc_authority import s256
from portal.devidp.personify import PersonifyProvider
from portal.devidp.provider import AuthorizeFailed
from portal.devidp.request_log import RecordedRequest, RequestLog
from portal.devidp.server import LiveServer, closed_port_url, serve
from portal.devidp.yourmembership import YourMembershipProvider

__all__ = [
    "AMSProvider",
    "AuthorizeFailed",
    "Fault",
    "Faults",
    "IMISProvider",
    "LiveServer",
    "Member",
    "MemberClicksProvider",
    "Members",
    "MembesProvider",
    "NoviProvider",
    "OIDCProvider",
    "PersonifyProvider",
    "RecordedRequest",
    "RegisteredClient",
    "RequestLog",
    "YourMembershipProvider",
    "closed_port_url",
    "create_ams_app",
    "create_oidc_app",
    "demo_members",
    "s256",
    "serve",
]
