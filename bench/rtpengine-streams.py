#!/usr/bin/env python3
"""Drive rtpengine (ng control protocol, bencode over UDP) as the media anchor of
bench/concurrent-media.sh, on 127.0.0.1 only.

    rtpengine-streams.py NG_PORT STREAMS HOLD_SECS WAV [--direct]

For each of STREAMS calls: `offer` (the caller's SDP, PCMA) then `answer` (the callee's
SDP); rtpengine answers with the relay ports. The caller side then sends the A-law
speech of WAV (looped) as 20 ms RTP packets to the relay, paced on a shared 20 ms clock,
for HOLD_SECS; the callee side receives them. Sender and receiver share one process,
so the one-way delay of every packet is known exactly (send time kept per sequence
number). With --direct the packets go straight from caller to callee socket (no relay):
the same measurement's noise floor (Python's own scheduling), to subtract.

Prints one line of key=value: streams, sent, received, loss_percent, delay_p50_us,
delay_p99_us, delay_max_us. Calls are deleted at the end.
"""

import os
import random
import selectors
import socket
import struct
import sys
import threading
import time


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(type(v))


def bdecode(data, i=0):
    c = data[i : i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1 : end]), end + 1
    if c == b"l":
        out, i = [], i + 1
        while data[i : i + 1] != b"e":
            x, i = bdecode(data, i)
            out.append(x)
        return out, i + 1
    if c == b"d":
        out, i = {}, i + 1
        while data[i : i + 1] != b"e":
            k, i = bdecode(data, i)
            v, i = bdecode(data, i)
            out[k.decode()] = v
        return out, i + 1
    colon = data.index(b":", i)
    n = int(data[i:colon])
    return data[colon + 1 : colon + 1 + n], colon + 1 + n


class Ng:
    def __init__(self, port):
        self.addr = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5)

    def call(self, command):
        cookie = "%x" % random.getrandbits(48)
        self.sock.sendto(cookie.encode() + b" " + bencode(command), self.addr)
        while True:
            data, _ = self.sock.recvfrom(65535)
            got, _, body = data.partition(b" ")
            if got.decode() == cookie:
                reply, _ = bdecode(body)
                if reply.get("result") != b"ok":
                    raise RuntimeError("rtpengine: %r" % reply)
                return reply


def sdp(port, session):
    return (
        "v=0\r\no=- %d 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio %d RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n" % (session, port)
    )


def media_port(text):
    for line in text.decode().splitlines():
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise RuntimeError("no m=audio in %r" % text)


def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def alaw_payloads(path):
    # Python's wave module refuses A-law (format 6): walk the RIFF chunks to "data".
    blob = open(path, "rb").read()
    i, frames = 12, b""
    while i + 8 <= len(blob):
        tag, size = blob[i : i + 4], struct.unpack_from("<I", blob, i + 4)[0]
        if tag == b"data":
            frames = blob[i + 8 : i + 8 + size]
            break
        i += 8 + size + (size & 1)
    # caller-speech-alaw.wav holds A-law bytes; 160 bytes = 20 ms.
    chunks = [frames[i : i + 160] for i in range(0, len(frames) - 159, 160)]
    return chunks or [b"\xd5" * 160]


def main():
    ng_port, streams, hold, wav = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    direct = "--direct" in sys.argv
    payloads = alaw_payloads(wav)
    ng = None if direct else Ng(ng_port)
    callers, callees, targets, calls = [], [], [], []
    for n in range(streams):
        a, b = udp(), udp()
        callers.append(a)
        callees.append(b)
        if direct:
            targets.append(b.getsockname())
            continue
        call_id, from_tag, to_tag = "bench-%d-%d" % (os.getpid(), n), "caller%d" % n, "callee%d" % n
        # The offer's reply is the SDP the callee sees; the answer's reply the SDP the
        # caller sees: rtpengine's port facing the caller, where the caller sends.
        ng.call({"command": "offer", "call-id": call_id, "from-tag": from_tag,
                 "sdp": sdp(a.getsockname()[1], n)})
        answer_port = media_port(
            ng.call({"command": "answer", "call-id": call_id, "from-tag": from_tag,
                     "to-tag": to_tag, "sdp": sdp(b.getsockname()[1], n)})["sdp"])
        targets.append(("127.0.0.1", answer_port))
        calls.append((call_id, from_tag))

    sent_at = [dict() for _ in range(streams)]
    delays, received = [], [0]
    stop = threading.Event()
    index = {s.fileno(): i for i, s in enumerate(callees)}

    def receive():
        sel = selectors.DefaultSelector()
        for s in callees:
            sel.register(s, selectors.EVENT_READ)
        while not stop.is_set():
            for key, _ in sel.select(0.1):
                now = time.monotonic_ns()
                s = key.fileobj
                while True:
                    try:
                        data = s.recv(2048)
                    except BlockingIOError:
                        break
                    if len(data) < 12:
                        continue
                    seq = struct.unpack_from("!H", data, 2)[0]
                    t = sent_at[index[s.fileno()]].pop(seq, None)
                    if t is not None:
                        received[0] += 1
                        delays.append(now - t)

    rx = threading.Thread(target=receive, daemon=True)
    rx.start()
    sent = 0
    ssrcs = [random.getrandbits(32) for _ in range(streams)]
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < hold:
        due = start + tick * 0.02
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        seq = tick & 0xFFFF
        payload = payloads[tick % len(payloads)]
        for n in range(streams):
            header = struct.pack("!BBHII", 0x80, 8, seq, (tick * 160) & 0xFFFFFFFF, ssrcs[n])
            sent_at[n][seq] = time.monotonic_ns()
            try:
                callers[n].sendto(header + payload, targets[n])
                sent += 1
            except BlockingIOError:
                sent_at[n].pop(seq, None)
                sent += 1
        tick += 1
    time.sleep(0.5)
    stop.set()
    rx.join()
    for call_id, from_tag in calls:
        try:
            ng.call({"command": "delete", "call-id": call_id, "from-tag": from_tag})
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass
    delays.sort()

    def pct(p):
        return delays[min(len(delays) - 1, int(len(delays) * p))] // 1000 if delays else -1

    loss = 100.0 * (sent - received[0]) / max(1, sent)
    print("streams=%d sent=%d received=%d loss_percent=%.3f delay_p50_us=%d delay_p99_us=%d delay_max_us=%d"
          % (streams, sent, received[0], loss, pct(0.5), pct(0.99), delays[-1] // 1000 if delays else -1))


if __name__ == "__main__":
    main()
