// new + delete of a 64-byte object, N times (argv: n): what a C++ program pays its allocator for
// a short-lived object. Counted with callgrind as benches/c/count.sh counts pairs.c:
//
//   g++ -O2 -o /tmp/cxx_pairs benches/c/cxx_pairs.cpp
//   LD_PRELOAD=target/release/libdomalloc.so valgrind --tool=callgrind /tmp/cxx_pairs 100000
//   (and 200000: the difference over 100,000 is one pair)
#include <cstdlib>
#include <new>

struct Object {
    char bytes[64];
};

int main(int argc, char **argv) {
    long n = argc > 1 ? std::atol(argv[1]) : 200000;
    for (long i = 0; i < n; i++) {
        Object *volatile p = new Object;
        delete p;
    }
    return 0;
}
