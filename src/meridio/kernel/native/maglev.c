/* Maglev table fill (Eisenbud et al., NSDI 2016, section 3.4, "Pseudocode 1"), the hot loop of
 * meridio.loadbalancer.maglev.populate moved to C: the permutations (offset, skip) are computed in
 * Python (BLAKE2b of each identifier) and passed in; this only walks them. It must give exactly the
 * table the Python loop gives: targets take turns in the order given (ascending identifiers), each takes
 * the next empty bucket of its own permutation, until all M buckets are filled.
 *
 * Built at set-up (run.sh) into libmeridio_native.so next to this file; loaded by kernel/native.py.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Returns 0, or -1 when the arguments cannot describe a table (n == 0, m == 0, a skip of 0 or >= m,
 * an offset >= m) or the scratch memory cannot be had. table has m entries. */
int meridio_maglev_fill(const uint32_t *ids, const uint32_t *offsets, const uint32_t *skips, uint32_t n,
                        uint32_t m, uint32_t *table)
{
    if (n == 0 || m == 0)
        return -1;
    for (uint32_t t = 0; t < n; t++)
        if (offsets[t] >= m || skips[t] == 0 || skips[t] >= m)
            return -1;
    uint32_t *pos = malloc((size_t)n * sizeof(*pos));
    uint8_t *taken = calloc(m, 1);
    if (!pos || !taken) {
        free(pos);
        free(taken);
        return -1;
    }
    memcpy(pos, offsets, (size_t)n * sizeof(*pos));
    uint32_t filled = 0;
    for (;;) {
        for (uint32_t t = 0; t < n; t++) {
            uint32_t c = pos[t], skip = skips[t];
            while (taken[c]) {
                c += skip;
                if (c >= m)
                    c -= m;
            }
            taken[c] = 1;
            table[c] = ids[t];
            c += skip;
            pos[t] = c >= m ? c - m : c;
            if (++filled == m) {
                free(pos);
                free(taken);
                return 0;
            }
        }
    }
}
