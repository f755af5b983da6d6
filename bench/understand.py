"""Hostile and broken mail through the reading path: no exception, and linear time.

10,000 (``--n``) messages made from the corpora (``../shared/corpus``: the peer corpora, the
bounces, the client replies) by seeded mutations (``--seed``): cut short, bytes flipped, a
header repeated or made huge (a Content-Type of 20,000 parameters, 5,000 recipients), an
encoded CR/LF or escape codes in the From name, an unknown charset, MIME nested 200 deep, 64 KB
of "_", "*_", "On ... wrote:" or ">" lines, a single 64 KB line, binary garbage. Each goes
through ``understand.read`` exactly as the daemon calls it (the inbox's limit of 10 MB).

Prints the exceptions that escaped (target 0), how many messages took over 100 ms and over
250 ms (target: none over 250 ms), the slowest ones with their mutation and source, and the
median and 99th percentile. Times are the process's CPU time (``time.process_time``): on a
machine shared with other work, the wall clock also counts the waits for a free core. Run
from the repository's root:

    .venv/bin/python -m bench.understand            # --n 10000 --seed 1
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mailer.schedule import load_catalog
from mailer.understand import read

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
NOW = datetime(2020, 7, 1, 12, 0, tzinfo=UTC)
INBOX = "webinars@example.org"
MAX_BYTES = 10_000_000


def _sources() -> list[tuple[str, bytes]]:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file()
                   and p.suffix in (".eml", ".txt") and p.name != "LICENSE")
    out = []
    for path in files:
        data = path.read_bytes()
        if b":" in data[:200]:          # a message (the peers' bare bodies get a header)
            out.append((str(path.relative_to(CORPUS)), data))
        else:
            out.append((str(path.relative_to(CORPUS)),
                        b"From: Sam <sam@example.org>\nSubject: Re: x\n\n" + data))
    return out


def _split(raw: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(sep)
        if found:
            return head, body
    return raw, b""


def _with_header(raw: bytes, line: bytes) -> bytes:
    head, body = _split(raw)
    return head + b"\n" + line + b"\n\n" + body


def _with_body(raw: bytes, body: bytes) -> bytes:
    head, _body = _split(raw)
    return head + b"\n\n" + body


# Each mutation: (rng, raw) -> raw.
def cut(rng: random.Random, raw: bytes) -> bytes:
    return raw[:rng.randrange(1, max(2, len(raw)))]


def flip(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 50)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def insert_junk(rng: random.Random, raw: bytes) -> bytes:
    at = rng.randrange(len(raw) + 1)
    return raw[:at] + rng.randbytes(rng.randint(1, 4000)) + raw[at:]


def repeat_header(rng: random.Random, raw: bytes) -> bytes:
    name = rng.choice([b"Received", b"To", b"References", b"Subject", b"Content-Type"])
    return _with_header(raw, b"\n".join([name + b": x@example.org"] * rng.randint(100, 3000)))


def huge_content_type(rng: random.Random, raw: bytes) -> bytes:
    params = b"; ".join(b"p%d=v%d" % (i, i) for i in range(rng.choice([2000, 20000])))
    head, body = _split(raw)
    head = b"\n".join(line for line in head.split(b"\n")
                      if not line.lower().startswith(b"content-type"))
    return head + b"\nContent-Type: text/plain; " + params + b"\n\n" + body


def many_recipients(rng: random.Random, raw: bytes) -> bytes:
    return _with_header(raw, b"To: " + b", ".join(
        b"p%d <p%d@example.org>" % (i, i) for i in range(rng.choice([500, 5000]))))


def hostile_from(rng: random.Random, raw: bytes) -> bytes:
    name = rng.choice([b"=?utf-8?q?Awa=0D=0ABcc:_victim@evil.example?=",
                       b"=?utf-8?b?G1szMW1SZWQbWzBt?=", b"=?x-unknown?q?caf=E9?=",
                       b'"a\\"b" <x@example.org>, y@example.org', b"<>"])
    head, body = _split(raw)
    head = b"\n".join(line for line in head.split(b"\n") if not line.lower().startswith(b"from:"))
    return head + b"\nFrom: " + name + b" <awa@example.sn>\n\n" + body


def bad_charset(rng: random.Random, raw: bytes) -> bytes:
    return _with_header(raw, b"Content-Type: text/plain; charset=" + rng.choice(
        [b"x-no-such", b"utf-7", b"utf-16", b"iso-2022-jp", b'"\x00\xff"']))


def deep_nesting(rng: random.Random, raw: bytes) -> bytes:
    depth = rng.choice([50, 200])
    parts = [b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d" % (i, i)
             for i in range(depth)]
    closing = [b"--b%d--" % i for i in reversed(range(depth))]
    return (b"From: x@example.org\nSubject: nest\nMIME-Version: 1.0\n"
            + b"\n".join(parts) + b"\nContent-Type: text/plain\n\nhi\n" + b"\n".join(closing))


def long_lines(rng: random.Random, raw: bytes) -> bytes:
    unit = rng.choice([b"_" * 70, b"*_" * 35, b"On 3 July 2020, x <a@b.c> wrote", b"> " * 35,
                       b"Name: " + b"_" * 60, b"From: a\nTo: b", b"-" * 70, b" \t" * 35])
    return _with_body(raw, (unit + b"\n") * (64_000 // (len(unit) + 1)))


def one_long_line(rng: random.Random, raw: bytes) -> bytes:
    unit = rng.choice([b"_", b"*_", b"a ", b"<", b"1 <", b":", b"@"])
    return _with_body(raw, unit * (64_000 // len(unit)))


def garbage(rng: random.Random, raw: bytes) -> bytes:
    return rng.randbytes(rng.randint(1, 20_000))


def base64_noise(rng: random.Random, raw: bytes) -> bytes:
    return _with_header(_with_body(raw, b"!!==" * rng.randint(1, 10_000)),
                        b"Content-Transfer-Encoding: base64")


def unchanged(rng: random.Random, raw: bytes) -> bytes:
    return raw


MUTATIONS: list[Callable[[random.Random, bytes], bytes]] = [
    cut, flip, insert_junk, repeat_header, huge_content_type, many_recipients, hostile_from,
    bad_charset, deep_nesting, long_lines, one_long_line, garbage, base64_noise, unchanged]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not CORPUS.is_dir():
        print(f"the shared corpus is missing at {CORPUS}", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    sources = _sources()
    catalog = load_catalog(ROOT / "schedules")
    times: list[tuple[float, str, str]] = []
    exceptions: list[str] = []
    outcomes: Counter[str] = Counter()
    for n in range(args.n):
        name, source = rng.choice(sources)
        mutation = rng.choice(MUTATIONS)
        raw = mutation(rng, source)
        started = time.process_time()
        try:
            result = read(raw, catalog, now=NOW, inbox_address=INBOX, max_bytes=MAX_BYTES,
                          size=len(raw), message_id=f"<bench-{n}@test>")
        except Exception:  # noqa: BLE001 - counted: read must never raise
            exceptions.append(f"{mutation.__name__} on {name}: {traceback.format_exc(limit=3)}")
            continue
        elapsed = time.process_time() - started
        times.append((elapsed, mutation.__name__, name))
        outcomes["quarantined" if isinstance(result, str) else result.kind.value] += 1
    durations = sorted(t for t, _m, _n in times)
    over_100 = sum(1 for t in durations if t > 0.100)
    over_250 = sum(1 for t in durations if t > 0.250)
    print(f"messages: {args.n} (seed {args.seed}), from {len(sources)} corpus files, "
          f"{len(MUTATIONS)} mutations")
    print(f"exceptions: {len(exceptions)} (target 0)")
    for text in exceptions[:5]:
        print("  " + text.replace("\n", "\n  "))
    print(f"time per message: median {statistics.median(durations) * 1000:.2f} ms, "
          f"99th percentile {durations[int(len(durations) * 0.99)] * 1000:.1f} ms, "
          f"slowest {durations[-1] * 1000:.0f} ms")
    print(f"over 100 ms: {over_100}; over 250 ms: {over_250} (target 0)")
    by_mutation: dict[str, float] = {}
    for elapsed, mutation_name, _n in times:
        by_mutation[mutation_name] = max(by_mutation.get(mutation_name, 0.0), elapsed)
    print("slowest per mutation: " + ", ".join(
        f"{m} {t * 1000:.0f} ms" for m, t in sorted(by_mutation.items(), key=lambda x: -x[1])))
    for elapsed, mutation_name, name in sorted(times, reverse=True)[:5]:
        print(f"  {elapsed * 1000:7.1f} ms  {mutation_name} on {name}")
    print("read as: " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    ok = not exceptions and over_250 == 0
    print(("PASS" if ok else "MISS") + ": no exception, none over 250 ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
