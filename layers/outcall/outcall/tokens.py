"""API bearer tokens: kept only as SHA-256 hashes, compared in constant time.

Command line (also `make tokens ARGS="..."`), with TABLE_NAME (the stack output `TableName`), the
region in AWS_REGION or AWS_DEFAULT_REGION and credentials (AWS_PROFILE, ...) set:
    python -m outcall.tokens create --name ci [--token VALUE]   prints the token once
    python -m outcall.tokens list
    python -m outcall.tokens revoke --name ci | --hash <prefix>
A setting that is missing or wrong is one line on stderr and exit code 2.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys

from outcall.models import ApiToken
from outcall.store import Store, utcnow

TOKEN_PREFIX = "oc_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(store: Store, name: str, token: str | None = None) -> str:
    """Store the hash of a new (or given) token under `name`; returns the token itself."""
    value = token or new_token()
    if len(value) < 16:
        raise ValueError("a token must be at least 16 characters")
    store.put_token(ApiToken(token_hash=hash_token(value), name=name, created_at=utcnow()))
    return value


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(store: Store, header: str | None) -> ApiToken | None:
    """The stored token matching the header, or None. The lookup is by hash; the final
    comparison is constant-time so a near-miss takes as long as a miss."""
    token = bearer(header)
    if token is None:
        return None
    digest = hash_token(token)
    stored = store.get_token(digest)
    if stored is None or not hmac.compare_digest(stored.token_hash, digest):
        return None
    return stored


def revoke(store: Store, *, name: str | None = None, hash_prefix: str | None = None) -> int:
    revoked = 0
    for token in store.list_tokens():
        if (name and token.name == name) or (hash_prefix and token.token_hash.startswith(hash_prefix)):
            revoked += int(store.delete_token(token.token_hash))
    return revoked


PROG = "python -m outcall.tokens"


def _table_name() -> str:
    from outcall import commands

    name = os.environ.get("TABLE_NAME")
    if name:
        return name
    try:
        stack = commands.stack_name()
    except commands.CommandError:
        stack = "<stack>"
    raise commands.CommandError(
        "TABLE_NAME is not set: set it to the deployed stack's table, the output TableName of "
        f"`aws cloudformation describe-stacks --stack-name {stack} --query "
        "\"Stacks[0].Outputs[?OutputKey=='TableName'].OutputValue\" --output text`"
    )


def _main(argv: list[str] | None) -> int:
    import argparse  # imported here: only the command line needs it, not the authorizer

    from botocore.exceptions import ClientError

    from outcall import commands

    parser = argparse.ArgumentParser(prog=PROG, description="Manage outcall API tokens")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--token", help="use this value instead of a random one")
    sub.add_parser("list", help="list tokens (name, hash prefix, creation time)")
    rev = sub.add_parser("revoke", help="revoke tokens by name or hash prefix")
    group = rev.add_mutually_exclusive_group(required=True)
    group.add_argument("--name")
    group.add_argument("--hash", dest="hash_prefix")
    args = parser.parse_args(argv)

    table = _table_name()
    region = commands.use_region()
    store = Store(table)
    try:
        if args.command == "create":
            print(create_token(store, args.name, args.token))
        elif args.command == "list":
            for token in store.list_tokens():
                print(f"{token.name}\t{token.token_hash[:12]}\t{token.created_at.isoformat()}")
        else:
            count = revoke(store, name=args.name, hash_prefix=args.hash_prefix)
            print(f"revoked {count} token(s)")
            return 0 if count else 1
    except ValueError as exc:
        raise commands.CommandError(str(exc)) from exc
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise commands.CommandError(
                f"table {table} not found in region {region}: set TABLE_NAME and AWS_REGION to the deployed stack's"
            ) from exc
        raise
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line: its exit code (2, with one line on stderr, for a setting to fix)."""
    from outcall import commands

    return commands.run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
