"""`ragbus keys` (the tenants' API keys) and `ragbus gateway` (run the HTTP gateway); plugged into the
`ragbus` CLI through the `ragbus.cli` entry points.

    ragbus keys create --tenant acme --name web    prints the key once; only its hash is stored
    ragbus keys create --tenant acme --scope ask   a key that may ask and nothing else (403 elsewhere)
    ragbus keys list [--tenant acme] [--all]       ids, tenants, names, created, last used (no secrets)
    ragbus keys revoke 3f2a9c0d1e7b                refused from then on (within GATEWAY_KEY_CACHE_S)
    ragbus gateway [--port 8090]                   serve the API (GATEWAY_* settings)

The keys live in the gateway's schema (GATEWAY_DATABASE_URL or DATABASE_URL, GATEWAY_DB_SCHEMA), which
the command migrates first, as the gateway does at startup.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ragbus.client.errors import CliError
from ragbus.common.errors import DependencyUnavailable
from ragbus.common.events import Group
from ragbus.common.logging import setup_logging
from ragbus.gateway.adapters.postgres import PostgresKeyStore
from ragbus.gateway.keys import new_key, scopes_of
from ragbus.gateway.ports import SCOPES, ApiKey
from ragbus.gateway.settings import GatewaySettings

T = TypeVar("T")


def _run(work: Callable[[PostgresKeyStore], Awaitable[T]]) -> T:
    settings = GatewaySettings()
    setup_logging(settings.log)  # to stderr: stdout carries the key, for `KEY=$(ragbus keys create ...)`

    async def main() -> T:
        store = await PostgresKeyStore.open(settings)
        try:
            return await work(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(main())
    except DependencyUnavailable as exc:
        raise CliError(f"cannot reach the gateway's database: {exc}") from None


def _row(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "tenant": key.tenant,
        "name": key.name,
        "groups": list(key.groups),
        "rate_per_minute": key.rate_per_minute,
        "scopes": list(key.scopes),
        "created_at": key.created_at.isoformat() if key.created_at else None,
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@click.group()
def keys() -> None:
    """API keys of the HTTP gateway, one tenant each (stored hashed)."""


@keys.command()
@click.option("--tenant", required=True, help="The tenant every request with this key acts for.")
@click.option("--name", help="What the key is for (shown in lists).")
@click.option(
    "--group",
    "groups",
    multiple=True,
    help="A group the key's questions ask as (retrieval sees documents shared with it); repeatable.",
)
@click.option(
    "--rate-per-minute", type=click.IntRange(min=1), help="This key's rate limit (default: GATEWAY_)."
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="|".join(SCOPES),
    help="What the key may do (repeatable, or comma-separated): ask (chat completions, feedback), ingest "
    "(documents), audit (requests' stories and traces). Default: all of them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key and its record as JSON.")
def create(
    tenant: str,
    name: str | None,
    groups: tuple[str, ...],
    rate_per_minute: int | None,
    scopes: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a key for TENANT and print it (once: only its hash is stored)."""
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(list[Group]).validate_python(list(groups))
        TypeAdapter(Group).validate_python(tenant)
    except ValidationError as exc:
        raise CliError(f"not a valid tenant or group: {exc.errors()[0]['msg']}") from None
    try:
        allowed = scopes_of(scopes) if scopes else SCOPES
    except ValueError as exc:
        raise CliError(str(exc)) from None
    new = new_key()
    stored = _run(
        lambda s: s.create(
            new, tenant, name=name, groups=groups, rate_per_minute=rate_per_minute, scopes=allowed
        )
    )
    if as_json:
        click.echo(json.dumps({"key": new.key, **_row(stored)}, indent=2))
        return
    click.echo(new.key)
    click.secho(
        f"key {stored.key_id} for tenant {tenant}: keep it now, it is not shown again "
        f"(`ragbus keys revoke {stored.key_id}` ends it)",
        err=True,
        dim=True,
    )


@keys.command(name="list")
@click.option("--tenant", help="Only this tenant's keys.")
@click.option("--all", "include_revoked", is_flag=True, help="Revoked keys too.")
@click.option("--json", "as_json", is_flag=True)
def list_keys(tenant: str | None, include_revoked: bool, as_json: bool) -> None:
    """The keys (never their secrets)."""
    found = _run(lambda s: s.list(tenant, include_revoked=include_revoked))
    if as_json:
        click.echo(json.dumps([_row(k) for k in found], indent=2))
        return
    if not found:
        click.echo("no keys" + (f" for tenant {tenant}" if tenant else ""))
        return
    for k in found:
        used = f"last used {k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never used"
        state = f"  REVOKED {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else ""
        name = f"  {k.name}" if k.name else ""
        groups = f"  groups {','.join(k.groups)}" if k.groups else ""
        scopes = f"  scopes {','.join(k.scopes)}" if k.scopes != SCOPES else ""
        click.echo(
            f"{k.key_id}  {k.tenant}{name}{groups}{scopes}  created {k.created_at:%Y-%m-%d %H:%M}  "
            f"{used}{state}"
        )


@keys.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by its id (the 12 hex digits after `rbk_`)."""
    if not _run(lambda s: s.revoke(key_id.removeprefix("rbk_").split("_")[0])):
        raise CliError(f"no active key {key_id}")
    click.echo(f"key {key_id} revoked")


@click.command()
@click.option("--host", help="Address to bind (default GATEWAY_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default GATEWAY_PORT, 8090).")
def gateway(host: str | None, port: int | None) -> None:
    """Run the HTTP gateway (OpenAI-compatible API) in the foreground until Ctrl-C."""
    from ragbus.gateway.app import create_app

    settings = GatewaySettings()
    changes = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    app = create_app(settings.model_copy(update=changes))
    asyncio.run(app.run())
