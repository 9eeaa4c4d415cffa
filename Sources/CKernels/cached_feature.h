#ifndef CCHECKSUMS_CACHED_FEATURE_H
#define CCHECKSUMS_CACHED_FEATURE_H

// A CPU feature, detected once (*cache starts at -1). Threads may race to fill the cache, with
// the same value: relaxed atomics.
static inline int cached_feature(int *cache, int (*detect)(void)) {
    int has = __atomic_load_n(cache, __ATOMIC_RELAXED);
    if (has < 0) {
        has = detect();
        __atomic_store_n(cache, has, __ATOMIC_RELAXED);
    }
    return has;
}
#endif
