#!/usr/bin/env bash
# Every form of every workload that has twins (quiet, --loaded, --hog, threadsafe_idle) runs once
# with a small N and prints one JSON line with the keys of ../shared/bench/WORKLOADS.md; a form a
# workload does not have is refused; `summary` prints a row per form; --backend reaches every loop
# (the example servers' too) and the JSON names the backend used. Figures are not checked.
#   bash tools/bench/smoke.sh [path/to/coil-bench]     (default: build/coil-bench)
set -euo pipefail
bench=${1:-build/coil-bench}
exec python3 - "$bench" <<'EOF'
import json, subprocess, sys

bench = sys.argv[1]
runs = [
    ("spawn", None, 2000), ("spawn", "--loaded", 2000),
    ("switch", None, 2000), ("switch", "--loaded", 2000),
    ("queue", None, 2000), ("queue", "--loaded", 2000),
    ("timeouts", None, 2000), ("timeouts", "--loaded", 2000),
    ("threadsafe", None, 2000), ("threadsafe", "--hog", 2000),
    ("threadsafe_idle", None, 2000), ("threadsafe_idle", "--hog", 2000),
    ("to_thread", None, 2000), ("to_thread", "--hog", 2000),
    ("shard_pingpong", None, 2000), ("shard_pingpong", "--hog", 2000),
]
keys = {"workload", "form", "impl", "backend", "n", "metric", "value", "unit", "peak_rss_kb"}
failed = 0

def fail(what, why):
    global failed
    failed += 1
    print(f"FAIL {what}: {why}")

for name, flag, n in runs:
    argv = [bench, name, "--n", str(n)] + ([flag] if flag else [])
    what = " ".join(argv[1:])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    lines = p.stdout.splitlines()
    if p.returncode != 0 or len(lines) != 1:
        fail(what, f"exit {p.returncode}, {len(lines)} lines, stderr: {p.stderr.strip()}")
        continue
    try:
        j = json.loads(lines[0])
    except ValueError as e:
        fail(what, f"not JSON ({e}): {lines[0]}")
        continue
    form = flag[2:] if flag else "quiet"
    if not keys <= j.keys():
        fail(what, f"missing {sorted(keys - j.keys())}")
    elif (j["workload"], j["form"], j["impl"], j["n"]) != (name, form, "coil", n):
        fail(what, f"says {j['workload']} {j['form']} {j['impl']} n={j['n']}")
    elif j["backend"] not in ("io_uring", "epoll"):
        fail(what, f"backend {j['backend']!r}")
    elif not (isinstance(j["value"], (int, float)) and j["value"] > 0):
        fail(what, f"value {j['value']!r}")
    elif name.startswith("threadsafe") and not ({"round_trip_median_us", "round_trip_p99_us"} <= j.keys()):
        fail(what, "no round-trip median and p99")
    else:
        print(f"ok   {what}: {j['value']} {j['unit']}")

for argv in (["sleepers", "--loaded"], ["switch", "--hog"], ["threadsafe", "--loaded", "--hog"]):
    p = subprocess.run([bench] + argv, capture_output=True, text=True, timeout=60)
    if p.returncode != 2 or p.stdout:
        fail(" ".join(argv), f"accepted (exit {p.returncode}), want a refusal")
    else:
        print(f"ok   {' '.join(argv)}: refused")

p = subprocess.run([bench, "summary", "--runs", "1", "queue", "to_thread"], capture_output=True, text=True,
                   timeout=300)
rows = {tuple(line.split()[:2]) for line in p.stdout.splitlines()}
want = {("queue", "quiet"), ("queue", "loaded"), ("to_thread", "quiet"), ("to_thread", "hog")}
if p.returncode != 0 or not want <= rows:
    fail("summary", f"exit {p.returncode}, rows {sorted(rows)}")
else:
    print("ok   summary: a row per form")
# --backend: an in-process workload, a runtime's shards and an example server, on each backend.
for backend in ("io_uring", "epoll"):
    for argv in (["spawn", "--n", "2000"], ["shard_pingpong", "--n", "2000"], ["echo", "--seconds", "1"]):
        argv = argv + ["--backend", backend]
        what = " ".join(argv)
        p = subprocess.run([bench] + argv, capture_output=True, text=True, timeout=120)
        try:
            j = json.loads(p.stdout.splitlines()[0]) if p.returncode == 0 else {}
        except (ValueError, IndexError):
            j = {}
        if j.get("backend") != backend:
            fail(what, f"exit {p.returncode}, backend {j.get('backend')!r}, stderr: {p.stderr.strip()}")
        else:
            print(f"ok   {what}: ran on {backend}")
    p = subprocess.run([bench, "summary", "--runs", "1", "--backend", backend, "spawn"], capture_output=True,
                       text=True, timeout=120)
    if p.returncode != 0 or f"backend={backend}" not in p.stdout:
        fail(f"summary --backend {backend}", f"exit {p.returncode}: {p.stdout.strip()} {p.stderr.strip()}")
    else:
        print(f"ok   summary --backend {backend}: its runs say {backend}")
p = subprocess.run([bench, "spawn", "--backend", "junk"], capture_output=True, text=True, timeout=60)
if p.returncode != 2 or p.stdout or "junk" not in p.stderr:
    fail("--backend junk", f"exit {p.returncode}, want a refusal naming it")
else:
    print("ok   --backend junk: refused")
sys.exit(1 if failed else 0)
EOF
