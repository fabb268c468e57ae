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
# PROFILE=dev runs the debug build (`cargo bench --profile dev`), which needs no release
# build of the whole tree.
#
# Memory: the RSS growth counts each leg's simulated browser (str0m too) with it, so
# the server's own share is about half the figure printed.
#
# Measured 2026-12-08, DEBUG build only (PROFILE=dev; the release build did not finish
# on the shared 2-core machine in time), load average ~5 from other builds:
#   PROFILE=dev bench/webrtc-leg.sh 20 5  → webrtc 71.7 µs/frame (0.72 % of a core per
#     leg), 651 KiB per leg+browser; plain 6.8 µs/frame (0.07 %): CPU 10.5x
#   PROFILE=dev bench/webrtc-leg.sh 50 10 → webrtc 151.8 µs/frame (1.5 %), 334 KiB per
#     leg+browser; plain 8.3 µs/frame (0.08 %): CPU 18.2x
# Release figures: still to be measured.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${PROFILE:-release} == dev ]]; then
  LEGS=${1:-50} SECS=${2:-20} cargo bench --profile dev --bench webrtc_leg
else
  LEGS=${1:-50} SECS=${2:-20} cargo bench --bench webrtc_leg
fi
