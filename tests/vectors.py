"""Test vectors from ../shared/docs/tuya-protocol.md, copied verbatim."""

ACCESS_ID = "accessIdtesttesttest"
ACCESS_SECRET = "accessKeyesttesttesttesttesttest"
PULSAR_PASSWORD = "ad0139f768d194a4"
AES_KEY = b"yesttesttesttest"

PLAINTEXT = (
    '{"dataId":"dataIddataIddataIddataId","devId":"devIddevIddevIddevIddevId",'
    '"productKey":"productKeypro","status":[{"code":"code","t":1622449865296,"value":280}]}'
)
ECB_DATA = (
    "9Pe6AYEE2fJyCh5gcY/+mCY2yhFsxZ6Pjt+n1WkotuvVHRAKjf+aV+HPMrx55iSk1ot9TiUZkiufxWreZ7VMEJ3uo8iT"
    "992qq4w+mnjTfi/Ph9hyB3UJTQOlkdChT93LYnQGgEqWrY77X2vgC6bIKUGgCV2mD0A1a2QwO0gXtPhQabf1RL9SdVUU"
    "qqMJKgAEEYdqygcT/V08yNDgSAnIMQ=="
)
GCM_NONCE = bytes(range(12))
GCM_DATA = (
    "AAECAwQFBgcICQoLAeySMfZIKX4Bm3Lwtrbt3x/0W8D201OEZ6fWMj9qsW1fpCUEyLBkz2w1KZIZG+hKKWIfUd2VzCsT"
    "xW3b1dqicInnczYHeUgLAF+FaQCKJNs/qcxQ+yW1M26kRJah7naTm8Miw0uD7Qoxc2aKSUZTep0TeG9AG4ZFqHXvPhOQ"
    "NZAoHq89GGnnbpxX6RUNMzip1WxsCIXNJO1g3PYLjBomln/ftW7F2sMFvaDgXm7QSQ=="
)

# OpenAPI signing (section 4), used by the OpenAPI client's tests.
API_CLIENT_ID = "1KAD46OrT9HafiKdsXeg"
API_SECRET = "4OHBOnWOqaEC1mWXOpVL3yV50s0qGSRC"
API_T = "1588925778000"
API_NONCE = "5138cc3a9033d69856923fd07b491173"
API_ACCESS_TOKEN = "3f4eda2bdec17232f67c0b188af3eec1"
API_SIGNATURE_HEADERS = {
    "area_id": "29a33e8796834b1efa6",
    "call_id": "8afdb70ab2ed11eb85290242ac130003",
}
API_TOKEN_SIGN = "9E48A3E93B302EEECC803C7241985D0A34EB944F40FB573C7B5C2A82158AF13E"
API_BUSINESS_SIGN = "AE4481C692AA80B25F3A7E12C3A5FD9BBF6251539DD78E565A1A72A508A88784"

# --- Message families (section 6): one decrypted document per family ------------------------
# Built from the shapes in ../shared/docs/tuya-protocol.md (sections 3 and 6). Where the doc gives
# no bizData fields (IoT Core events, actions, space events) or no bizCode (protocols 40, 43, 45),
# the vector carries only the fields the doc names, or a placeholder code marked as such.
# Each entry: name -> (protocol, document, expected kind, expected event_name).

DEVICE_ID = "bf0a1c2d3e4f5a6b7c8d9e"
PRODUCT_KEY = "keyprodkeyprod12"

# A camera's base64-of-JSON value and what it holds (the shape users report for
# movement_detect_pic; the path and bucket here are made up).
CAMERA_PICTURE_B64 = (
    "eyJidWNrZXQiOiJ0eS1ldS1zdG9yYWdlLXBpYyIsImZpbGVzIjpbWyIvYmYwYTFjL2RldGVjdC8xNzAwMDAwMDAwLmpw"
    "ZWc/cGFyYW09YzJsbmJtVmsiLCIiXV0sInYiOiIzLjAifQ=="
)
CAMERA_PICTURE = {
    "bucket": "ty-eu-storage-pic",
    "files": [["/bf0a1c/detect/1700000000.jpeg?param=c2lnbmVk", ""]],
    "v": "3.0",
}
# The backlog notice's eventData: a JSON document in a string (Tuya's "Pulsar notifications" page).
NOTICE_EVENT_DATA = (
    '{"dataCenter":"AY","topic":"accessIdtesttesttest/out/event",'
    '"subscription":"accessIdtesttesttest-sub","backLogNum":2543}'
)
RESYNC_MARKER = {"source": "resync", "trigger": "start", "gap_seconds": 11520.0}


def _device_event(biz_code: str, biz_data: dict) -> dict:
    return {"bizCode": biz_code, "bizData": {"devId": DEVICE_ID, **biz_data}, "ts": 1700000000123}


def _iot_core(biz_code: str, **biz_data: object) -> dict:
    fields = {"dataId": f"{biz_code}-0001", "productId": PRODUCT_KEY, **biz_data}
    return _device_event(biz_code, fields)


FAMILIES: dict[str, tuple[int, dict, str, str | None]] = {
    # Legacy: 4 status report, with the numeric-id twin of each value.
    "status": (
        4,
        {
            "dataId": "status-0001",
            "devId": DEVICE_ID,
            "productKey": PRODUCT_KEY,
            "status": [{"code": "switch_1", "value": False, "t": 1628229842692, "1": "false"}],
        },
        "status",
        None,
    ),
    "camera_picture": (
        4,
        {
            "dataId": "status-0002",
            "devId": DEVICE_ID,
            "productKey": PRODUCT_KEY,
            "status": [
                {"code": "movement_detect_pic", "value": CAMERA_PICTURE_B64, "t": "1700000000"}
            ],
        },
        "status",
        None,
    ),
    # Legacy: 20 device events (online samples carry ts 0 and bizData.time in seconds).
    "online": (
        20,
        {**_device_event("online", {"time": 1700000000}), "ts": 0, "productKey": PRODUCT_KEY},
        "device_event",
        "online",
    ),
    "offline": (20, _device_event("offline", {"time": 1700000000}), "device_event", "offline"),
    "name_update": (
        20,
        _device_event("nameUpdate", {"name": "Porch", "uid": "ay0001"}),
        "device_event",
        "renamed",
    ),
    "dp_name_update": (
        20,
        _device_event("dpNameUpdate", {"dpId": "1", "name": "Lamp"}),
        "device_event",
        "dp_renamed",
    ),
    "bind_user": (
        20,
        _device_event("bindUser", {"uid": "ay0001", "ownerId": "42", "uuid": "u1", "token": "t1"}),
        "device_event",
        "bound",
    ),
    "delete": (
        20,
        _device_event("delete", {"uid": "ay0001", "ownerId": "42"}),
        "device_event",
        "deleted",
    ),
    "upgrade_status": (
        20,
        _device_event(
            "upgradeStatus",
            {"moduleType": 9, "upgradeStatus": 2, "oldVersion": "1.0.0", "newVersion": "1.1.0"},
        ),
        "device_event",
        "ota_progress",
    ),
    "upgrade_process": (
        20,
        _device_event("upgradeProcess", {"progress": 40}),
        "device_event",
        "ota_progress",
    ),
    "doorbell": (
        20,
        _device_event("event_notify", {"etype": "ac_doorbell", "edata": "617bdf7a1700000000"}),
        "device_event",
        "doorbell",
    ),
    # Legacy families that stay generic (their bizCodes for 40, 43 and 45 are placeholders).
    "automation": (
        22,
        {"bizCode": "automationExternalAction", "bizData": {"ruleId": "r1"}, "ts": 1700000000123},
        "generic",
        None,
    ),
    "scene": (
        25,
        {"bizCode": "sceneExecute", "bizData": {"sceneId": "s1"}, "ts": 1700000000123},
        "generic",
        None,
    ),
    "outdoor_alert": (40, {"bizCode": "placeholderOutdoorAlert", "bizData": {}}, "generic", None),
    "traffic_center": (43, {"bizCode": "placeholderTrafficEvent", "bizData": {}}, "generic", None),
    "voice_assistant": (45, {"bizCode": "placeholderVoiceEvent", "bizData": {}}, "generic", None),
    # IoT Core: 1000 device messages.
    "property_message": (
        1000,
        _iot_core(
            "devicePropertyMessage",
            properties=[{"code": "va_temperature", "dpId": 1, "time": 1700000000000, "value": 235}],
        ),
        "status",
        None,
    ),
    "event_message": (1000, _iot_core("deviceEventMessage"), "device_event", "model_event"),
    "action_response": (
        1000,
        _iot_core("deviceActionResponseMessage"),
        "device_event",
        "action_response",
    ),
    "query_property": (
        1000,
        _iot_core("deviceQueryPropertyMessage"),
        "device_event",
        "query_response",
    ),
    # IoT Core: 1001 device lifecycle.
    "device_online": (1001, _iot_core("deviceOnline"), "device_event", "online"),
    "device_offline": (1001, _iot_core("deviceOffline"), "device_event", "offline"),
    "device_name_update": (
        1001,
        _iot_core("deviceNameUpdate", name="Porch"),
        "device_event",
        "renamed",
    ),
    "device_bind_space": (1001, _iot_core("deviceBindSpace"), "device_event", "bound"),
    "device_unbind_space": (1001, _iot_core("deviceUnbindSpace"), "device_event", "unbound"),
    "device_transfer": (1001, _iot_core("deviceTransfer"), "device_event", "transferred"),
    "device_freeze": (1001, _iot_core("deviceFreeze"), "device_event", "frozen"),
    "device_unfreeze": (1001, _iot_core("deviceUnFreeze"), "device_event", "unfrozen"),
    # IoT Core: 1002 OTA, 1010 space events (not a device's: generic).
    "ota_progress": (1002, _iot_core("deviceOtaProgress"), "device_event", "ota_progress"),
    "space_create": (
        1010,
        {"bizCode": "spaceCreate", "bizData": {"spaceId": "sp1"}, "ts": 1700000000123},
        "generic",
        None,
    ),
    # The notice channel: 10000.
    "backlog_notice": (
        10000,
        {
            "bizCode": "HighPriorityNotice",
            "bizData": {"eventType": "pulsar_backlog_notice", "eventData": NOTICE_EVENT_DATA},
            "ts": 1700000000123,
        },
        "notice",
        None,
    ),
    # The daemon's own resync event: a status report marked by the resync.
    "resync_status": (
        4,
        {
            "dataId": "resync-1700000000000-" + DEVICE_ID,
            "devId": DEVICE_ID,
            "status": [{"code": "switch_1", "value": True, "t": 1700000000000}],
            "_tuya_events": RESYNC_MARKER,
        },
        "status",
        None,
    ),
}
