/* NEON (ARMv8.0 AdvSIMD) bodies of the SparK scores, every storage format. */
#ifndef SLIMKV_SPARK_NEON_H
#define SLIMKV_SPARK_NEON_H

#include "kernels.h"

/* Sets k->score_spark[fmt] for the six formats; k->pack_spark is left as
 * it is (the scalar body, see spark_neon.c). Call after the scalar table
 * has been copied into k. */
SLIMKV_HIDDEN void slimkv_arm_spark_init_neon(slimkv_kernels *k);

#endif /* SLIMKV_SPARK_NEON_H */
