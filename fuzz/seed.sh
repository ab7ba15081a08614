#!/usr/bin/env bash
# Seed the fuzz corpora from the public pcap corpus:
#   corpus/engine/, corpus/capture/  every capture file as it is
#   corpus/parse/                    each file's first frames, as link-type byte + frame
#   corpus/repr/                     the Ethernet ones among them, without that byte
# The pcap corpus is $RSTWALL_CORPUS, or ../shared/corpus beside the repo.
set -euo pipefail
cd "$(dirname "$0")"
repo=$(cd .. && pwd)
src=${RSTWALL_CORPUS:-$repo/../shared/corpus}
if [[ ! -d $src ]]; then
    echo "seed.sh: no pcap corpus at $src (set RSTWALL_CORPUS)" >&2
    exit 1
fi
mkdir -p corpus/engine corpus/capture corpus/parse
n=0
while IFS= read -r -d '' f; do
    # Flatten the path into the name so files of the same name do not clash.
    name=${f#"$src"/}
    name=${name//\//__}
    cp "$f" "corpus/engine/$name"
    cp "$f" "corpus/capture/$name"
    n=$((n + 1))
done < <(find "$src" -type f \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.pcap.*' -o -name '*.cap' \) -print0)
echo "seed.sh: $n capture files into corpus/engine and corpus/capture"
# A plain (uninstrumented) build is enough to split the files into frames.
cargo run --quiet --release --example extract_frames -- corpus/parse corpus/engine/*
# `repr` takes bare Ethernet frames: those whose link-type byte is 0.
mkdir -p corpus/repr
m=0
for f in corpus/parse/*; do
    if [[ $(head -c 1 "$f" | od -An -tu1 | tr -d ' ') == 0 ]]; then
        tail -c +2 "$f" >"corpus/repr/$(basename "$f")"
        m=$((m + 1))
    fi
done
echo "seed.sh: $m Ethernet frames into corpus/repr"
