#!/usr/bin/env bash
# Custody's main job on embedded defaults: `custody protect` on a sample
# dataset. It runs in the foreground until Ctrl-C: change files under the
# printed directory and watch versions and audit entries appear, through the
# API (the printed token) or `custody --server URL ...`.
#
# With --check (what CI runs) it does that by itself: starts protect, changes
# the data, checks through the API that the change was versioned and recorded
# with who made it, stops, restarts (no new admin token, the same versions),
# stops again, and checks the vault. Everything lives in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
check=false
[[ ${1:-} == --check ]] && check=true
work=$(mktemp -d)
pid=
cleanup() {
	[[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/custody" ./cmd/custody
export CUSTODY_DATA_DIR=$work/home # vault, catalog, certificate: nothing outside $work
unset CUSTODY_PASSWORD CUSTODY_PASSWORD_FILE CUSTODY_VAULT CUSTODY_CATALOG CUSTODY_CONFIG CUSTODY_SERVER CUSTODY_TOKEN

data=$work/sample-data
mkdir -p "$data/train" "$data/labels"
for i in $(seq 1 20); do head -c $((4096 * i)) /dev/urandom >"$data/train/sample$i.bin"; done
seq 1 5000 | sed 's/^/label,/' >"$data/labels/labels.csv"

if ! $check; then
	echo "protecting $data (change files there; Ctrl-C stops)"
	"$work/custody" protect "$data" --snapshot-quiet 10s || true
	exit 0
fi

start() { # starts protect in the background; waits until it is ready
	: >"$work/out"
	"$work/custody" protect "$data" --address 127.0.0.1:0 --snapshot-quiet 1s --snapshot-every 0 >"$work/out" 2>"$work/err" &
	pid=$!
	for _ in $(seq 1 300); do
		if grep -q "Ctrl-C stops" "$work/out"; then
			url=$(sed -n 's/^API: *\(https:[^ ]*\)\/api\/v1 .*/\1/p' "$work/out")
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || { cat "$work/out" "$work/err"; echo "protect exited early"; exit 1; }
		sleep 0.1
	done
	cat "$work/out" "$work/err"
	echo "protect did not become ready"
	exit 1
}
stop() {
	kill -TERM "$pid"
	wait "$pid" || { cat "$work/err"; echo "protect did not stop cleanly"; exit 1; }
	pid=
}
api() { "$work/custody" --server "$url" --server-ca "$work/home/tls/cert.pem" "$@"; }

start
cat "$work/out"
CUSTODY_TOKEN=$(sed -n 's/^admin token: *\(cst_[^ ]*\).*/\1/p' "$work/out")
export CUSTODY_TOKEN
[[ -n $url && -n $CUSTODY_TOKEN ]] || { echo "no URL or admin token printed"; exit 1; }

echo "relabelled" >>"$data/labels/labels.csv"
rm "$data/train/sample1.bin"
for _ in $(seq 1 300); do # the quiet-period snapshot
	[[ $(api log --json | grep -c '"id"') -ge 2 ]] && break
	sleep 0.1
done
echo "+ custody --server $url log"
api log
[[ $(api log --json | grep -c '"id"') -ge 2 ]] || { echo "the change was not versioned"; exit 1; }
echo "+ custody --server $url audit log --path $data/labels/labels.csv"
api audit log --path "$data/labels/labels.csv" | tee "$work/audit"
grep -q "file\." "$work/audit" || { echo "the change is not in the audit log"; exit 1; }
stop

start
if grep -q "cst_" "$work/out"; then echo "a restart printed a new admin token"; exit 1; fi
[[ $(api log --json | grep -c '"id"') -ge 2 ]] || { echo "versions lost over a restart"; exit 1; }
stop

CUSTODY_PASSWORD_FILE=$work/home/passphrase CUSTODY_VAULT=$work/home/vault "$work/custody" check --read-data
echo "protect OK: changes versioned and audited through the API, stopped and resumed cleanly"
