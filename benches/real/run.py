#!/usr/bin/env python3
"""Times mimalloc-bench's programs (allocator benchmarks by other authors) under each allocator.

Each program runs with glibc, then with each shared library preloaded (mimalloc, jemalloc,
libdomalloc), in alternating order round after round; the score is mimalloc-bench's own (wall
time, or the relative time the program prints: larson, xmalloc-test, rptest, glibc-thread), and
peak RSS comes from wait4. Prints the medians, each one's ratio to the best peer, and the geometric
mean of those ratios; writes every run to a JSON file.

The programs are not part of this repository. Build them once (their CMake project, minus the
two shbench programs whose sources it downloads separately):

    git clone https://github.com/daanx/mimalloc-bench /tmp/mimalloc-bench
    cd /tmp/mimalloc-bench/bench && sed -i '/shbench/,/^endif()/d;/if(NOT APPLE)/d' CMakeLists.txt
    mkdir build && cd build && cmake -DCMAKE_BUILD_TYPE=Release .. && make -j

then, from the repository root, after `cargo build --release -p alloc-capi`:

    python3 benches/real/run.py --bench /tmp/mimalloc-bench/bench --rounds 3
"""
import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

LIBDIR = '/usr/lib/x86_64-linux-gnu'


def tests(src, procs):
    """Each program's command, its stdin, and how to read its score (None: wall time)."""
    p = str(procs)
    time_pat = r'time: ([0-9.]+)'
    return {
        'cfrac': (['./cfrac', '17545186520507317056371138836327483792789528'], None, None),
        'espresso': (['./espresso', src + '/espresso/largest.espresso'], None, None),
        'barnes': (['./barnes'], src + '/barnes/input', None),
        'larsonN': (['./larson', '5', '8', '1000', '5000', '100', '4141', p], None, time_pat),
        'larsonN-sized': (['./larson-sized', '5', '8', '1000', '5000', '100', '4141', p], None,
                          time_pat),
        'mstressN': (['./mstress', p, '50', '25'], None, None),
        'rptestN': (['./rptest', p, '0', '1', '2', '500', '1000', '100', '8', '16000'], None,
                    'rptest'),
        'alloc-test1': (['./alloc-test', '1'], None, None),
        'alloc-testN': (['./alloc-test', p], None, None),
        'xmalloc-testN': (['./xmalloc-test', '-w', p, '-t', '5', '-s', '64'], None,
                          r'rtime: ([0-9.]+)'),
        'cache-scratch1': (['./cache-scratch', '1', '1000', '1', '2000000', p], None, None),
        'cache-scratchN': (['./cache-scratch', p, '1000', '1', '2000000', p], None, None),
        'cache-thrash1': (['./cache-thrash', '1', '1000', '1', '2000000', p], None, None),
        'cache-thrashN': (['./cache-thrash', p, '1000', '1', '2000000', p], None, None),
        'glibc-simple': (['./glibc-simple'], None, None),
        'glibc-thread': (['./glibc-thread', p], None, 'glibc-thread'),
        'malloc-large': (['./malloc-large'], None, None),
        'mleak10': (['./mleak', '5'], None, None),
        'mleak100': (['./mleak', '50'], None, None),
    }


def run(build, spec, lib):
    argv, stdin, pat = spec
    env = dict(os.environ)
    if lib:
        env['LD_PRELOAD'] = lib
    with tempfile.TemporaryFile('w+') as out, \
            (open(stdin) if stdin else open(os.devnull)) as fin:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=build, env=env, stdin=fin, stdout=out,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        out.seek(0)
        text = out.read()
    if status != 0:
        return {'error': status, 'output': text[-400:]}
    score = wall
    if pat == 'rptest':
        score = 2e6 / int(re.search(r'\.\.\.([0-9]+) memory ops', text).group(1))
    elif pat == 'glibc-thread':
        score = 1e9 / float(re.match(r'\s*([0-9.]+)', text).group(1))
    elif pat:
        score = float(re.search(pat, text).group(1))
    return {'score': score, 'wall_s': wall, 'cpu_s': usage.ru_utime + usage.ru_stime,
            'peak_rss_kib': usage.ru_maxrss}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bench', required=True,
                    help="mimalloc-bench's bench/ directory, with the programs built in build/")
    ap.add_argument('--rounds', type=int, default=3, help='rounds (default 3)')
    ap.add_argument('--procs', type=int, default=os.cpu_count(),
                    help='threads for the N programs (default: the processors)')
    ap.add_argument('--only', help='comma-separated programs (default: all)')
    ap.add_argument('--domalloc', default='target/release/libdomalloc.so',
                    help='the library to test (default: %(default)s)')
    ap.add_argument('--mimalloc', default=LIBDIR + '/libmimalloc.so.2',
                    help='(default: %(default)s, Debian libmimalloc2.0)')
    ap.add_argument('--jemalloc', default=LIBDIR + '/libjemalloc.so.2',
                    help='(default: %(default)s, Debian libjemalloc2)')
    ap.add_argument('--out', default='real-programs.json',
                    help='where every run is written (default: %(default)s)')
    a = ap.parse_args()
    libs = {'glibc': '', 'mimalloc': a.mimalloc, 'jemalloc': a.jemalloc,
            'domalloc': os.path.abspath(a.domalloc)}
    for name, lib in list(libs.items()):
        if lib and not os.path.exists(lib):
            print(f'{name}: {lib} is missing, left out', file=sys.stderr)
            del libs[name]
    build = os.path.join(a.bench, 'build')
    all_tests = tests(os.path.abspath(a.bench), a.procs)
    names = a.only.split(',') if a.only else list(all_tests)
    runs = {t: {n: [] for n in libs} for t in names}
    order = list(libs)
    for r in range(a.rounds):
        for t in names:
            for n in (order if r % 2 == 0 else order[::-1]):
                x = run(build, all_tests[t], libs[n])
                runs[t][n].append(x)
                if 'error' in x:
                    print(f'{t} under {n} failed: {x}', file=sys.stderr)
        print(f'round {r + 1} of {a.rounds} done', file=sys.stderr)
    peers = [n for n in libs if n != 'domalloc']
    ratios = {n: [] for n in libs}
    print('%-15s' % 'program' + ''.join('%11s' % n for n in libs) +
          '   domalloc/best  (peak RSS)')
    for t in names:
        med, rss = {}, {}
        for n in libs:
            ok = [x for x in runs[t][n] if 'score' in x]
            med[n] = statistics.median(x['score'] for x in ok) if ok else math.nan
            rss[n] = statistics.median(x['peak_rss_kib'] for x in ok) if ok else math.nan
        best = min(med[n] for n in peers)
        best_rss = min(rss[n] for n in peers)
        for n in libs:
            ratios[n].append(med[n] / best)
        line = '%-15s' % t + ''.join('%11.3f' % med[n] for n in libs)
        if 'domalloc' in libs:
            line += '   %13.3f  (%.3f)' % (med['domalloc'] / best, rss['domalloc'] / best_rss)
        print(line)
    print('geomean of the ratios to the best peer: ' + ', '.join(
        '%s %.3f' % (n, math.exp(sum(map(math.log, v)) / len(v))) for n, v in ratios.items()))
    with open(a.out, 'w') as f:
        json.dump({'procs': a.procs, 'rounds': a.rounds, 'libraries': libs, 'runs': runs}, f,
                  indent=1)
    print(f'runs written to {a.out}')


if __name__ == '__main__':
    main()
