"""Microseconds per message for decoding Tuya messages: TuyaCodec against plain pycryptodome glue.

Run from the project root: ``.venv/bin/python benchmarks/decode.py`` (``make bench``).

Every figure is the time of one pass over a pool of distinct pre-encrypted messages divided by the
pool size; passes are repeated and interleaved across implementations so that load from other
processes hits all of them alike, and the median and minimum of the passes are reported. The
baseline is what users' glue code does per message: stdlib json and base64, a new pycryptodome
cipher object, a plain unpad and a plain dict as the "event". See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
from Crypto.Cipher import AES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for benchmarks.machine

from benchmarks.machine import cpu_model  # noqa: E402
from tuya_events.tuya.codec import EM_ECB, EM_GCM, TuyaCodec, TuyaEncoder  # noqa: E402
from tuya_events.tuya.crypto import aes_key  # noqa: E402

ACCESS_ID = "p8kq3mxv7wd2hn5rj4ta"
ACCESS_SECRET = "c1f4e7a2yesttesttesttest9b3d6e0f"
MODES = (EM_ECB, EM_GCM)
GOAL_US = 15.0
GOAL_GCM_SPEEDUP = 4.0
# On an idle machine the median pass is within a few percent of the fastest one.
DISTURBED_SPREAD = 1.15

Call = Callable[..., Any]


# --- the message pool -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataPoint:
    """One kind of data point as real devices report it (code, numeric id, value generator)."""

    code: str
    dp_id: int
    value: Callable[[random.Random], Any]


def _colour(rng: random.Random) -> str:
    return json.dumps({"h": rng.randrange(360), "s": rng.randrange(1001), "v": rng.randrange(1001)})


def _scene(rng: random.Random) -> str:
    units = [
        {"bright": rng.randrange(1001), "h": rng.randrange(360), "s": 1000, "temperature": 0}
        for _ in range(rng.randint(1, 2))
    ]
    return json.dumps({"scene_num": rng.randint(1, 8), "scene_units": units})


DATA_POINTS: tuple[DataPoint, ...] = (
    DataPoint("switch_1", 1, lambda r: r.random() < 0.5),
    DataPoint("countdown_1", 9, lambda r: r.choice((0, 0, 300, 1800, 3600))),
    DataPoint("add_ele", 17, lambda r: r.randint(0, 50)),
    DataPoint("cur_current", 18, lambda r: r.randint(0, 16000)),
    DataPoint("cur_power", 19, lambda r: r.randint(0, 35000)),
    DataPoint("cur_voltage", 20, lambda r: r.randint(2180, 2460)),
    DataPoint("switch_led", 20, lambda r: r.random() < 0.5),
    DataPoint("work_mode", 21, lambda r: r.choice(("white", "colour", "scene", "music"))),
    DataPoint("bright_value_v2", 22, lambda r: r.randint(10, 1000)),
    DataPoint("temp_value_v2", 23, lambda r: r.randint(0, 1000)),
    DataPoint("colour_data_v2", 24, _colour),
    DataPoint("scene_data_v2", 25, _scene),
    DataPoint("va_temperature", 1, lambda r: r.randint(-100, 400)),
    DataPoint("va_humidity", 2, lambda r: r.randint(200, 950)),
    DataPoint("battery_percentage", 4, lambda r: r.randint(0, 100)),
    DataPoint("doorcontact_state", 1, lambda r: r.random() < 0.5),
    DataPoint("pir", 1, lambda r: r.choice(("pir", "none"))),
    DataPoint("fault", 9, lambda r: r.choice((0, 0, 0, 1, 4))),
)


def _hex(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(length))


def _device_id(rng: random.Random) -> str:
    return rng.choice(("bf", "eb", "6c")) + _hex(rng, 20)


def _product_key(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16))


def _dp_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def status_report(rng: random.Random, t_ms: int) -> dict[str, Any]:
    """Protocol 4: one device's 1-3 data points, each with its numeric-id text twin."""
    items = []
    for point in rng.sample(DATA_POINTS, rng.choice((1, 2, 2, 3))):
        value = point.value(rng)
        items.append(
            {
                "code": point.code,
                "value": value,
                "t": t_ms - rng.randint(0, 900),
                str(point.dp_id): _dp_text(value),
            }
        )
    return {
        "dataId": _hex(rng, 32),
        "devId": _device_id(rng),
        "productKey": _product_key(rng),
        "status": items,
    }


def device_event(rng: random.Random, t_ms: int) -> dict[str, Any]:
    """Protocol 20: online/offline, renames, binding, upgrades, with their usual bizData."""
    dev_id = _device_id(rng)
    uid = "ay" + _hex(rng, 17)
    biz_code = rng.choice(
        ("online", "offline", "nameUpdate", "dpNameUpdate", "bindUser", "upgradeStatus")
    )
    biz_data: dict[str, Any]
    if biz_code in ("online", "offline"):
        biz_data = {"devId": dev_id, "uid": uid, "time": t_ms // 1000}
    elif biz_code == "nameUpdate":
        name = rng.choice(("Living room lamp", "Kitchen plug", "Garage door", "Bedroom heater"))
        biz_data = {"devId": dev_id, "uid": uid, "name": name}
    elif biz_code == "dpNameUpdate":
        biz_data = {"devId": dev_id, "dpId": str(rng.randint(1, 30)), "name": "Socket 2"}
    elif biz_code == "bindUser":
        biz_data = {
            "devId": dev_id,
            "uid": uid,
            "ownerId": str(rng.randint(10**7, 10**8)),
            "uuid": _hex(rng, 16),
            "token": _hex(rng, 8),
        }
    else:
        biz_data = {
            "devId": dev_id,
            "moduleType": rng.choice((0, 9)),
            "upgradeStatus": rng.choice((1, 2, 3, 4, 7)),
            "oldVersion": "1.0.4",
            "newVersion": "1.1.2",
            "description": "Improves Wi-Fi reconnection and fixes the countdown display",
        }
    return {
        "bizCode": biz_code,
        "bizData": biz_data,
        "devId": dev_id,
        "productKey": _product_key(rng),
        "ts": t_ms,
        "uuid": _hex(rng, 16),
    }


def make_documents(count: int, seed: int) -> list[dict[str, Any]]:
    """Distinct plaintext documents, about 70% status reports (the bulk of real traffic)."""
    rng = random.Random(seed)
    t_ms = 1_760_000_000_000
    documents = []
    for _ in range(count):
        t_ms += rng.randint(1, 400)
        make = status_report if rng.random() < 0.7 else device_event
        documents.append(make(rng, t_ms))
    return documents


@dataclass(frozen=True, slots=True)
class Pool:
    """One mode's messages plus the intermediate forms the split and the alternatives need."""

    em: str
    messages: list[tuple[bytes, dict[str, str]]]
    datas: list[tuple[str, str]]
    raws: list[bytes]
    plains: list[bytes]


def make_pool(documents: Sequence[dict[str, Any]], em: str, seed: int) -> Pool:
    """Encrypt every document in one mode; the envelope ``t`` is the push, just after the event."""
    rng = random.Random(seed)
    encoder = TuyaEncoder(ACCESS_ID, ACCESS_SECRET)
    codec = TuyaCodec(ACCESS_SECRET)
    messages, datas, raws, plains = [], [], [], []
    for document in documents:
        nonce = rng.randbytes(12) if em == EM_GCM else None
        t_ms = document.get("ts") or document["status"][0]["t"] + 500
        body, properties = encoder.encode(document, em=em, t_ms=t_ms, nonce=nonce)
        data = orjson.loads(body)["data"]
        messages.append((body, properties))
        datas.append((data, em))
        raws.append(base64.b64decode(data))
        plains.append(codec.decrypt_data(data, em))
    return Pool(em, messages, datas, raws, plains)


# --- the baseline ---------------------------------------------------------------------------


class PycryptodomeDecoder:
    """The straightforward per-message glue code: stdlib JSON/base64, a new cipher each time."""

    def __init__(self, access_secret: str) -> None:
        self._key = access_secret[8:24].encode()

    def decode(self, body: bytes, properties: Mapping[str, str]) -> dict[str, Any]:
        envelope = json.loads(body)
        raw = base64.b64decode(envelope["data"])
        if properties.get("em") == "aes_gcm":
            cipher = AES.new(self._key, AES.MODE_GCM, nonce=raw[:12])
            plain = cipher.decrypt_and_verify(raw[12:-16], raw[-16:])
        else:
            padded = AES.new(self._key, AES.MODE_ECB).decrypt(raw)
            plain = padded[: -padded[-1]]
        document = json.loads(plain)
        return {
            "protocol": envelope.get("protocol"),
            "t": envelope.get("t"),
            "device_id": document.get("devId"),
            "biz_code": document.get("bizCode"),
            "document": document,
        }


# --- timing ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Case:
    """One function timed over one list of argument tuples; ``samples`` are us per call."""

    func: Call
    inputs: Sequence[tuple[Any, ...]]
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)


def case(func: Call, inputs: Sequence[Any]) -> Case:
    rows = [item if isinstance(item, tuple) else (item,) for item in inputs]
    return Case(func, rows, [])


def one_pass(func: Call, inputs: Sequence[tuple[Any, ...]], keep_gc: bool) -> float:
    """Microseconds per call for one pass; the collector is off unless asked, as in timeit."""
    gc.collect()
    if not keep_gc:
        gc.disable()
    try:
        start = time.perf_counter_ns()
        for args in inputs:
            func(*args)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / len(inputs) / 1000


def run(cases: Sequence[Case], repeat: int, keep_gc: bool) -> None:
    """Warm every case up, then interleave passes so that drifting load hits all cases alike."""
    for item in cases:
        one_pass(item.func, item.inputs, keep_gc)
    for _ in range(repeat):
        for item in cases:
            item.samples.append(one_pass(item.func, item.inputs, keep_gc))


# --- sanity checks: every implementation must do the same work -------------------------------


def check_same_documents(pool: Pool, codec: TuyaCodec, baseline: PycryptodomeDecoder) -> None:
    for body, properties in pool.messages:
        if baseline.decode(body, properties)["document"] != codec.decode(body, properties).document:
            raise SystemExit(f"{pool.em}: the baseline decodes a message differently")


# --- reporting ------------------------------------------------------------------------------

Row = tuple[str, str, Case, str]


def openssl_version() -> str:
    from cryptography.hazmat.backends.openssl import backend

    return backend.openssl_version_text()


def print_setup(args: argparse.Namespace, sizes: Sequence[int]) -> None:
    """What a figure depends on; the load average tells whether other work was competing."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine:  {os.cpu_count()} CPUs, {cpu_model()}, load average {load}")
    print(
        f"software: Python {platform.python_version()}, cryptography {version('cryptography')} "
        f"({openssl_version()}), pycryptodome {version('pycryptodome')}, "
        f"orjson {version('orjson')}"
    )
    print(
        f"pool:     {args.messages} distinct messages per mode, plaintext {min(sizes)}-"
        f"{max(sizes)} bytes (median {statistics.median(sizes):.0f}); {args.repeat} passes, "
        f"gc {'enabled' if args.gc else 'disabled'} while timing"
    )


def ratio(baseline: Case, item: Case) -> str:
    return f"{baseline.median / item.median:.2f}x faster"


def print_table(title: str, rows: Sequence[Row], note_header: str = "") -> None:
    print(f"\n{title}")
    print(f"  {'mode':8} {'implementation':40} {'median us':>9} {'min us':>7}  {note_header}")
    for mode, name, item, note in rows:
        print(f"  {mode:8} {name:40} {item.median:9.2f} {item.best:7.2f}  {note}")


def print_split(cases: Mapping[tuple[str, str], Case]) -> None:
    """Cumulative stages of ``decode``; each step is the difference of two medians."""
    print(
        "\nWhere TuyaCodec.decode spends its time (us/message, medians, share of the full decode):"
    )
    headers = ("base64+decrypt", "+ envelope JSON", "+ JSON + event")
    print(f"  {'mode':8} {headers[0]:>16} {headers[1]:>17} {headers[2]:>15} {'full':>6}")
    for em in MODES:
        full = cases[em, "codec"].median
        crypto = cases[em, "b64+decrypt"].median
        envelope = cases[em, "envelope"].median - crypto
        rest = full - crypto - envelope
        steps = [f"{value:5.2f} ({value / full:3.0%})" for value in (crypto, envelope, rest)]
        print(f"  {em:8} {steps[0]:>16} {steps[1]:>17} {steps[2]:>15} {full:6.2f}")


def print_goals(cases: Mapping[tuple[str, str], Case]) -> None:
    print("\nGoals (on medians):")
    for em in MODES:
        median = cases[em, "codec"].median
        verdict = "met" if median <= GOAL_US else "NOT met"
        print(f"  {em}: TuyaCodec <= {GOAL_US:.0f} us/message: {median:.2f} us -> {verdict}")
    speedup = cases[EM_GCM, "pycryptodome"].median / cases[EM_GCM, "codec"].median
    verdict = "met" if speedup >= GOAL_GCM_SPEEDUP else "NOT met"
    goal = f">= {GOAL_GCM_SPEEDUP:.0f}x faster than pycryptodome"
    print(f"  aes_gcm: {goal}: {speedup:.2f}x -> {verdict}")
    spread = max(cases[em, "codec"].median / cases[em, "codec"].best for em in MODES)
    if spread > DISTURBED_SPREAD:
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(
            f"  note: medians are {spread - 1:.0%} above the fastest pass: other work competed for"
            f" the CPU (load average {load}). Rerun on an idle machine; min is closer to it."
        )


# --- the benchmark --------------------------------------------------------------------------


def run_decoders(
    pools: Mapping[str, Pool], args: argparse.Namespace
) -> dict[tuple[str, str], Case]:
    """Codec, baseline and the codec's cumulative stages, interleaved in one run."""
    codec = TuyaCodec(ACCESS_SECRET)
    baseline = PycryptodomeDecoder(ACCESS_SECRET)
    cases: dict[tuple[str, str], Case] = {}
    for em, pool in pools.items():
        check_same_documents(pool, codec, baseline)
        cases[em, "codec"] = case(codec.decode, pool.messages)
        cases[em, "pycryptodome"] = case(baseline.decode, pool.messages)
        cases[em, "b64+decrypt"] = case(codec.decrypt_data, pool.datas)
        cases[em, "envelope"] = case(codec.decrypt, pool.messages)
    run(list(cases.values()), args.repeat, args.gc)
    return cases


def run_alternatives(pools: Mapping[str, Pool], args: argparse.Namespace) -> list[Row]:
    """The measurements behind the library choice: raw AES and JSON on the same inputs."""
    key = aes_key(ACCESS_SECRET)
    aead = AESGCM(key)
    reused_ecb = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    pycryptodome_ecb = AES.new(key, AES.MODE_ECB)

    def gcm_pycryptodome(raw: bytes) -> bytes:
        cipher = AES.new(key, AES.MODE_GCM, nonce=raw[:12])
        return cipher.decrypt_and_verify(raw[12:-16], raw[-16:])

    def gcm_cryptography(raw: bytes) -> bytes:
        return aead.decrypt(raw[:12], raw[12:], None)

    def ecb_pycryptodome(raw: bytes) -> bytes:
        return AES.new(key, AES.MODE_ECB).decrypt(raw)

    def ecb_fresh(raw: bytes) -> bytes:
        decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
        return decryptor.update(raw) + decryptor.finalize()

    gcm, ecb = pools[EM_GCM], pools[EM_ECB]
    named = [
        (EM_GCM, "pycryptodome, new cipher per message", case(gcm_pycryptodome, gcm.raws)),
        (EM_GCM, "cryptography AESGCM (one object)", case(gcm_cryptography, gcm.raws)),
        (EM_ECB, "pycryptodome, new cipher per message", case(ecb_pycryptodome, ecb.raws)),
        (EM_ECB, "pycryptodome, one cipher object", case(pycryptodome_ecb.decrypt, ecb.raws)),
        (EM_ECB, "cryptography, new decryptor per message", case(ecb_fresh, ecb.raws)),
        (EM_ECB, "cryptography, one reused decryptor", case(reused_ecb.update, ecb.raws)),
        ("json", "json.loads (stdlib)", case(json.loads, ecb.plains)),
        ("json", "orjson.loads", case(orjson.loads, ecb.plains)),
    ]
    run([item for _, _, item in named], args.repeat, args.gc)
    rows = []
    for mode, name, item in named:
        first = next(other for other_mode, _, other in named if other_mode == mode)
        rows.append((mode, name, item, "" if item is first else ratio(first, item)))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=3000, help="pool size per mode")
    parser.add_argument("-r", "--repeat", type=int, default=15, help="timed passes per case")
    parser.add_argument("--seed", type=int, default=4, help="seed of the message pool")
    parser.add_argument("--gc", action="store_true", help="keep the garbage collector enabled")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.repeat < 1:
        parser.error("--messages and --repeat must be at least 1")

    documents = make_documents(args.messages, args.seed)
    pools = {em: make_pool(documents, em, args.seed) for em in MODES}
    print_setup(args, [len(plain) for plain in pools[EM_ECB].plains])

    cases = run_decoders(pools, args)
    rows: list[Row] = []
    for em in MODES:
        codec, baseline = cases[em, "codec"], cases[em, "pycryptodome"]
        rows.append((em, "TuyaCodec.decode", codec, ratio(baseline, codec)))
        rows.append((em, "pycryptodome (per-message glue code)", baseline, "1.00x"))
    print_table(
        "Full decode (envelope JSON, base64, decrypt, JSON, event), us/message:",
        rows,
        "vs pycryptodome",
    )
    print_split(cases)
    print_goals(cases)

    print_table(
        "Alternatives on the same ciphertexts and plaintexts (no base64, no unpad), us/message:",
        run_alternatives(pools, args),
        "vs first row of its mode",
    )

    return 0


if __name__ == "__main__":
    sys.exit(main())
