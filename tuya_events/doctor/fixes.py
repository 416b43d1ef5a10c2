"""What to do about each finding, in the words of Tuya's console.

One place for the fixes the doctor prints, so they read the same everywhere and
docs/troubleshooting.md can carry them as its table. The facts come from Tuya's Quick Start and
message-service pages and the Home Assistant Tuya set-up page (see tuya-protocol.md section 6);
console menu names change now and then, so each fix names the page as well as the path.
"""

from __future__ import annotations

from tuya_events.openapi.errors import (
    PERMISSION_DENY,
    REQUEST_TIME_INVALID,
    SIGN_INVALID,
    TOKEN_CODES,
    OpenApiError,
    is_subscription_code,
)

SKILL_ID_INVALID = 2406
SUBSCRIPTION_EXPIRED = 28841002
QUOTA_SPENT = 28841004
NOT_SUBSCRIBED = (28841101, 28841105)

PROJECT = "Tuya's console (platform.tuya.com): Cloud > Development > your project"

KEYS = (
    f"copy the Access ID/Client ID and the Access Secret/Client Secret again from {PROJECT} > "
    "Overview (Authorization Key) into tuya.access_id and tuya.access_secret, without spaces "
    "or quotes",
    "tuya.region (or tuya.openapi_url) must be the project's data center, shown on the same page",
)
CLOCK = (
    "synchronise this machine's clock (timedatectl set-ntp true, or chrony/ntpd); Tuya refuses "
    "requests whose t is far from its own time (1013)",
)
LINK_APP_ACCOUNT = (
    f"link the app account that owns the devices: {PROJECT} > Devices > Link App Account > Add "
    "App Account, scan the QR code with the Smart Life or Tuya Smart app (Me > scan), confirm",
    "the devices then appear under All Devices; if none do, the project's data center does not "
    "match the app account's country (Cloud > Development > Edit the project's data centers), "
    "or the account is not the home's owner",
)
APIS = (
    f"{PROJECT} > Service API: subscribe to and authorise IoT Core, Authorization Token "
    "Management, Smart Home Basic Service, Industry Basic Service and Device Status "
    "Notification (the trial plans are free)",
)
EXPIRED = (
    "the IoT Core subscription (the free trial lasts a few months) has expired: Cloud > Cloud "
    "Services > IoT Core > extend the trial (free, on request) or buy a plan",
)
QUOTA = (
    "the project's monthly API call quota is used up (trial projects: about 26,000 calls): "
    "wait for next month or upgrade the plan; tuya-events calls sparingly (catalogue."
    "refresh_interval, catalogue.quota_pause), but other clients of the key pair count too",
)
TOKEN = (
    "the token was replaced while the doctor ran: another process (a daemon, a script, an SDK) "
    "uses this key pair and each token it gets invalidates the previous one; run the doctor again",
)
NETWORK = (
    "check the network path to Tuya (DNS, a proxy or firewall, outbound HTTPS) and tuya.region "
    "or tuya.openapi_url",
)


def openapi_fix(error: OpenApiError) -> tuple[str, ...]:
    """The fix for a failed OpenAPI call, by Tuya's code (the seeds' error table)."""
    code = error.code
    if code == SIGN_INVALID:
        return KEYS
    if code == REQUEST_TIME_INVALID:
        return CLOCK
    if code == PERMISSION_DENY:
        return (
            *LINK_APP_ACCOUNT,
            "the project must be authorised for the API family tuya-events uses "
            "(catalogue.api_family: iot-03 or devices)",
        )
    if code == SKILL_ID_INVALID:
        return (
            "the app account was linked in another data center: unlink it and link it again "
            f"({PROJECT} > Devices > Link App Account) in the project's data center",
        )
    if code == SUBSCRIPTION_EXPIRED:
        return EXPIRED
    if code == QUOTA_SPENT:
        return QUOTA
    if code is not None and is_subscription_code(code):
        return APIS
    if code in TOKEN_CODES:
        return TOKEN
    if code is None and error.infrastructure:
        return NETWORK
    return (error.hint,) if error.hint else ("see Tuya's error code list for this code",)


def console_checklist(environment: str) -> tuple[str, ...]:
    """Why a subscription that works stays silent, most likely first."""
    which = "Production" if environment == "prod" else "Test"
    lines = [
        f"{PROJECT} > Message Service: the message service must be enabled for the project",
        f"Message Service > Message Rules (or Message Types): a rule for the {which} environment "
        "with the message types you want (device status, online/offline), and enabled: a new "
        "rule starts disabled",
        "Message Service > Subscription Management: the devices (or their products) must be in "
        "the subscription",
    ]
    if environment == "test":
        lines.append(
            "tuya.environment is test: the event-test topic only carries devices marked as "
            "test devices in the console; use environment: prod for all devices"
        )
    else:
        lines.append(
            "tuya.environment is prod (the event topic): a rule made for the Test environment "
            "sends to event-test, which this configuration does not read"
        )
    lines.append(
        "make a device report while the doctor waits (switch it in the Smart Life app), or "
        "give a longer --wait: a quiet device sends nothing"
    )
    lines.append(
        "another consumer connected to this subscription (a daemon on another machine, an SDK "
        "sample) is given the messages; the doctor, a standby, sees none while it runs"
    )
    return tuple(lines)
