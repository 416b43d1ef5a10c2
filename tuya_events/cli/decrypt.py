"""``tuya-events decrypt``: decrypt one message by hand, the first thing to try when in doubt."""

from __future__ import annotations

import argparse
import base64
import os
import sys
from typing import Any

import orjson

from tuya_events.cli.exits import DATA_ERROR, USAGE, CliError
from tuya_events.config import load_settings
from tuya_events.config.settings import Settings, catalogue_path
from tuya_events.observability.redact import REDACTOR
from tuya_events.tuya.codec import (
    EM_ECB,
    EM_GCM,
    EM_PROPERTY,
    TuyaCodec,
    encryption_mode,
    parse_protocol,
)
from tuya_events.tuya.devices import UNKNOWN_DEVICE
from tuya_events.tuya.errors import BAD_ENVELOPE, BAD_JSON, UNKNOWN_EM, DecodeError
from tuya_events.tuya.events import Event, build_event

SECRET_ENV = "TUYA_ACCESS_SECRET"
SECRET_LENGTH = 24  # the AES-128 key is the secret's characters 8..24


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "decrypt",
        parents=parents,
        help="decrypt one Tuya message (envelope JSON, WebSocket frame or bare base64 data)",
        description="Decrypt one message and print the decrypted JSON document. INPUT is the "
        "envelope JSON, a Pulsar WebSocket frame (payload + properties), a bare base64 'data' "
        f"string, or '-' for stdin. The secret comes from --access-secret, ${SECRET_ENV}, or "
        "the configuration (-c).",
    )
    parser.add_argument("input", metavar="INPUT", help="the message, or - to read stdin")
    parser.add_argument(
        "--access-secret", metavar="S", help=f"the access secret (or ${SECRET_ENV})"
    )
    parser.add_argument(
        "--em",
        choices=(EM_GCM, EM_ECB),
        help="encryption mode: the message's 'em' property (default: the frame's, else aes_ecb)",
    )
    parser.add_argument("--event", action="store_true", help="print the typed event instead")
    parser.set_defaults(handler=run)


def _secret(args: argparse.Namespace) -> tuple[str, str]:
    """The access secret and where it came from (for an error that names the source)."""
    if args.access_secret:
        return args.access_secret, "--access-secret"
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV], f"${SECRET_ENV}"
    if args.config:
        secret = load_settings(args.config).tuya.access_secret
        return secret.get_secret_value(), "tuya.access_secret"
    raise CliError(
        f"no access secret: pass --access-secret, set ${SECRET_ENV}, or give -c CONFIG", USAGE
    )


def _codec(args: argparse.Namespace) -> TuyaCodec:
    """A codec for the given secret; a secret that cannot make the AES key is a usage error
    (the message never quotes the secret)."""
    secret, source = _secret(args)
    if len(secret) < SECRET_LENGTH or not secret.isascii():
        raise CliError(
            f"{source} is not an access secret: Tuya's are {SECRET_LENGTH}+ ASCII characters "
            "(the AES key is characters 9 to 24)",
            USAGE,
        )
    REDACTOR.add([secret])  # masked in any traceback a bug might still print
    return TuyaCodec(secret)


def _read_input(value: str) -> str:
    if value != "-":
        return value.strip()
    try:
        return sys.stdin.buffer.read().decode("utf-8").strip()
    except UnicodeDecodeError:
        raise DecodeError(BAD_ENVELOPE, "stdin is not UTF-8 text") from None


def _frame_em(properties: Any) -> str:
    """The frame's ``em``; anything but a string is a malformed frame, not a crash."""
    if not isinstance(properties, dict):
        return encryption_mode(None)
    em = properties.get(EM_PROPERTY)
    if em is not None and not isinstance(em, str):
        raise DecodeError(UNKNOWN_EM, f"the frame's 'em' property is a {type(em).__name__}")
    return encryption_mode(properties)


def _unwrap(text: str, em_option: str | None) -> tuple[str, str, dict[str, Any] | None]:
    """(base64 data, em, envelope) from whichever form the user pasted."""
    if not text.startswith("{"):
        return text, em_option or EM_ECB, None
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise DecodeError(BAD_ENVELOPE, "INPUT starts with '{' but is not valid JSON") from None
    if isinstance(document, dict) and isinstance(document.get("payload"), str):
        properties = document.get("properties")
        try:
            document = orjson.loads(base64.b64decode(document["payload"], validate=True))
        except (ValueError, orjson.JSONDecodeError):  # binascii.Error, or non-ASCII text
            raise DecodeError(
                BAD_ENVELOPE, "the frame's payload is not base64 of a JSON envelope"
            ) from None
        em_option = em_option or _frame_em(properties)
    if not isinstance(document, dict) or not isinstance(document.get("data"), str):
        raise DecodeError(BAD_ENVELOPE, "the JSON has no 'data' string (nor a frame 'payload')")
    return document["data"], em_option or EM_ECB, document


def _enrich_from_catalogue(settings: Settings, event: Event) -> None:
    """With ``-c``, the event as the daemon would route it: enriched from the local device
    catalogue when that knows the device (no OpenAPI call; an absent catalogue leaves it be)."""
    from tuya_events.catalogue.enrich import apply
    from tuya_events.catalogue.store import CatalogueStore, CatalogueStoreError

    path = catalogue_path(settings)
    if not settings.enrichment.enabled or not path.exists() or event.device_id is None:
        return
    try:
        with CatalogueStore(path) as store:
            device = {d.id: d for d in store.load()}.get(event.device_id)
    except CatalogueStoreError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return
    if device is None:
        event.device = UNKNOWN_DEVICE
    else:
        apply(event, device)


def run(args: argparse.Namespace) -> int:
    codec = _codec(args)
    try:
        data, em, envelope = _unwrap(_read_input(args.input), args.em)
        plain = codec.decrypt_data(data, em)
        document = orjson.loads(plain)
    except orjson.JSONDecodeError:
        raise CliError(
            f"decrypt failed: {BAD_JSON}: the decrypted data is not JSON", DATA_ERROR
        ) from None
    except DecodeError as error:
        hint = ""
        if args.em is None and error.reason != BAD_ENVELOPE:
            hint = " (if the project uses AES-GCM, pass --em aes_gcm)"
        raise CliError(f"decrypt failed: {error}{hint}", DATA_ERROR) from None
    if args.event:
        protocol = parse_protocol(envelope.get("protocol")) if envelope else None
        event = build_event(document, protocol)
        if args.config:
            _enrich_from_catalogue(load_settings(args.config), event)
        sys.stdout.buffer.write(orjson.dumps(event.as_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(plain.decode("utf-8") + "\n")
    return 0
