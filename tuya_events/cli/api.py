"""``tuya-events api``: one signed OpenAPI call by hand, or a dry run that shows the signing.

The dry run is the tool to reach for on a 1004 (sign invalid): it prints the string-to-sign, the
exact string that is HMAC'd, every header and the ``sign``, sending nothing. With ``--t`` and
``--nonce`` it is reproducible, so it can be compared line by line with another implementation
or Tuya's API Explorer. The access secret itself is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING, Any

import orjson

from tuya_events.cli.exits import CONFIG, FAILURE, UNAVAILABLE, USAGE, CliError
from tuya_events.config import load_settings
from tuya_events.config.settings import OpenApiOptions, Settings
from tuya_events.tuya.regions import REGIONS

if TYPE_CHECKING:  # the client (aiohttp) is imported when the command runs, not for every command
    from tuya_events.openapi.client import OpenApiClient
    from tuya_events.openapi.errors import OpenApiError
    from tuya_events.openapi.signing import SignedRequest

ID_ENV = "TUYA_ACCESS_ID"
SECRET_ENV = "TUYA_ACCESS_SECRET"
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "api",
        parents=parents,
        help="make one signed Tuya OpenAPI call, or show its signing (--dry-run)",
        description="Call Tuya's OpenAPI and print the JSON result (getting an access token as "
        "needed), or with --dry-run send nothing and print the string-to-sign, every header and "
        "the sign. Credentials come from --access-id/--access-secret, "
        f"${ID_ENV}/${SECRET_ENV}, or the configuration (-c); the URL from --url, --region or "
        "the configuration; signing, lang, timeout and retries from the configuration's "
        "openapi: section (--legacy-signing and --lang override it). Exit codes: 0 success, "
        "64 usage, 69 Tuya unreachable or busy, "
        "78 a configuration problem Tuya reported (1004, 1013, 1106, 2884xxxx), 1 other errors.",
        epilog="example: tuya-events api GET /v1.0/iot-03/devices/DEVICE_ID/status -c "
        "config.yaml; tuya-events api POST /v1.0/iot-03/devices/DEVICE_ID/commands --body "
        '\'{"commands":[{"code":"switch_1","value":true}]}\'',
    )
    parser.add_argument("method", metavar="METHOD", type=str.upper, choices=METHODS)
    parser.add_argument("path", metavar="PATH", help="e.g. /v1.0/devices/ID (may hold ?k=v)")
    parser.add_argument(
        "--query", action="append", default=[], metavar="K=V", help="a query parameter"
    )
    parser.add_argument("--body", metavar="JSON", help="the request body, sent byte for byte")
    parser.add_argument("--access-token", metavar="T", help="use this token (no token call)")
    parser.add_argument("--t", metavar="MS", help="the timestamp to sign (13-digit ms)")
    parser.add_argument("--nonce", metavar="N", help="the nonce to sign (default: random)")
    parser.add_argument(
        "--signature-header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a header to send and sign (listed in Signature-Headers)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the signing, send nothing")
    parser.add_argument("--access-id", metavar="ID", help=f"the Access ID (or ${ID_ENV})")
    parser.add_argument(
        "--access-secret", metavar="S", help=f"the Access Secret (or ${SECRET_ENV})"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", metavar="URL", help="the OpenAPI base URL")
    where.add_argument("--region", choices=sorted(REGIONS), help="the data center")
    parser.add_argument(
        "--legacy-signing",
        action=argparse.BooleanOptionalAction,
        help="the old scheme (client_id [+ access_token] + t), for projects before mid-2021 "
        "(default: openapi.legacy_signing of the configuration, else off)",
    )
    parser.add_argument(
        "--lang", help="the lang header (default: openapi.lang of the configuration, else en)"
    )
    parser.set_defaults(handler=run)


# -- arguments ----------------------------------------------------------------------------------


def _credentials(args: argparse.Namespace, settings: Settings | None) -> tuple[str, str]:
    access_id = (
        args.access_id or os.environ.get(ID_ENV) or (settings.tuya.access_id if settings else None)
    )
    secret = (
        args.access_secret
        or os.environ.get(SECRET_ENV)
        or (settings.tuya.access_secret.get_secret_value() if settings else None)
    )
    if not access_id or not secret:
        missing = "Access ID" if not access_id else "Access Secret"
        raise CliError(
            f"no {missing}: pass --access-id/--access-secret, set ${ID_ENV}/${SECRET_ENV}, "
            "or give -c CONFIG",
            USAGE,
        )
    return access_id, secret


def _base_url(args: argparse.Namespace, settings: Settings | None) -> str | None:
    if args.url:
        url: str = args.url
        return url
    if args.region:
        return REGIONS[args.region].openapi_url
    return settings.tuya.resolved_openapi_url if settings else None


def _options(args: argparse.Namespace, settings: Settings | None) -> OpenApiOptions:
    """The configuration's ``openapi:`` (timeouts, retries, signing, lang), flags on top."""
    from tuya_events.handlers.action import configured_openapi

    base = configured_openapi(settings) if settings else OpenApiOptions()
    flags = {"legacy_signing": args.legacy_signing, "lang": args.lang}
    given = {key: value for key, value in flags.items() if value is not None}
    if not given:
        return base
    try:
        return OpenApiOptions.model_validate({**base.model_dump(), **given})
    except ValueError:  # pydantic's ValidationError is one; only --lang can be wrong here
        raise CliError(f"--lang {args.lang!r}: letters, '-' and '_' only", USAGE) from None


def _query(items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--query {item!r}: write it as KEY=VALUE", USAGE)
        pairs.append((key, value))
    return pairs


def _signature_headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name):
            raise CliError(f"--signature-header {item!r}: write it as NAME:VALUE", USAGE)
        if any(c in value for c in "\r\n"):
            raise CliError(f"--signature-header {name}: the value must be one line", USAGE)
        headers[name] = value
    return headers


def _body(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"--body is not valid JSON: {exc}", USAGE) from None
    return text.encode()


# -- output -------------------------------------------------------------------------------------


def _json_string(text: str) -> str:
    return orjson.dumps(text).decode()


def render_dry_run(signed: SignedRequest, url: str | None) -> str:
    """What ``--dry-run`` prints: every input of the sign, in the order it is computed."""
    target = url or signed.url + "  (no URL: give --url, --region or -c)"
    kind = "token call" if signed.token_call else "business call"
    if signed.legacy:
        formula = "client_id + t" if signed.token_call else "client_id + access_token + t"
        scheme = f"legacy (HMAC-SHA256 of {formula})"
    else:
        formula = (
            "client_id + t + nonce + string-to-sign"
            if signed.token_call
            else "client_id + access_token + t + nonce + string-to-sign"
        )
        scheme = f"current (HMAC-SHA256 of {formula})"
    lines = [f"request: {signed.method} {target}", f"call: {kind}", f"signing: {scheme}"]
    if not signed.legacy:
        content_hash = signed.string_to_sign.split("\n", 2)[1]
        lines += [
            f"content-sha256: {content_hash}",
            f"string-to-sign: {_json_string(signed.string_to_sign)}",
            "string-to-sign, line by line:",
            *(f"  | {line}".rstrip() for line in signed.string_to_sign.split("\n")),
        ]
    lines += [
        f"signed string: {_json_string(signed.signed)}",
        f"sign: {signed.sign}",
        "headers:",
        *(f"  {name}: {value}" for name, value in signed.headers.items()),
        f"body: {signed.body.decode() if signed.body else '(none)'}",
    ]
    return "\n".join(lines) + "\n"


# -- run ----------------------------------------------------------------------------------------


def _exit_code(error: OpenApiError) -> int:
    if error.configuration:
        return CONFIG
    if error.retryable or error.token_problem:
        return UNAVAILABLE
    return FAILURE


async def _call(
    client: OpenApiClient,
    args: argparse.Namespace,
    query: list[tuple[str, str]],
    body: bytes | None,
    headers: dict[str, str],
) -> Any:
    async with client:
        return await client.request(
            args.method,
            args.path,
            query=query,
            body=body,
            access_token=args.access_token,
            t=args.t,
            nonce=args.nonce,
            signature_headers=headers,
        )


def run(args: argparse.Namespace) -> int:
    from tuya_events.openapi.client import Credentials, OpenApiClient, ssl_option
    from tuya_events.openapi.errors import OpenApiError
    from tuya_events.openapi.signing import is_token_call, split_path

    if not args.path.startswith("/"):
        raise CliError(f"PATH must start with / (got {args.path!r})", USAGE)
    if args.t is not None and not args.t.isdigit():
        raise CliError("--t is epoch milliseconds (13 digits)", USAGE)
    headers = _signature_headers(args.signature_header)
    query = _query(args.query)
    body = _body(args.body)
    settings = load_settings(args.config) if args.config else None
    options = _options(args, settings)
    if options.legacy_signing and (args.nonce or headers):
        raise CliError(
            "the legacy scheme (--legacy-signing, or openapi.legacy_signing in the "
            "configuration) signs no nonce and no Signature-Headers",
            USAGE,
        )
    access_id, secret = _credentials(args, settings)
    base_url = _base_url(args, settings)
    client = OpenApiClient(
        Credentials(access_id, secret, base_url or "https://unknown.invalid"),
        options,
        ssl_context=ssl_option(settings) if settings else None,
    )
    token_call = is_token_call(split_path(args.path)[0])
    if args.dry_run:
        if not token_call and args.access_token is None:
            raise CliError(
                "a dry run of a business call signs an access token: pass --access-token "
                "(get one with: tuya-events api GET '/v1.0/token?grant_type=1')",
                USAGE,
            )
        signed = client.sign(
            args.method,
            args.path,
            query=query,
            body=body,
            access_token=args.access_token or "",
            t=args.t,
            nonce=args.nonce,
            signature_headers=headers,
        )
        url = str(client.url_for(signed)) if base_url else None
        sys.stdout.write(render_dry_run(signed, url))
        return 0
    if base_url is None:
        raise CliError("no OpenAPI URL: pass --url or --region, or give -c CONFIG", USAGE)
    try:
        result = asyncio.run(_call(client, args, query, body, headers))
    except OpenApiError as error:
        raise CliError(str(error), _exit_code(error)) from None
    sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return 0
