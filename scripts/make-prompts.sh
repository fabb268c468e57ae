#!/usr/bin/env bash
# Generates the Mandarin IVR prompts as 8 kHz mono 16-bit WAV files.
#
#   scripts/make-prompts.sh [PROMPT_DIR]        (default: config/prompts/zh)
#
# Reads PROMPT_DIR/prompts.toml (`id = "text"` lines under [prompts]) and writes
# PROMPT_DIR/<id>.wav for each, plus the synthesized beep.wav and hold_music.wav.
# Needs espeak-ng and sox (Debian: apt-get install espeak-ng sox).
#
# The voice is cmn-latn-pinyin: the default `cmn` voice switches to English for many
# characters and reads their pinyin with tone digits.
set -euo pipefail

dir="${1:-config/prompts/zh}"
texts="$dir/prompts.toml"
voice="${ESPEAK_VOICE:-cmn-latn-pinyin}"
speed="${ESPEAK_SPEED:-165}"

for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "make-prompts: $tool not found" >&2; exit 1; }
done
[[ -f "$texts" ]] || { echo "make-prompts: $texts not found" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 8 kHz mono 16-bit, low rumble removed, peak normalised to -3 dBFS (the first gain
# leaves the high-pass filter headroom, so it does not clip).
to_telephone() { # in out [extra effects before the filter]
  local in="$1" out="$2"
  shift 2
  sox "$in" -r 8000 -c 1 -b 16 "$out" "$@" rate 8000 gain -6 highpass 100 gain -n -3
}

# Speech: cut the synthesizer's leading/trailing silence and leave a short, even gap,
# so prompts chained in one play list (numbers, hours) sound like one sentence.
trim_speech=(silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0.05 0.15)

count=0
section=""
while IFS= read -r line || [[ -n "$line" ]]; do
  # Strip surrounding blanks; skip blank lines and comments.
  line="${line#"${line%%[![:space:]]*}"}"
  [[ -z "$line" || "$line" == \#* ]] && continue
  if [[ "$line" =~ ^\[([A-Za-z0-9_.-]+)\]$ ]]; then
    section="${BASH_REMATCH[1]}"
    continue
  fi
  [[ "$section" == "prompts" ]] || continue
  if [[ "$line" =~ ^([a-z0-9_]+)[[:space:]]*=[[:space:]]*\"([^\"]*)\"[[:space:]]*(#.*)?$ ]]; then
    id="${BASH_REMATCH[1]}"
    text="${BASH_REMATCH[2]}"
    espeak-ng -v "$voice" -s "$speed" -w "$tmp/$id.wav" "$text"
    to_telephone "$tmp/$id.wav" "$dir/$id.wav" "${trim_speech[@]}"
    count=$((count + 1))
  else
    echo "make-prompts: cannot read line of $texts: $line" >&2
    exit 1
  fi
done < "$texts"

# Beep: 1 kHz, 300 ms, with 10 ms fades so it does not click.
sox -n -r 8000 -c 1 -b 16 "$tmp/beep.wav" synth 0.3 sine 1000 fade t 0.01 0.3 0.01
to_telephone "$tmp/beep.wav" "$dir/beep.wav"

# Hold music: four soft chords (C, Am, F, G), 2.5 s each, plucked and faded, ~10 s,
# made to loop seamlessly (each chord fades in and out).
chords=("C4 E4 G4 C5" "A3 C4 E4 A4" "F3 A3 C4 F4" "G3 B3 D4 G4")
parts=()
for index in "${!chords[@]}"; do
  notes=()
  for note in ${chords[$index]}; do
    sox -n -r 8000 -c 1 -b 16 "$tmp/note-$index-$note.wav" synth 2.5 pluck "$note" vol 0.25
    notes+=("$tmp/note-$index-$note.wav")
  done
  sox -m "${notes[@]}" "$tmp/chord-$index.wav" fade t 0.05 2.5 0.6
  parts+=("$tmp/chord-$index.wav")
done
sox "${parts[@]}" "$tmp/hold.wav" lowpass 2500 reverb 30
to_telephone "$tmp/hold.wav" "$dir/hold_music.wav"

echo "make-prompts: $count spoken prompts, beep and hold_music written to $dir"
du -ch "$dir"/*.wav | tail -n 1
