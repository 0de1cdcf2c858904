// A C++ module for tests/c/cxx_local.c, which opens it with RTLD_LOCAL (as Python opens its
// extensions): its C++ runtime is then outside the global scope, while its `new` still reaches
// libdomalloc's. A failed `new` must still throw std::bad_alloc and a nothrow one answer null.
#include <cstddef>
#include <new>
#include <string>
#include <vector>

extern "C" int cxx_module_check(std::size_t huge) {
    std::vector<std::string> v;
    for (int i = 0; i < 1000; i++) v.push_back(std::string(1 + i % 700, 'x'));
    if (v.size() != 1000) return 1;
    bool thrown = false;
    try {
        void *p = ::operator new(huge);
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    if (!thrown) return 2;
    if (::operator new(huge, std::nothrow) != nullptr) return 3;
    return 0;
}
