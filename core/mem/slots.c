/* coil mem: fixed-size slots carved from per-thread chunks (see slots.h). */
#include <pthread.h>
#include <stdlib.h>

#include "mem/hugemem.h"
#include "mem/slots.h"

/* A thread's first chunks are one block each: a thread that allocates a few never maps a huge
 * page. */
enum { SMALL_CHUNKS = 4 };

/* This thread's caches that hold a chunk: given back at its exit. The key's value is any
 * non-NULL pointer, which makes the destructor run. */
static __thread coil__slot_cache *tls_caches;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

void coil__slot_chunk_free(coil__slot_chunk *ch)
{
    atomic_fetch_sub_explicit(ch->count, 1, memory_order_relaxed);
    if (ch->size == COIL__SLOT_BLOCK)
        free(ch);
    else
        coil__huge_free(ch, ch->size);
}

/* Give back the slots of c's chunk that will never be handed out. */
static void give_back(coil__slot_cache *c)
{
    coil__slot_chunk *ch = c->chunk;
    c->chunk = NULL;
    uint32_t unused = c->slots - c->next;
    if (atomic_fetch_sub_explicit(&ch->live, unused, memory_order_acq_rel) == unused)
        coil__slot_chunk_free(ch);
}

/* Thread exit. A destructor of some other key that allocates after this ran lists its cache
 * again, and the key's value set again brings this back for another round. */
static void thread_exit(void *unused)
{
    (void)unused;
    coil__slot_cache *c = tls_caches;
    tls_caches = NULL;
    while (c) {
        coil__slot_cache *next = c->next_cache;
        c->listed = false;
        c->next_cache = NULL;
        if (c->chunk)
            give_back(c);
        c = next;
    }
}

static void exit_key_init(void) { pthread_key_create(&exit_key, thread_exit); }

bool coil__slot_refill(coil__slot_cache *c, size_t slot)
{
    pthread_once(&exit_once, exit_key_init);
    uint32_t size = c->made < SMALL_CHUNKS ? COIL__SLOT_BLOCK : COIL__HUGE_PAGE;
    coil__slot_chunk *ch = size == COIL__SLOT_BLOCK ? aligned_alloc(COIL__SLOT_BLOCK, COIL__SLOT_BLOCK)
                                                    : coil__huge_alloc(size);
    if (!ch)
        return false;
    c->made++;
    atomic_fetch_add_explicit(c->count, 1, memory_order_relaxed);
    ch->chunk = ch;
    ch->size = size;
    ch->count = c->count;
    c->slots = (uint32_t)((size / COIL__SLOT_BLOCK) * (COIL__SLOT_BLOCK / slot - 1));
    atomic_init(&ch->live, c->slots);
    c->chunk = ch;
    c->next = 0;
    if (!c->listed) {
        c->next_cache = tls_caches;
        tls_caches = c;
        c->listed = true;
    }
    pthread_setspecific(exit_key, tls_caches);
    return true;
}
