/* avx512 kernel bodies (being written). */
#include "kernels.h"

void slimkv_kernels_init_avx512(slimkv_kernels *k)
{
    slimkv_kernels_init_scalar(k);
    k->name = "avx512";
}
