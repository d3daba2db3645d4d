/* A guest whose hot spots sit on known lines (the tests find them by the marker comments).
   Wasmtime samples where it checks the epoch: loop headers and function entries. */
#include <stdio.h>
#include <stdlib.h>

static inline unsigned scramble(unsigned x, unsigned long n) {
    for (unsigned long i = 0; i < n; i++) { /* INLINED-LOOP */
        x = x * 1103515245u + (unsigned)i;
    }
    return x;
}

__attribute__((noinline)) unsigned cold(unsigned long n) {
    unsigned x = 7;
    for (unsigned long i = 0; i < n; i++) { /* COLD-LOOP */
        x ^= x << 7;
        x ^= x >> 9;
    }
    return x;
}

__attribute__((noinline)) unsigned hot(unsigned long n) {
    unsigned x = 1;
    for (unsigned long i = 0; i < n; i++) { /* HOT-LOOP */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
    }
    return scramble(x, n / 2); /* INLINE-CALL */
}

int main(int argc, char **argv) {
    unsigned long n = argc > 1 ? strtoul(argv[1], 0, 10) : 100000000;
    printf("%u\n", hot(n) ^ cold(n / 8)); /* MAIN-CALL */
    return 0;
}
