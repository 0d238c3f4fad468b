"""Throughput and memory of the encrypted file format, against raw AES-GCM.

Run: ``python bench/crypto.py [--size-mb 1024] [--chunk-size 1048576]``

What it prints, all from one run:

- file level: ``encrypt_file`` / ``decrypt_file`` MB/s, and the same file
  work done with bare ``AESGCM`` over the same chunks (same reads, writes,
  fsync and rename, no header, no hashing), as ratios (target >= 0.8x);
- CPU only: the format's stream functions vs bare ``AESGCM`` on in-memory
  chunks (no disk), to show what the format itself costs (mostly the
  plaintext SHA-256, which the format computes and raw AES-GCM does not);
- peak RSS of a child process that encrypts, and one that decrypts, the
  whole file (target < 200 MB: the format streams one chunk at a time).

MB here is 10**6 bytes.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from dubbing_assets.core.crypto import Keyring, decrypt_file, encrypt_file  # noqa: E402
from dubbing_assets.core.crypto import format as fmt  # noqa: E402
from dubbing_assets.core.crypto.files import atomic_output  # noqa: E402

TAG = 16


def make_source(path: Path, size: int, chunk: int) -> None:
    block = bytearray(os.urandom(chunk))
    with open(path, "wb") as fh:
        written = 0
        n = 0
        while written < size:
            block[:8] = n.to_bytes(8, "big")  # no two chunks alike
            part = block[: min(chunk, size - written)]
            fh.write(part)
            written += len(part)
            n += 1
        fh.flush()
        os.fsync(fh.fileno())


def raw_encrypt_file(src: Path, dst: Path, key: bytes, chunk: int) -> None:
    aes = AESGCM(key)
    prefix = os.urandom(8)
    with open(src, "rb") as fh, atomic_output(dst) as out:
        i = 0
        while data := fh.read(chunk):
            out.write(aes.encrypt(prefix + i.to_bytes(4, "big"), data, None))
            i += 1
    dst.with_suffix(".prefix").write_bytes(prefix)


def raw_decrypt_file(src: Path, dst: Path, key: bytes, chunk: int) -> None:
    aes = AESGCM(key)
    prefix = src.with_suffix(".prefix").read_bytes()
    with open(src, "rb") as fh, atomic_output(dst) as out:
        i = 0
        while data := fh.read(chunk + TAG):
            out.write(aes.decrypt(prefix + i.to_bytes(4, "big"), data, None))
            i += 1


class _Repeat(io.RawIOBase):
    """A read-only stream of ``size`` bytes built from one block (CPU-only runs, no disk)."""

    def __init__(self, block: bytes, size: int) -> None:
        self.block, self.left = block, size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self.left, len(self.block))
        buf[:n] = self.block[:n]
        self.left -= n
        return n


class _Null(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        return memoryview(b).nbytes


def cpu_only(size: int, chunk: int, key: bytes) -> dict[str, float]:
    block = os.urandom(chunk)
    aes = AESGCM(key)
    out: dict[str, float] = {}
    t = time.perf_counter()
    for i in range(size // chunk):
        aes.encrypt(b"\0" * 8 + i.to_bytes(4, "big"), block, None)
    out["raw_enc"] = size / (time.perf_counter() - t) / 1e6
    ct = aes.encrypt(b"\0" * 12, block, None)
    t = time.perf_counter()
    for _ in range(size // chunk):
        aes.decrypt(b"\0" * 12, ct, None)
    out["raw_dec"] = size / (time.perf_counter() - t) / 1e6
    enc = io.BytesIO()
    small = min(size, 64 * chunk)  # decrypt input must be real ciphertext: keep it in memory
    t = time.perf_counter()
    fmt.encrypt_stream(_Repeat(block, size), _Null(), key=key, key_id="bench", plaintext_length=size,
                       chunk_size=chunk)
    out["fmt_enc"] = size / (time.perf_counter() - t) / 1e6
    fmt.encrypt_stream(_Repeat(block, small), enc, key=key, key_id="bench", plaintext_length=small,
                       chunk_size=chunk)
    loops = max(1, size // small)
    t = time.perf_counter()
    for _ in range(loops):
        enc.seek(0)
        header = fmt.parse_header(enc)
        fmt.decrypt_stream(enc, _Null(), header, fmt.select_key(header, [("bench", key)]))
    out["fmt_dec"] = loops * small / (time.perf_counter() - t) / 1e6
    return out


_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from dubbing_assets.core.crypto import Keyring, decrypt_file, encrypt_file
ring = Keyring.from_env_key(sys.argv[3])
mode, src, dst, chunk = sys.argv[2], Path(sys.argv[4]), Path(sys.argv[5]), int(sys.argv[6])
t = time.perf_counter()
if mode == "encrypt":
    encrypt_file(src, dst, ring, chunk_size=chunk)
elif mode == "decrypt":
    decrypt_file(src, dst, ring)
secs = time.perf_counter() - t
hwm = None
try:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
except OSError:
    pass
print(json.dumps({"hwm_kib": hwm, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "seconds": secs}))
"""


def child_rss(mode: str, b64key: str, src: Path, dst: Path, chunk: int) -> dict[str, float]:
    """Run one encryption or decryption in a fresh interpreter and return its own peak RSS in KiB.

    The peak is the child's VmHWM (/proc): on Linux, getrusage's ru_maxrss of
    a fresh child also counts the parent's pages at fork (the high-water mark
    survives exec), which would blame the format for this script's memory.
    getrusage is the fallback where /proc is missing.
    """
    cmd = [sys.executable, "-c", _CHILD, str(ROOT), mode, b64key, str(src), str(dst), str(chunk)]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["peak_kib"] = result["hwm_kib"] or result["maxrss_kib"]
    return result


def timed(fn: Callable[..., object], *args: object) -> float:
    """Seconds for one call, started with no dirty pages pending (so earlier writes are not billed)."""
    os.sync()
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024, help="file size in MiB (default 1024 = 1 GiB)")
    ap.add_argument("--chunk-size", type=int, default=1 << 20, help="chunk size in bytes (default 1 MiB)")
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: system temp)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings (default 3; disks are noisy)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = ap.parse_args(argv)
    size, chunk = args.size_mb << 20, args.chunk_size
    key = os.urandom(32)
    b64 = base64.b64encode(key).decode()
    ring = Keyring.from_env_key(b64)
    with tempfile.TemporaryDirectory(prefix="dubtmp_bench_", dir=args.dir) as tmp:
        d = Path(tmp)
        src, enc, out = d / "plain.bin", d / "file.enc", d / "file.out"
        raw_enc, raw_out = d / "raw.enc", d / "raw.out"
        print(f"size {args.size_mb} MiB, chunk {chunk} bytes, scratch {d}")
        make_source(src, size, chunk)
        best: dict[str, float] = {}
        for _ in range(max(1, args.repeat)):
            runs = {
                "raw_enc": timed(raw_encrypt_file, src, raw_enc, key, chunk),
                "fmt_enc": timed(lambda: encrypt_file(src, enc, ring, chunk_size=chunk)),
                "raw_dec": timed(raw_decrypt_file, raw_enc, raw_out, key, chunk),
                "fmt_dec": timed(lambda: decrypt_file(enc, out, ring)),
            }
            for name, secs in runs.items():
                best[name] = min(best.get(name, float("inf")), secs)
        mbs = {k: size / v / 1e6 for k, v in best.items()}
        for done in (raw_enc, raw_out, enc, out):
            done.unlink()
        cpu = cpu_only(size, chunk, key)
        rss_enc = child_rss("encrypt", b64, src, d / "rss.enc", chunk)
        rss_dec = child_rss("decrypt", b64, d / "rss.enc", d / "rss.out", chunk)
        rss_idle = child_rss("none", b64, src, d / "x", chunk)

    def ratio(a: float, b: float) -> str:
        r = a / b
        return f"{r:.2f}x {'ok' if r >= 0.8 else 'BELOW 0.8x target'}"

    print("file level (read, encrypt/decrypt, write, fsync, rename):")
    print(f"  encrypt: format {mbs['fmt_enc']:8.0f} MB/s   raw AESGCM {mbs['raw_enc']:8.0f} MB/s   "
          f"ratio {ratio(mbs['fmt_enc'], mbs['raw_enc'])}")
    print(f"  decrypt: format {mbs['fmt_dec']:8.0f} MB/s   raw AESGCM {mbs['raw_dec']:8.0f} MB/s   "
          f"ratio {ratio(mbs['fmt_dec'], mbs['raw_dec'])}")
    print("CPU only (in memory, no disk; the format also hashes the plaintext with SHA-256):")
    print(f"  encrypt: format {cpu['fmt_enc']:8.0f} MB/s   raw AESGCM {cpu['raw_enc']:8.0f} MB/s   "
          f"ratio {cpu['fmt_enc'] / cpu['raw_enc']:.2f}x")
    print(f"  decrypt: format {cpu['fmt_dec']:8.0f} MB/s   raw AESGCM {cpu['raw_dec']:8.0f} MB/s   "
          f"ratio {cpu['fmt_dec'] / cpu['raw_dec']:.2f}x")
    limit = 200
    for name, r in (("encrypt", rss_enc), ("decrypt", rss_dec)):
        peak = r["peak_kib"] / 1024
        print(f"peak RSS while {name}ing {args.size_mb} MiB in a child process: {peak:.1f} MiB "
              f"({'ok' if peak < limit else 'ABOVE'} < {limit} MB target; interpreter and imports alone: "
              f"{rss_idle['peak_kib'] / 1024:.1f} MiB)")
    if args.json:
        print(json.dumps({"size_mb": args.size_mb, "chunk": chunk, "file_mb_s": mbs, "cpu_mb_s": cpu,
                          "rss_kib": {"encrypt": rss_enc["peak_kib"], "decrypt": rss_dec["peak_kib"],
                                      "idle": rss_idle["peak_kib"]}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
