#!/usr/bin/python3
"""Start-up time for scripts/bench: from exec until the server's NBD greeting arrives.

usage: bench-start.py SOCKET RUNS COMMAND [ARGS...]
Starts COMMAND RUNS times. Each time it measures from just before exec until a connect to the unix
socket SOCKET succeeds and the first 8 bytes of the greeting ("NBDMAGIC") are read, then stops the
server with SIGTERM. Prints the median in milliseconds with one decimal.
"""
import os, signal, socket, statistics, subprocess, sys, time

path, runs, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def greeted():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.settimeout(10)
        got = b""
        while len(got) < 8:
            chunk = s.recv(8 - len(got))
            if not chunk:
                return False
            got += chunk
        if got != b"NBDMAGIC":
            sys.exit(f"unexpected greeting {got!r} from {cmd[0]}")
        return True
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    finally:
        s.close()


times = []
for _ in range(runs):
    if os.path.exists(path):
        os.unlink(path)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = t0 + 30
    while not greeted():
        if p.poll() is not None:
            sys.exit(f"{cmd[0]} exited with {p.returncode} before it accepted a connection")
        if time.perf_counter() > deadline:
            p.kill()
            sys.exit(f"{cmd[0]} did not accept a connection within 30 s")
        time.sleep(0.0005)
    times.append(1000 * (time.perf_counter() - t0))
    p.send_signal(signal.SIGTERM)
    p.wait()
print(f"{statistics.median(times):.1f}")
