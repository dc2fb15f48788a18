/* Internal: the masks object shared by the masks and plan files. */
#ifndef SLIMKV_IO_MASKS_H
#define SLIMKV_IO_MASKS_H

#include "safetensors/safetensors.h"

struct slimkv_masks {
    int layers, kv_heads, head_dim;
    uint8_t *k; /* [layers][kv_heads][head_dim] 0/1 */
    uint8_t *v; /* same, or NULL: V unpruned */
};

/* Reads and checks "k_mask" / "v_mask" of an open file into m (fields owned
 * by m, freed with masks_clear). */
slimkv_status masks_read(const st_file *file, struct slimkv_masks *m);
void masks_clear(struct slimkv_masks *m);

/* Copies checked masks; 0/1 values and positive dimensions are the caller's
 * to check. */
slimkv_status masks_copy(int layers, int kv_heads, int head_dim, const uint8_t *k_mask, const uint8_t *v_mask,
                         struct slimkv_masks *m);

/* Output descriptors of "k_mask" and "v_mask" (U8): fills out[0..*n). */
void masks_outputs(const struct slimkv_masks *m, st_out *out, size_t *n);

#endif /* SLIMKV_IO_MASKS_H */
