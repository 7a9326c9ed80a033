#!/usr/bin/python3
"""Hostile NBD clients for the memory test: usage nbd_fuzz.py SOCKET EXPORT COUNT SEED.

Each input is one connection to the unix socket SOCKET carrying a mutated conversation: garbage
instead of a handshake, a handshake whose options are mutated (lengths, names, meta contexts,
truncation), or a correct handshake into transmission followed by a mutated request stream (bad
magic, unknown commands and flags, out-of-range offsets, huge lengths with short payloads). The
client reads what the server sends for a moment, then closes, sometimes with a reset. Prints how
many inputs reached transmission.
"""
import os
import random
import socket
import struct
import sys

path, export, count, seed = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513


def opt(code, data):
    return struct.pack(">QII", IHAVEOPT, code, len(data)) + data


def go(name):
    return opt(7, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))


def meta(name, query):
    return opt(10, struct.pack(">I", len(name)) + name + struct.pack(">I", 1) + struct.pack(">I", len(query)) + query)


def request(cmd, offset, length, flags=0, cookie=None):
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie if cookie is not None else rnd.getrandbits(64), offset, length)


def mutate(data):
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        if not b:
            break
        i = rnd.randrange(len(b))
        kind = rnd.randrange(4)
        if kind == 0:
            b[i] = rnd.randrange(256)
        elif kind == 1:
            del b[i:i + rnd.randint(1, 8)]
        elif kind == 2:
            b[i:i] = os.urandom(rnd.randint(1, 16))
        else:
            b[i:i + 4] = struct.pack(">I", rnd.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x2000000, 0x2000001]))
    return bytes(b)


def recv_exact(s, n):
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            raise EOFError
        got += chunk
    return got


def options():
    parts = [opt(8, b""), meta(export, b"base:allocation"), opt(3, b""), opt(6, struct.pack(">I", len(export)) + export + b"\0\0")]
    rnd.shuffle(parts)
    return b"".join(parts[:rnd.randint(0, len(parts))])


def requests(size):
    out = []
    for _ in range(rnd.randint(1, 12)):
        cmd = rnd.choice([0, 1, 2, 3, 4, 5, 6, 7, 99])
        offset = rnd.choice([0, 4096, size - 4096, size, size + 1, 2**63 - 1, rnd.getrandbits(64)])
        length = rnd.choice([0, 1, 512, 4096, 65536, 0x2000000, 0x2000001, 0xFFFFFFFF])
        flags = rnd.choice([0, 1, 2, 4, 8, 16, 32, 0xFFFF])
        r = request(cmd, offset, length, flags)
        if cmd == 1:
            r += os.urandom(min(length, rnd.choice([0, 100, 4096])))
        out.append(r)
    stream = b"".join(out)
    return mutate(stream) if rnd.random() < 0.5 else stream


def drain(s):
    s.settimeout(0.02)
    try:
        while s.recv(65536):
            pass
    except (socket.timeout, OSError):
        pass


reached = 0
for _ in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.settimeout(5)
        recv_exact(s, 18)
        kind = rnd.randrange(3)
        if kind == 0:
            s.sendall(os.urandom(rnd.randint(0, 4096)))
        elif kind == 1:
            s.sendall(struct.pack(">I", 3) + mutate(options() + go(export)))
        else:
            s.sendall(struct.pack(">I", 3) + opt(8, b"") + go(export))
            size = None
            while True:
                magic, _, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
                data = recv_exact(s, length)
                if magic != REPLY_MAGIC or rtype & 0x80000000:
                    break
                if rtype == 3 and len(data) >= 12 and struct.unpack(">H", data[:2])[0] == 0:
                    size = struct.unpack(">Q", data[2:10])[0]
                if rtype == 1 and size is not None:
                    reached += 1
                    s.sendall(requests(size))
                    break
        drain(s)
    except (OSError, EOFError, struct.error):
        pass
    finally:
        if rnd.random() < 0.3:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
print(reached)
