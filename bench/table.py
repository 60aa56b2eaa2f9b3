"""Prints BENCHMARKS.md's table (markdown) from the JSON files bench/run.sh wrote."""
import glob
import json
import os
import re
import sys

out = sys.argv[1]


def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else None


print("| what | req/s or img/s | p50 ms | p90 ms | p99 ms | max ms | errors | load avg |")
print("|---|---:|---:|---:|---:|---:|---|---|")
for backend in ("ort", "tract", "ort_int8"):
    e = load(f"engine_{backend}.json")
    for r in (e or {}).get("rows", []):
        g = f", {r['gflops']:.0f} GFLOP/s" if r.get("gflops") else ""
        print(f"| engine {backend} batch {r['batch']}{g} | {r['images_per_second']:.1f} | {r['ms_per_batch_p50']:.1f} /batch | {r['ms_per_batch_p90']:.1f} /batch | | | | |")
names = sorted(glob.glob(os.path.join(out, "fovea_*.json")) + glob.glob(os.path.join(out, "fastapi_c*.json")))
for path in names:
    r = json.load(open(path))
    if "latency_ms" not in r:
        continue
    l = r["latency_ms"]
    label = os.path.basename(path)[:-5]
    errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
    print(f"| {label} | {r['requests_per_second']:.1f} | {l['p50']:.1f} | {l['p90']:.1f} | {l['p99']:.1f} | {l['max']:.1f} | {errors} | {r['loadavg_before']}→{r['loadavg_after']} |")
hey = os.path.join(out, "hey_c16.txt")
if os.path.exists(hey):
    text = open(hey).read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"50%+ in ([\d.]+) secs", text)
    p90 = re.search(r"90%+ in ([\d.]+) secs", text)
    p99 = re.search(r"99%+ in ([\d.]+) secs", text)
    ms = lambda m: f"{float(m.group(1)) * 1e3:.1f}" if m else "?"
    print(f"| hey c16 (cross-check) | {rps.group(1) if rps else '?'} | {ms(p50)} | {ms(p90)} | {ms(p99)} | | | |")
for name in ("fovea_rss.json", "fovea_rss_after_flood.json", "fovea_int8_rss.json", "fastapi_rss.json", "numpy_sgemm.json"):
    r = load(name)
    if r:
        print(f"\n{name[:-5]}: {json.dumps(r)}")
e = load("engine_ort.json")
if e:
    print(f"\nmodel GFLOP/image: {e['gflop_per_image']:.3f}; sgemm peak by threads: {e['sgemm_peak_gflops_by_threads']}")
