/* domalloc.h: PEP 445's allocator API for C callers of libdomalloc.
 *
 * Link with -ldomalloc (libdomalloc.so or libdomalloc.a), or load the shared library with
 * LD_PRELOAD to make it the program's malloc. Every function may be called from any thread.
 *
 * The exported malloc family follows glibc (2.36) where C leaves a choice: realloc(p, 0) frees p
 * and returns NULL; memalign and aligned_alloc round an alignment that is not a power of two up
 * to the next one; posix_memalign refuses it with EINVAL. Deliberate differences:
 *   - a bad free into domalloc's pools (a pointer inside a block or misaligned, a block freed
 *     twice while still in the thread's cache, a block of a pool with nothing allocated) ends
 *     the process with one line on stderr naming domalloc, the call and the address, where glibc
 *     may go on; under DOMALLOC=debug, pool_debug and malloc_debug every pointer given to free,
 *     realloc or malloc_usable_size goes to the debug hooks, which report a bad one (block,
 *     serial, API id, what was violated) and abort, rather than handing it to glibc;
 *   - requests with an alignment above 16 come from the pools under DOMALLOC=pool (alignments up
 *     to 4 KiB, sizes up to 64 KiB), from the debug hooks under the debug presets (guarded like
 *     any block, alignments up to 1 MiB; free, realloc and malloc_usable_size take them), and
 *     from glibc otherwise.
 */
#ifndef DOMALLOC_H
#define DOMALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Domains (PEP 445's PYMEM_DOMAIN_*). User domains follow, numbered in the order added. */
#define DOMALLOC_DOMAIN_RAW 0    /* PyMem_RawMalloc: the C library by default */
#define DOMALLOC_DOMAIN_MEM 1    /* PyMem_Malloc: the pool by default; the exported malloc uses it */
#define DOMALLOC_DOMAIN_OBJECT 2 /* PyObject_Malloc: the pool; above 512 bytes, whatever MEM has */

/* Return codes. */
#define DOMALLOC_OK 0
#define DOMALLOC_ERR_UNKNOWN_DOMAIN (-1) /* no domain has this id */
#define DOMALLOC_ERR_AMBIGUOUS (-2)      /* the domain has allocated, and the new allocator cannot
                                            tell its blocks from others' (every C allocator): set it
                                            before the domain's first allocation */
#define DOMALLOC_ERR_FULL (-3)           /* a table is full */
#define DOMALLOC_ERR_INVALID (-4)        /* a null or malformed argument */
#define DOMALLOC_ERR_EXISTS (-5)         /* a domain of that name exists already */
#define DOMALLOC_ERR_LIVE_BLOCKS (-6)    /* the domain still has live blocks */
#define DOMALLOC_ERR_STANDARD (-7)       /* raw, mem and object are never removed */
#define DOMALLOC_ERR_NOMEM (-8)          /* no memory (the tracing tables) */
#define DOMALLOC_ERR_STATS_OFF (-9)      /* the domain's statistics are off */
#define DOMALLOC_ERR_USED (-10)          /* the domain has allocated already */

/* PyMemAllocatorEx. The functions must be thread-safe and follow malloc's contract (16-byte
 * aligned blocks; realloc keeps the contents). */
typedef struct {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr);
} DomallocAllocator;

/* PyMem_GetAllocator: the allocator the domain uses now. Calling its functions calls that
 * allocator directly (a wrapper installed with domalloc_set_allocator can forward to it). */
int domalloc_get_allocator(int domain, DomallocAllocator *out);

/* PyMem_SetAllocator. An allocator read with domalloc_get_allocator may be set back at any time
 * (setting back the allocator a hook was installed over removes the hook); any other C allocator
 * only before the domain's first allocation (DOMALLOC_ERR_AMBIGUOUS: a C allocator cannot tell
 * its blocks from the ones made before it). None of its functions is called by the set. */
int domalloc_set_allocator(int domain, const DomallocAllocator *allocator);

/* PEP 445's hook pattern, accepted at any time: writes the domain's current allocator to *old,
 * then installs *wrapper, which declares that it forwards every call to *old and returns its
 * blocks unchanged (a counting, tracing or fault-injecting hook). *old is written before the
 * wrapper can be called, so wrapper->ctx may point at it. Every block of the domain, made before
 * or after, is freed through the wrapper while it is installed; domalloc_set_allocator(domain,
 * old) takes it out again. A wrapper that hands out blocks of its own must use
 * domalloc_set_allocator instead. Returns DOMALLOC_OK, DOMALLOC_ERR_UNKNOWN_DOMAIN or
 * DOMALLOC_ERR_INVALID (a null pointer or function). */
int domalloc_hook_allocator(int domain, const DomallocAllocator *wrapper, DomallocAllocator *old);

/* PyMem_SetupDebugHooks: guard bytes, fill patterns, serial numbers, API ids on every domain.
 * Returns how many domains refused (those that allocated through the C library already). */
int domalloc_setup_debug_hooks(void);

/* User domains. domalloc_add_domain adds one using the allocator the mem domain uses now (set or
 * hook it like any other) and returns its id (3 and up), or DOMALLOC_ERR_INVALID (a null or
 * empty name, not UTF-8), DOMALLOC_ERR_EXISTS or DOMALLOC_ERR_FULL.
 * domalloc_remove_domain removes a user domain once it owns no live block (every block
 * allocated through it was freed through it), and returns DOMALLOC_OK, DOMALLOC_ERR_UNKNOWN_DOMAIN
 * (no domain has this id, or it was removed already), DOMALLOC_ERR_STANDARD (raw, mem, object)
 * or DOMALLOC_ERR_LIVE_BLOCKS; it calls none of the domain's allocator's functions. A removed
 * domain's id is never valid again: a domain added later in its place gets another id (the
 * index in the low 8 bits, a generation above), every function given the old id returns
 * DOMALLOC_ERR_UNKNOWN_DOMAIN (domalloc_malloc: NULL), and its change callbacks are removed.
 * domalloc_domains writes up to cap ids of the existing domains, in id order, and returns how many
 * exist; domalloc_domain_name copies a domain's name, NUL-terminated and truncated to cap, and
 * returns the length of the whole name (0 for an unknown domain). */
int domalloc_add_domain(const char *name);
int domalloc_remove_domain(int domain);
size_t domalloc_domains(int *ids, size_t cap);
size_t domalloc_domain_name(int domain, char *buf, size_t cap);

/* Change callbacks: callback(ctx, domain, now) runs at once with the domain's current allocator,
 * then after every change of that domain (set, hook, debug hooks), on the thread that made the
 * change, outside the table's lock (it may read the table). domalloc_on_change returns the
 * callback's id (positive) or DOMALLOC_ERR_UNKNOWN_DOMAIN, DOMALLOC_ERR_FULL or
 * DOMALLOC_ERR_INVALID (a null callback); domalloc_remove_change_callback returns DOMALLOC_OK or
 * DOMALLOC_ERR_INVALID (not registered). */
typedef void (*DomallocChangeCallback)(void *ctx, int domain, const DomallocAllocator *now);
long long domalloc_on_change(int domain, DomallocChangeCallback callback, void *ctx);
int domalloc_remove_change_callback(long long callback_id);

/* PyMem_Malloc and friends, for a domain. */
void *domalloc_malloc(int domain, size_t size);
void *domalloc_calloc(int domain, size_t nelem, size_t elsize);
void *domalloc_realloc(int domain, void *ptr, size_t new_size);
void domalloc_free(int domain, void *ptr);

/* PyObjectArenaAllocator: where the pools take their arenas. alloc may return any alignment
 * (the pools align inside what it gives); its functions must be thread-safe and must not call
 * this library's malloc (they would need an arena to run). */
typedef struct {
    void *ctx;
    void *(*alloc)(void *ctx, size_t size);
    void (*free)(void *ctx, void *ptr, size_t size);
} DomallocArenaAllocator;

/* PyObject_GetArenaAllocator / PyObject_SetArenaAllocator. Arenas already made go back to the
 * allocator that made them. */
int domalloc_get_arena_allocator(DomallocArenaAllocator *out);
int domalloc_set_arena_allocator(const DomallocArenaAllocator *allocator);

/* The pools' statistics (mem's and object's together, as the calling thread sees them). */
typedef struct {
    size_t arenas;
    size_t arenas_highest;
    size_t bytes_mapped;
    size_t bytes_in_use;
    size_t blocks_in_use;
    size_t pools_empty;
} DomallocPoolStats;

int domalloc_pool_stats(DomallocPoolStats *out);
/* sys._debugmallocstats()'s table, NUL-terminated into buf (truncated to cap); returns the length
 * of the whole text, so a caller can retry with a larger buffer. */
size_t domalloc_pool_stats_text(char *buf, size_t cap);
/* Per-domain statistics, kept by the domain table with no hook installed. Off by default (the
 * exported malloc and free keep their fast path): DOMALLOC_STATS=1 in the environment turns them
 * on for every domain from its first allocation (the way for the mem domain, which the exported
 * malloc family uses and which has usually allocated before main), and
 * domalloc_domain_stats_enable for one domain that has not allocated yet (a user domain just
 * added). While the mem domain counts, the exported malloc and free take a counting path into
 * the pools instead of their fast path (slower: see benches/RESULTS.md). Counts are exact,
 * across threads and frees made on another thread.
 *   allocations      successful allocations through the domain (the exported malloc, calloc and
 *                    realloc(NULL, n) for the mem domain; domalloc_malloc, domalloc_calloc)
 *   frees            frees of non-NULL blocks through the domain (realloc counts as neither)
 *   live_blocks      allocations - frees
 *   live_bytes       the usable sizes (malloc_usable_size) of the live blocks
 *   peak_live_bytes  the most live_bytes at any moment since counting started
 * Blocks with an alignment above 16 that come from glibc (see the top of this file) are not the
 * domain's and are not counted; under DOMALLOC=malloc their free is, so the figures are exact
 * there only for programs that do not free such blocks.
 * domalloc_domain_stats_enable returns DOMALLOC_OK (also when on already),
 * DOMALLOC_ERR_UNKNOWN_DOMAIN or DOMALLOC_ERR_USED. domalloc_domain_stats returns DOMALLOC_OK,
 * DOMALLOC_ERR_INVALID (out is NULL), DOMALLOC_ERR_UNKNOWN_DOMAIN or DOMALLOC_ERR_STATS_OFF, and
 * writes *out only on success. */
typedef struct {
    uint64_t allocations;
    uint64_t frees;
    uint64_t live_blocks;
    uint64_t live_bytes;
    uint64_t peak_live_bytes;
} DomallocDomainStats;

int domalloc_domain_stats_enable(int domain);
int domalloc_domain_stats(int domain, DomallocDomainStats *out);

/* malloc_trim(0) for the pools. */
void domalloc_trim(void);

/* tracemalloc on the mem domain (hooked the first time tracing starts). */
int domalloc_tracing_start(int nframe);
/* Sampled tracing: bytes are sampled every interval_bytes on average (a Poisson process), so a
 * block of s bytes is recorded with probability 1 - exp(-s / interval_bytes), and every figure
 * below (traced memory, top, leak report) is an unbiased estimate of all the blocks. Returns
 * DOMALLOC_OK, DOMALLOC_ERR_INVALID (nframe out of 1..=64, interval_bytes 0 or above
 * DOMALLOC_MAX_SAMPLE_INTERVAL) or DOMALLOC_ERR_NOMEM. Switching between exact and sampled tracing,
 * or to another interval, forgets the traces. Under LD_PRELOAD, DOMALLOC_TRACE_SAMPLE=BYTES starts
 * it at load and writes a profile at exit (see the crate's README). */
#define DOMALLOC_DEFAULT_SAMPLE_INTERVAL ((size_t)512 * 1024)
#define DOMALLOC_MAX_SAMPLE_INTERVAL ((size_t)1 << 32)
int domalloc_tracing_start_sampled(int nframe, size_t interval_bytes);
void domalloc_tracing_stop(void);
int domalloc_tracing_is_tracing(void);
void domalloc_tracing_traced_memory(size_t *current, size_t *peak);
void domalloc_tracing_reset_peak(void);
/* The `limit` largest sites of a snapshot taken now, by line; returns the text's full length. */
size_t domalloc_tracing_top(char *buf, size_t cap, int limit);
/* What is live now, grouped by site; returns the text's full length. */
size_t domalloc_tracing_leak_report(char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* DOMALLOC_H */
