#!/usr/bin/env python3
"""INVITE flood against a running hotline (127.0.0.1 only): N INVITEs that are never
ACKed, from one address, 2 ms apart. Prints the server's RSS before, right after the
flood and WAIT seconds later (once the admitted calls ended), and the responses seen.

    python3 bench/invite-flood.py PID SIP_PORT [N=1500] [WAIT=75]

The server must list 127.0.0.1 as a trunk (the shipped config does). What it measures:
how many un-ACKed calls one source can hold ([sip] max_unconfirmed_calls_per_source),
and whether memory returns to its idle level afterwards.
"""
import re
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def main():
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
    wait = float(sys.argv[4]) if len(sys.argv) > 4 else 75.0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.001)
    local = sock.getsockname()[1]
    codes = {}

    def drain():
        try:
            while True:
                text = sock.recv(65535).decode(errors="replace")
                m = re.match(r"SIP/2.0 (\d+)", text)
                if m:
                    codes[m.group(1)] = codes.get(m.group(1), 0) + 1
        except socket.timeout:
            pass

    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=audio 9 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n")
    print(f"idle rss KiB {rss_kib(pid)}")
    for i in range(count):
        invite = (
            f"INVITE sip:053112348@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-flood{i};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:053188880{i % 1000:03d}@127.0.0.1>;tag=f{i}\r\n"
            f"To: <sip:053112348@127.0.0.1>\r\nCall-ID: flood-{i}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:x@127.0.0.1:{local}>\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
        )
        sock.sendto(invite.encode(), ("127.0.0.1", port))
        time.sleep(0.002)
        drain()
    print(f"after the flood rss KiB {rss_kib(pid)}")
    end = time.time() + wait
    while time.time() < end:
        drain()
    print(f"{wait:.0f} s later rss KiB {rss_kib(pid)}")
    print(f"responses {codes}")


if __name__ == "__main__":
    main()
