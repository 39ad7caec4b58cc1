#!/usr/bin/env bash
# Custody's main job until 'custody protect' exists: version a sample dataset,
# change it, version it again, and restore both versions exactly.
# Everything lives in a temporary directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/custody" ./cmd/custody
export CUSTODY_PASSWORD=${CUSTODY_PASSWORD:-roundtrip-demo} CUSTODY_VAULT=$work/vault CUSTODY_CACHE=$work/cache
run() { echo "+ custody $*"; "$work/custody" "$@"; }

data=$work/raw-images
mkdir -p "$data/train/cats" "$data/train/dogs" "$data/labels"
for i in $(seq 1 20); do head -c $((4096 * i)) /dev/urandom >"$data/train/cats/cat$i.bin"; done
for i in $(seq 1 20); do head -c $((2048 * i)) /dev/urandom >"$data/train/dogs/dog$i.bin"; done
seq 1 5000 | sed 's/^/label,/' >"$data/labels/labels.csv"
ln -s labels/labels.csv "$data/latest-labels"

run init
run snapshot -m "first pull" "$data"
v1=$("$work/custody" log --dataset raw-images --json | sed -n 's/.*"version": "\([0-9a-f]*\)".*/\1/p' | head -1)
echo "relabelled" >>"$data/labels/labels.csv"
rm "$data/train/dogs/dog1.bin"
run snapshot -m "relabel, drop a bad sample" "$data"
run log
run diff "$v1" latest
run restore latest --dataset raw-images --target "$work/restored"
diff -r --no-dereference "$data" "$work/restored"
run restore "${v1:0:12}" --target "$work/first"
test ! -e "$work/first/labels/labels.csv" || ! grep -q relabelled "$work/first/labels/labels.csv"
run check --read-data
echo "round trip OK: both versions restored exactly"
