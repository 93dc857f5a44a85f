"""Which network addresses Portal may call: identity providers live on the public internet.

A provider URL pointing at loopback, a private or link-local network, CGNAT, unique-local IPv6
or a cloud metadata service would let whoever saves a configuration (or whoever controls a
provider's DNS) read internal services through Portal (SSRF). `AddressPolicy` says which
addresses are refused; the save-time check (`host_problem`) refuses literal addresses and
well-known internal names, and the connection-time check (`check_address`, on every address a
name resolves to) refuses the rest, so DNS rebinding cannot get through.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Networks no identity provider is reached at, with the reason a manager reads.
BLOCKED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), why)
    for cidr, why in (
        ("0.0.0.0/8", "a 'this network' address"),
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private network address"),
        ("172.16.0.0/12", "a private network address"),
        ("192.168.0.0/16", "a private network address"),
        ("100.64.0.0/10", "a carrier-grade NAT (CGNAT) address"),
        ("169.254.0.0/16", "a link-local address (cloud metadata services live there)"),
        ("192.0.0.0/24", "an IETF protocol assignment address"),
        ("198.18.0.0/15", "a benchmarking network address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("fc00::/7", "a unique-local IPv6 address"),
        ("fe80::/10", "a link-local IPv6 address"),
        ("ff00::/8", "a multicast address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("fd00:ec2::254/128", "a cloud metadata address"),
    )
)
LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
#: Host names that always mean this machine or a cloud metadata service.
INTERNAL_NAMES: frozenset[str] = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
LOCAL_NAMES: frozenset[str] = frozenset({"localhost", "localhost.localdomain"})


class AddressRefused(ValueError):
    """An address or host the policy does not allow Portal to connect to."""


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Parse comma- or space-separated CIDRs (``PORTAL_ALLOWED_PRIVATE_NETWORKS``)."""
    networks = []
    for item in text.replace(",", " ").split():
        networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


def _unmapped(address: IPAddress) -> IPAddress:
    """Return the IPv4 address inside an IPv4-mapped or 6to4/NAT64-embedded IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _host_name(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def parse_ip(host: str) -> IPAddress | None:
    """Return ``host`` as an IP address when it is one (``[::1]`` and ``::1`` alike)."""
    try:
        return ipaddress.ip_address(_host_name(host).split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses outbound calls may reach.

    ``allow_loopback`` lets development reach a provider on this machine;
    ``allowed_networks`` are the operator's exceptions (an on-premises AMS, say).
    """

    allow_loopback: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def address_problem(self, address: IPAddress | str) -> str | None:
        """Return why an IP address is refused, or ``None`` when it may be reached."""
        if isinstance(address, str):
            parsed = parse_ip(address)
            if parsed is None:
                return "not an IP address"
            address = parsed
        address = _unmapped(address)
        if any(address in net for net in self.allowed_networks if net.version == address.version):
            return None
        if self.allow_loopback and any(
            address in net for net in LOOPBACK_NETWORKS if net.version == address.version
        ):
            return None
        for net, why in BLOCKED_NETWORKS:
            if net.version == address.version and address in net:
                return why
        if not address.is_global and not address.is_private:
            # Anything else the standard library knows to be non-public (documentation ranges,
            # reserved blocks) is no provider either.
            return "a reserved address"
        return None

    def host_problem(self, host: str) -> str | None:
        """Return why a URL's host is refused at save time, or ``None``.

        Literal addresses and well-known internal names are judged now; other names are
        judged again at connection time, on every address they resolve to.
        """
        name = _host_name(host)
        if not name:
            return "no host"
        address = parse_ip(name)
        if address is not None:
            return self.address_problem(address)
        if name in LOCAL_NAMES or name.endswith(".localhost"):
            return None if self.allow_loopback else "a loopback address"
        if name in INTERNAL_NAMES or name.endswith(".internal"):
            return "an internal or cloud metadata host"
        return None

    def check_addresses(self, host: str, addresses: Iterable[str]) -> list[str]:
        """Return the addresses of ``host`` that may be reached; raise when any is refused.

        Every resolved address is checked, not only the first: a name that resolves to one
        public and one internal address is refused as a whole.
        """
        allowed: list[str] = []
        for raw in addresses:
            problem = self.address_problem(raw)
            if problem:
                raise AddressRefused(f"{_host_name(host)} resolves to {problem}")
            allowed.append(raw)
        if not allowed:
            raise AddressRefused(f"{_host_name(host)} has no address")
        return allowed
