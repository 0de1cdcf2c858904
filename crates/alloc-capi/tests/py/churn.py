# Object churn for the C-ABI tests and the `python` bench workload: dicts, lists and strings made
# and dropped in waves, with a checksum that must not depend on the allocator.
import sys

def wave(n, seed):
    d = {}
    for i in range(n):
        k = "key-%d-%d" % (seed, i)
        d[k] = [i, str(i * seed), (i, seed), {"v": i}]
    total = 0
    for k, v in d.items():
        total += len(k) + v[0] + len(v[1]) + v[3]["v"]
    s = ",".join(str(x) for x in range(n // 10))
    return total + len(s)

scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
checksum = 0
for w in range(10 * scale):
    checksum = (checksum * 31 + wave(20000, w)) % (1 << 61)
print("checksum", checksum)
