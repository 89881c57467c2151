"""A dependency-free PNG of the cost-quality curve: PGR against the share of strong-model calls."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from router_lab.evals.metrics import Curve

W, H, PAD = 480, 360, 40


def _png(pixels: list[bytearray]) -> bytes:
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def write_curve_png(path: Path, router: Curve, baseline: Curve | None = None) -> None:
    """Blue: the router; grey: the baseline (prompt length); light grey: random (the diagonal)."""
    px = [bytearray(b"\xff" * (W * 3)) for _ in range(H)]

    def dot(x: float, y: float, rgb: tuple[int, int, int], size: int = 1) -> None:
        cx = PAD + int(x * (W - 2 * PAD))
        cy = H - PAD - int(max(-0.1, min(1.1, y)) * (H - 2 * PAD))
        for dx in range(-size, size + 1):
            for dy in range(-size, size + 1):
                if 0 <= cx + dx < W and 0 <= cy + dy < H:
                    px[cy + dy][3 * (cx + dx):3 * (cx + dx) + 3] = bytes(rgb)

    def line(c: Curve, rgb: tuple[int, int, int], size: int) -> None:
        step = max(1, len(c.share) // 800)
        for s, p in list(zip(c.share, c.pgr, strict=True))[::step]:
            dot(s, p, rgb, size)

    for i in range(0, 1001):
        t = i / 1000
        dot(t, 0, (0, 0, 0), 0)
        dot(0, t, (0, 0, 0), 0)
        dot(t, t, (200, 200, 200), 0)
    if baseline is not None:
        line(baseline, (140, 140, 140), 1)
    line(router, (30, 90, 200), 1)
    path.write_bytes(_png(px))
