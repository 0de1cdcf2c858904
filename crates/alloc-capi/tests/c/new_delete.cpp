// C++'s operators new and delete under libdomalloc: which definitions run, blocks of every form
// (sized, array, aligned, nothrow) made and deleted, on several threads, and the standard's
// failure rules (bad_alloc, nullptr, the new_handler) kept.
//
// Usage: new_delete ours|theirs HUGE
//   ours: the operators must be libdomalloc's (the library is preloaded); theirs: must not be.
//   HUGE: a size no allocator can serve (given at run time, so the compiler cannot see it).
// Prints "ok <part>" for each part that passed; exits non-zero at the first failure.
#include <dlfcn.h>
#include <malloc.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#define CHECK(c)                                                          \
    do {                                                                  \
        if (!(c)) {                                                       \
            std::fprintf(stderr, "line %d: check failed: %s\n", __LINE__, #c); \
            std::exit(1);                                                 \
        }                                                                 \
    } while (0)

static bool in_domalloc(void *f) {
    Dl_info info;
    return dladdr(f, &info) && info.dli_fname && std::strstr(info.dli_fname, "libdomalloc");
}

struct alignas(64) Line {
    char bytes[64];
};
struct alignas(4096) Page {
    char bytes[100];
};

// Whether `make` (a new, then the delete of what it made) throws std::bad_alloc.
template <class F> static bool throws_bad_alloc(F make) {
    try {
        make();
    } catch (const std::bad_alloc &) {
        return true;
    }
    return false;
}

static int handler_calls;
static void handler() {
    handler_calls++;
    // The next round of the runtime's loop finds no handler and throws.
    std::set_new_handler(nullptr);
}

int main(int argc, char **argv) {
    CHECK(argc == 3);
    bool ours = std::strcmp(argv[1], "ours") == 0;
    std::size_t huge = std::strtoull(argv[2], nullptr, 0);

    // Which definitions the program's calls reach (through its GOT).
    void *(*op_new)(std::size_t) = &::operator new;
    void *(*op_new_array)(std::size_t) = &::operator new[];
    void (*op_delete)(void *) noexcept = &::operator delete;
    void (*op_delete_sized)(void *, std::size_t) noexcept = &::operator delete;
    void *(*op_new_aligned)(std::size_t, std::align_val_t) = &::operator new;
    void (*op_delete_aligned)(void *, std::align_val_t) noexcept = &::operator delete;
    void *(*op_new_nothrow)(std::size_t, const std::nothrow_t &) noexcept = &::operator new;
    for (void *f : {(void *)op_new, (void *)op_new_array, (void *)op_delete,
                    (void *)op_delete_sized, (void *)op_new_aligned, (void *)op_delete_aligned,
                    (void *)op_new_nothrow})
        CHECK(in_domalloc(f) == ours);
    std::puts("ok operators");

    // Blocks of many sizes through the containers, and plain ones measured.
    {
        std::vector<std::string> words;
        std::map<int, std::unique_ptr<std::vector<int>>> lists;
        for (int i = 0; i < 20000; i++) {
            words.push_back(std::string(1 + i % 300, char('a' + i % 26)));
            lists[i % 997] = std::make_unique<std::vector<int>>(i % 2000, i);
        }
        std::size_t total = 0;
        for (auto &w : words) total += w.size();
        CHECK(total > 0 && lists.size() == 997);
        for (std::size_t n : {1, 16, 100, 512, 513, 4000, 70000, 3000000}) {
            char *p = static_cast<char *>(::operator new(n));
            std::memset(p, 0x5a, n);
            CHECK(malloc_usable_size(p) >= n);
            ::operator delete(p, n);
            char *q = new char[n];
            q[n - 1] = 1;
            delete[] q;
        }
    }
    std::puts("ok blocks");

    // new(0): a block, a different one each time.
    {
        void *a = ::operator new(0);
        void *b = ::operator new(0);
        CHECK(a && b && a != b);
        ::operator delete(a);
        ::operator delete(b, std::size_t(0));
    }
    std::puts("ok zero");

    // Over-aligned types (C++17's aligned forms), single and array.
    {
        std::vector<Line *> lines;
        for (int i = 0; i < 1000; i++) {
            Line *l = new Line;
            CHECK(reinterpret_cast<std::uintptr_t>(l) % 64 == 0);
            l->bytes[63] = 1;
            lines.push_back(l);
        }
        for (Line *l : lines) delete l;
        Page *p = new Page[3];
        CHECK(reinterpret_cast<std::uintptr_t>(p) % 4096 == 0);
        delete[] p;
        void *q = ::operator new(100, std::align_val_t(256), std::nothrow);
        CHECK(q && reinterpret_cast<std::uintptr_t>(q) % 256 == 0);
        ::operator delete(q, std::align_val_t(256), std::nothrow);
    }
    std::puts("ok aligned");

    // Blocks made on one thread and deleted (sized) on another.
    {
        std::vector<std::vector<std::string> *> made(4);
        std::vector<std::thread> ts;
        for (int t = 0; t < 4; t++)
            ts.emplace_back([&made, t] {
                auto *v = new std::vector<std::string>;
                for (int i = 0; i < 5000; i++) v->push_back(std::string(1 + (i * 7 + t) % 200, 'x'));
                made[t] = v;
            });
        for (auto &t : ts) t.join();
        ts.clear();
        for (int t = 0; t < 4; t++)
            ts.emplace_back([&made, t] { delete made[(t + 1) % 4]; });
        for (auto &t : ts) t.join();
    }
    std::puts("ok threads");

    // Failure: the throwing forms throw bad_alloc, the nothrow forms answer nullptr.
    {
        CHECK(throws_bad_alloc([huge] { ::operator delete(::operator new(huge)); }));
        CHECK(throws_bad_alloc([huge] {
            ::operator delete[](::operator new[](huge, std::align_val_t(64)), std::align_val_t(64));
        }));
        CHECK(::operator new(huge, std::nothrow) == nullptr);
        CHECK(::operator new[](huge, std::nothrow) == nullptr);
        CHECK(::operator new(huge, std::align_val_t(128), std::nothrow) == nullptr);
    }
    std::puts("ok failure");

    // The new_handler runs before bad_alloc is thrown.
    {
        std::set_new_handler(handler);
        bool thrown = throws_bad_alloc([huge] { ::operator delete(::operator new(huge)); });
        CHECK(thrown && handler_calls == 1);
    }
    std::puts("ok handler");
    return 0;
}
