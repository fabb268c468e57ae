#!/usr/bin/env bash
# CPU and memory of one browser (WebRTC: ICE-lite, DTLS-SRTP) agent leg beside one plain
# RTP agent leg, measured in the same process and run (bench/webrtc_leg.rs): LEGS legs
# of each kind, SECS seconds of 20 ms G.711 frames both ways per leg; only the server
# side's work is timed (the simulated browsers' is not). In memory: no sockets, so it
# measures the legs' media work, not the kernel's UDP path (bench/concurrent-media.sh
# measures that for plain RTP calls).
#
#   bench/webrtc-leg.sh [LEGS] [SECS]        (default 50 legs, 20 s; release build)
#
# Measured: see bench/RESULTS.md ("WebRTC leg").
set -euo pipefail
cd "$(dirname "$0")/.."
LEGS=${1:-50} SECS=${2:-20} cargo bench --bench webrtc_leg
