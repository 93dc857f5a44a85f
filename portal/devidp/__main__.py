"""Run a loopback identity provider in the foreground with demo members.

    python -m portal.devidp --port 5001 --client-id demo --client-secret s3cret \
        --redirect-uri http://127.0.0.1:5000/sso/demo/callback
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import threading
from collections.abc import Sequence

from portal.devidp.ams import AMSProvider
from portal.devidp.memberclicks import MemberClicksProvider
from portal.devidp.members import demo_members
from portal.devidp.membes import MembesProvider
from portal.devidp.novi import NoviProvider
from portal.devidp.oidc import OIDCProvider
from portal.devidp.provider import BaseProvider

#: The platform look-alikes ``--kind`` serves, each at its documented paths.
PLATFORMS: dict[str, type[BaseProvider]] = {
    "novi": NoviProvider,
    "memberclicks": MemberClicksProvider,
    "membes": MembesProvider,
}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m portal.devidp",
        description="Development identity provider for Portal (never for production).",
    )
    parser.add_argument(
        "--kind",
        choices=("oidc", "ams", *PLATFORMS),
        default="oidc",
        help="which provider to serve (default: oidc; novi, memberclicks and membes are the "
        "look-alikes of those platforms, to try their presets against)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--issuer", help="issuer URL (default: http://HOST:PORT)")
    parser.add_argument("--client-id", default="demo")
    parser.add_argument("--client-secret", default="demo-secret")
    parser.add_argument(
        "--client-secret-file",
        help="read the client secret from this file (keeps it out of the process list)",
    )
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        required=True,
        help="allowed redirect URI (repeatable)",
    )
    parser.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        default=[],
        help="allowed post-logout redirect URI (repeatable; default: any)",
    )
    return parser


def build_provider(args: argparse.Namespace) -> BaseProvider:
    """The provider described by ``args``, with the demo members."""
    members = demo_members()
    hint = "Demo members: " + ", ".join(f"{m.username} / {m.password}" for m in members)
    provider: BaseProvider
    if args.kind in PLATFORMS:
        provider = PLATFORMS[args.kind](
            client_id=args.client_id,
            client_secret=args.client_secret,
            redirect_uris=args.redirect_uri,
            members=members,
            login_hint=hint,
        )
    elif args.kind == "ams":
        provider = AMSProvider(
            client_id=args.client_id,
            client_secret=args.client_secret,
            redirect_uris=args.redirect_uri,
            members=members,
            login_hint=hint,
        )
    else:
        provider = OIDCProvider(
            client_id=args.client_id,
            client_secret=args.client_secret,
            redirect_uris=args.redirect_uri,
            members=members,
            issuer=args.issuer or (f"http://{args.host}:{args.port}" if args.port else None),
            login_hint=hint,
        )
    provider.client.post_logout_redirect_uris = list(args.post_logout_redirect_uri)
    return provider


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted."""
    args = build_parser().parse_args(argv)
    if args.client_secret_file:
        with open(args.client_secret_file, encoding="utf-8") as handle:
            args.client_secret = handle.read().strip()
    if not _is_loopback(args.host):
        print("devidp only binds loopback addresses; it is a development tool.", file=sys.stderr)
        return 2
    provider = build_provider(args)
    from portal.devidp.server import LiveServer

    provider.server = LiveServer(provider.app, host=args.host, port=args.port, quiet=False)
    provider.start()
    print(f"devidp ({args.kind}) serving on {provider.url}", flush=True)
    if isinstance(provider, OIDCProvider):
        print(f"  discovery: {provider.url}/.well-known/openid-configuration", flush=True)
    for m in provider.members:
        print(f"  member {m.username} / {m.password}  groups={m.groups}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        provider.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
