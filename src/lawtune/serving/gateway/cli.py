"""`lawtune keys …`: issue and list the API keys the gateway accepts (the file holds hashes only).

    lawtune keys add alice --keys-file keys.yaml --rpm 30 --tpm 20000    # prints the key once
    lawtune keys add ops --keys-file keys.yaml --admin                   # may call /admin/pause|resume|status
    lawtune keys list --keys-file keys.yaml
    lawtune keys remove alice --keys-file keys.yaml                      # revoked at the server's next request
    lawtune serve runs/demo --keys-file keys.yaml --host 0.0.0.0          # picks up new keys without restart
"""

from __future__ import annotations

from pathlib import Path

import typer

keys_app = typer.Typer(help="API keys for `lawtune serve` (hashed in a YAML file, reloaded without restart).",
                       no_args_is_help=True)


@keys_app.command("add")
def add(
    name: str = typer.Argument(..., help="who the key is for (shown in logs and metrics, unlike the key)"),
    keys_file: Path = typer.Option(..., "--keys-file", help="YAML keys file (created if missing)"),
    rpm: int = typer.Option(None, "--rpm", min=1, help="requests per minute for this key (default: the server's)"),
    tpm: int = typer.Option(None, "--tpm", min=1, help="tokens per minute, prompt + completion (default: the server's)"),
    admin: bool = typer.Option(False, "--admin", help="may call /admin/pause, /admin/resume, /admin/status"),
    max_body_bytes: int = typer.Option(None, "--max-body-bytes", min=1024,
                                       help="largest request body for this key (default: the server's)"),
) -> None:
    """Create a key, store its sha256 in the keys file, print the key (the only time it is shown).

    Example: lawtune keys add alice --keys-file keys.yaml --rpm 30
    """
    from lawtune.serving.gateway.keys import add_key

    key = add_key(keys_file, name, rpm, tpm, admin, max_body_bytes)
    typer.echo(key)
    typer.echo(f"added {name!r} to {keys_file}; give the key above to its owner — it is not stored anywhere",
               err=True)


@keys_app.command("remove")
def remove(
    name: str = typer.Argument(..., help="the key's name (`lawtune keys list` shows them)"),
    keys_file: Path = typer.Option(..., "--keys-file", help="YAML keys file"),
) -> None:
    """Revoke a key: a running server refuses it from its next request on (no restart).

    Example: lawtune keys remove alice --keys-file keys.yaml
    """
    from lawtune.serving.gateway.keys import remove_key

    remove_key(keys_file, name)
    typer.echo(f"removed {name!r} from {keys_file}; a running server refuses that key from its next request", err=True)


@keys_app.command("list")
def list_keys(keys_file: Path = typer.Option(..., "--keys-file", help="YAML keys file")) -> None:
    """List key names and limits (never keys).

    Example: lawtune keys list --keys-file keys.yaml
    """
    from lawtune.serving.gateway.keys import read_keys_file

    for digest, key in read_keys_file(keys_file).items():
        rpm = key.requests_per_minute or "default"
        tpm = key.tokens_per_minute or "default"
        body = key.max_body_bytes or "default"
        typer.echo(f"{key.name}\trpm={rpm}\ttpm={tpm}\tmax_body_bytes={body}\tadmin={'yes' if key.admin else 'no'}\tsha256={digest[:12]}…")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
