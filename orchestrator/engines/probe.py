"""A tiny static probe program per arch, so probing an engine needs no image.

No registry can be assumed reachable, so "can this engine run arm64?" must
not depend on pulling anything. Each probe is a ~250-byte static ELF that
calls statfs("/"), writes the raw struct to stdout and exits 0. Running it in
a `FROM scratch` image of that arch proves the arch runs (natively or through
binfmt/QEMU) and tells the free disk of the engine's storage.

The machine code was assembled from this source (GNU as), per arch:

    x86_64                       aarch64
    mov eax, 137   ; statfs      mov x8, 43    ; statfs
    lea rdi, [rip+path]          adr x0, path
    sub rsp, 128                 sub sp, sp, 128
    mov rsi, rsp                 mov x1, sp
    syscall                      svc 0
    mov eax, 1     ; write       mov x8, 64    ; write
    mov edi, 1                   mov x0, 1
    mov rsi, rsp                 mov x1, sp
    mov edx, 120                 mov x2, 120
    syscall                      svc 0
    mov eax, 60    ; exit        mov x8, 93    ; exit
    xor edi, edi                 mov x0, 0
    syscall                      svc 0
    path: .asciz "/"             path: .asciz "/"

and for the others (the same three system calls; s390x is big-endian and its
`struct statfs` has 32-bit type, block size and flags fields):

    ppc64le (ELFv2)              s390x                      riscv64
    li 0, 99       ; statfs      larl %r2, path             li a7, 43     ; statfs
    bl 1f                        aghi %r15, -128            lla a0, path
    1: mflr 3                    lgr %r3, %r15              addi sp, sp, -128
    addi 3, 3, path-1b           svc 99         ; statfs    mv a1, sp
    addi 1, 1, -128              lghi %r2, 1                ecall
    mr 4, 1                      lgr %r3, %r15              li a7, 64     ; write
    sc                           lghi %r4, 120              li a0, 1
    li 0, 4        ; write       svc 4          ; write     mv a1, sp
    li 3, 1                      lghi %r2, 0                li a2, 120
    mr 4, 1                      svc 1          ; exit      ecall
    li 5, 120                    path: .asciz "/"           li a7, 93     ; exit
    sc                                                      li a0, 0
    li 0, 1        ; exit                                   ecall
    li 3, 0                                                 path: .asciz "/"
    sc
    path: .asciz "/"

(linked at 0x400078 and taken out with `objcopy -O binary -j .text`; riscv64
with `.option norvc, norelax`).
"""

from __future__ import annotations

import io
import struct
import tarfile
from dataclasses import dataclass

from orchestrator.model import Arch

_CODE = {  # arch -> (e_machine, e_flags, code)
    Arch.AMD64: (
        62,
        0,
        "b889000000488d3d290000004881ec800000004889e60f05b801000000bf010000004889e6"
        "ba780000000f05b83c00000031ff0f052f00",
    ),
    Arch.ARM64: (
        183,
        0,
        "680580d280010010ff0302d1e1030091010000d4080880d2200080d2e1030091020f80d2"
        "010000d4a80b80d2000080d2010000d42f00",
    ),
    Arch.PPC64LE: (
        21,
        2,  # ELFv2 ABI
        "6300003805000048a602687c3400633880ff2138780b247c020000440400003801006038"
        "780b247c7800a038020000440100003800006038020000442f00",
    ),
    Arch.S390X: (
        22,
        0,
        "c02000000012a7fbff80b904003f0a63a7290001b904003fa74900780a04a72900000a012f00",
    ),
    Arch.RISCV64: (
        243,
        0,
        "9308b0021705000013054503130101f8930501007300000093080004130510009305010013"
        "068007730000009308d00513050000730000002f00",
    ),
}
_BASE = 0x400000
_EHDR = 64
_PHDR = 56
STATFS_SIZE = 120
PROBE_PATH = "/probe"


def probe_elf(arch: Arch) -> bytes:
    """A static ELF64 executable with one PT_LOAD segment holding the code."""
    machine, flags, code_hex = _CODE[arch]
    code = bytes.fromhex(code_hex)
    size = _EHDR + _PHDR + len(code)
    order = ">" if arch.big_endian else "<"
    ident = b"\x7fELF" + bytes([2, 2 if arch.big_endian else 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack(
        f"{order}HHIQQQIHHHHHH",
        2,  # ET_EXEC
        machine,
        1,  # EV_CURRENT
        _BASE + _EHDR + _PHDR,  # entry
        _EHDR,  # program header offset
        0,  # no section headers
        flags,
        _EHDR,
        _PHDR,
        1,
        0,
        0,
        0,
    )
    phdr = struct.pack(f"{order}IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)  # R+X
    return ehdr + phdr + code


def probe_context(arch: Arch) -> bytes:
    """A docker build context (tar) for `FROM scratch` + the probe."""
    dockerfile = f'FROM scratch\nCOPY probe {PROBE_PATH}\nENTRYPOINT ["{PROBE_PATH}"]\n'
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, mode in (
            ("Dockerfile", dockerfile.encode(), 0o644),
            ("probe", probe_elf(arch), 0o755),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass(frozen=True)
class DiskSpace:
    free_bytes: int
    total_bytes: int


def parse_statfs(raw: bytes, arch: Arch = Arch.AMD64) -> DiskSpace:
    """Decode Linux's 64-bit `struct statfs`: the generic layout (8-byte fields, little
    endian) everywhere but s390x (big endian; 4-byte type, block size and frsize)."""
    if len(raw) < STATFS_SIZE:
        raise ValueError(f"probe wrote {len(raw)} bytes, expected {STATFS_SIZE}")
    if arch is Arch.S390X:
        _ftype, bsize, blocks, _bfree, bavail = struct.unpack_from(">IIQQQ", raw)
        frsize = struct.unpack_from(">I", raw, 60)[0] or bsize
    else:
        _ftype, bsize, blocks, _bfree, bavail = struct.unpack_from("<qqQQQ", raw)
        frsize = struct.unpack_from("<q", raw, 72)[0] or bsize
    return DiskSpace(free_bytes=bavail * frsize, total_bytes=blocks * frsize)
