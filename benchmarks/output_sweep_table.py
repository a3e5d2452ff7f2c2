"""The fastest rows of kernel_stages.py's output sweep (its log as the argument), beside the round-13 launch."""
import json
import sys

for line in open(sys.argv[1]):
    if not line.startswith("| output sweep"):
        continue
    head, rows = line.rsplit("| ", 1)
    rows = [r for r in json.loads(rows) if isinstance(r[-1], float)]
    base = [r for r in rows if r[0] == "unrolled" and r[2] == 128 and r[3] == 4]
    print(head, "| round-13 launch", f"{base[0][-1]:.3f}" if base else None)
    for r in sorted(rows, key=lambda r: r[-1])[:8]:
        print(f"    {r[0]:>16} BK {r[1]} BV {r[2]} warps {r[3]}: {r[4]:.3f}")
