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
