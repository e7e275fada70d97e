"""Build the crafted decoder-bomb files of this folder (``python -m tests.audio.corpus.make_corpus``).

The FLAC bombs are written bit by bit (a tiny bit writer + the FLAC CRC-8/CRC-16), so they do not depend
on any encoder: a valid STREAMINFO and a first 48 kHz frame, then frames whose headers claim absurd
sample rates (1–10 Hz) or another channel count. Every subframe is CONSTANT (silence), so each frame is a
handful of bytes however many samples it claims. Running the module rewrites the files; the test suite
reads the committed bytes (and checks that this generator still reproduces them).
"""

from __future__ import annotations

import struct
import sys
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def put(self, value: int, width: int) -> None:
        for i in range(width - 1, -1, -1):
            self.bits.append((value >> i) & 1)

    def align(self) -> None:
        while len(self.bits) % 8:
            self.bits.append(0)

    def bytes(self) -> bytes:
        assert len(self.bits) % 8 == 0
        return bytes(int("".join(map(str, self.bits[i : i + 8])), 2) for i in range(0, len(self.bits), 8))


def crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def _utf8_number(n: int) -> bytes:
    """FLAC's UTF-8-like coding of the frame number (small numbers only)."""
    assert 0 <= n < 0x800
    if n < 0x80:
        return bytes([n])
    return bytes([0xC0 | (n >> 6), 0x80 | (n & 0x3F)])


def streaminfo(rate: int, channels: int, bps: int = 8, block: int = 4608, total: int = 0) -> bytes:
    w = BitWriter()
    w.put(1, 1)  # last metadata block
    w.put(0, 7)  # STREAMINFO
    w.put(34, 24)
    w.put(block, 16)  # min block size
    w.put(block, 16)  # max block size
    w.put(0, 24)  # min frame size (unknown)
    w.put(0, 24)  # max frame size (unknown)
    w.put(rate, 20)
    w.put(channels - 1, 3)
    w.put(bps - 1, 5)
    w.put(total, 36)
    w.put(0, 128)  # MD5 unknown
    return b"fLaC" + w.bytes()


_RATE_CODES = {88200: 1, 176400: 2, 192000: 3, 8000: 4, 16000: 5, 22050: 6, 24000: 7,
               32000: 8, 44100: 9, 48000: 10, 96000: 11}  # fmt: skip


@cache
def frame(number: int, rate: int, channels: int, block: int, bps: int = 8) -> bytes:
    """One fixed-blocksize FLAC frame of ``block`` silent samples per channel claiming ``rate`` Hz."""
    assert 1 <= block <= 65535 and bps == 8
    w = BitWriter()
    w.put(0b11111111111110, 14)  # sync
    w.put(0, 1)  # reserved
    w.put(0, 1)  # fixed blocksize
    w.put(0b0111, 4)  # block size: 16-bit (block-1) at the end of the header
    if rate in _RATE_CODES:
        rate_code, rate_tail = _RATE_CODES[rate], None
    else:
        assert rate < 65536
        rate_code, rate_tail = 0b1101, rate  # 16-bit rate in Hz at the end of the header
    w.put(rate_code, 4)
    w.put(channels - 1, 4)  # independent channels
    w.put(0b001, 3)  # 8 bits per sample
    w.put(0, 1)  # reserved
    head = w.bytes() + _utf8_number(number)
    head += (block - 1).to_bytes(2, "big")
    if rate_tail is not None:
        head += rate_tail.to_bytes(2, "big")
    head += bytes([crc8(head)])
    w = BitWriter()
    for _ in range(channels):
        w.put(0, 1)  # padding
        w.put(0, 6)  # CONSTANT subframe
        w.put(0, 1)  # no wasted bits
        w.put(0, bps)  # the constant: silence
    w.align()
    body = head + w.bytes()
    return body + crc16(body).to_bytes(2, "big")


def flac(frames: list[tuple[int, int, int]], *, rate: int = 48000, channels: int = 1) -> bytes:
    """A FLAC stream: STREAMINFO for ``rate``/``channels``, then ``(rate, channels, block)`` frames."""
    out = streaminfo(rate, channels, block=max(b for _, _, b in frames))
    for i, (r, c, b) in enumerate(frames):
        out += frame(i % 0x800, r, c, b)
    return out


def wav(channels: int, rate: int, bits: int, payload: bytes) -> bytes:
    """A PCM WAV whose ``fmt`` chunk claims ``channels``/``rate``/``bits`` (block align derived)."""
    align = max(channels, 0) * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload))
    return b"RIFF" + struct.pack("<I", len(body) + len(payload)) + body + payload


def corpus() -> dict[str, bytes]:
    """Every generated corpus file, by name."""
    return {
        # the bomb: a 48 kHz frame, then frames claiming 1-10 Hz (each resampled to 48 kHz
        # by the old decoder before any limit was checked: ~885 MB for the 1 Hz frame alone)
        "flac_rate_drop_1_10hz.flac": flac(
            [(48000, 1, 4608), (1, 1, 4608), (10, 1, 4608), (2, 1, 4608), (5, 1, 4608)]
        ),
        # one 65535-sample frame at 1 Hz after a 48 kHz one: the old decoder asked for ~12.6 GB
        "flac_rate_drop_1hz_65535.flac": flac([(48000, 1, 4608), (1, 1, 65535), (1, 1, 65535)]),
        # a modest drop (48 kHz → 8 kHz): still refused, a mid-stream rate change is never accepted
        "flac_rate_change_8k.flac": flac([(48000, 1, 4608)] * 2 + [(8000, 1, 4608)] * 2),
        # STREAMINFO and every frame say 3 Hz: a rate no real audio has
        "flac_rate_3hz.flac": flac([(3, 1, 4608)] * 3, rate=3),
        # mono, then a frame claiming 8 channels (a channel-count change midway)
        "flac_channels_1_to_8.flac": flac([(48000, 1, 4608), (48000, 8, 65535), (48000, 8, 65535)]),
        # a WAV claiming 0 channels: FFmpeg opens no decoder for it; an early draft of the hardened
        # decoder read the stream's rate from that missing decoder and answered 500 (found by the fuzz)
        "wav_zero_channels.wav": wav(0, 16000, 16, bytes(200)),
        # 40 000 frames of 16 samples at 96 kHz (11 bytes each, 6.7 s of audio): inside every sample
        # limit, but each frame costs the decoder the same fixed time: ~6 s of CPU for 440 kB
        "flac_tiny_frames_96k.flac": flac([(96000, 1, 16)] * 40_000, rate=96000),
    }


def main() -> int:
    for name, data in corpus().items():
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
