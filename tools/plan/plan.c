/* slimkv-plan: per-layer (or per-head) K/V channel budgets from calibration
 * data (KVPruner, Tyr-the-Pruner), written as a plan file slimkv_plan_load
 * reads. Prints the plan against a uniform keep ratio at the same budget. */
#include <stdio.h>
#include <string.h>

#include "budget.h"
#include "calib.h"
#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: slimkv-plan --calib FILE --out PLAN [options]\n"
            "       slimkv-plan --synthetic FILE [synthetic options] [--out PLAN [options]]\n"
            "Calibration: tensors layers.{i}.q [tokens, q_heads, head_dim], layers.{i}.k and layers.{i}.v\n"
            "[tokens, kv_heads, head_dim], f32/f16/bf16. The plan meets one K+V byte budget with the least\n"
            "total decode-attention error (sum over layers of squared relative errors vs f32 dense).\n"
            "options:\n"
            "  --budget F          K+V bytes as a fraction of the unpruned bytes (default 0.5)\n"
            "  --k-format F        f32 f16 bf16 q8 q4 q3 q2 (default q4); --v-format F likewise\n"
            "  --group N           G (default 32)   --residual N  R (default 128)\n"
            "  --sink N            S (default 0)    --align N     channel alignment (default 8)\n"
            "  --queries N         last calibration queries compared (default 32)\n"
            "  --context N         sequence length the byte budget is for (default 8192)\n"
            "  --per-head          search per (layer, KV head) instead of per layer\n"
            "  --k-only            keep every V channel; search K only\n"
            "  --rope-pairs        keep K channels in RoPE pairs (c, c + D/2): weights pruned by\n"
            "                      slimkv-prune then need no run-time mask\n"
            "synthetic options (layers cycle outlier / spread / medium sensitivity):\n"
            "  --layers N (6) --tokens N (512) --q-heads N (8) --kv-heads N (2) --head-dim N (64)\n"
            "  --seed N (1) --dtype f32|f16 (f32)\n");
}

int main(int argc, char **argv)
{
    const char *calib_path = NULL, *out_path = NULL, *synth_path = NULL;
    budget_params p;
    budget_defaults(&p);
    synth_params sp;
    synth_defaults(&sp);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int bad = 0, seed = 1;
#define VALUE cli_value(argc, argv, &i)
        if (!strcmp(o, "--calib"))
            bad = !(calib_path = VALUE);
        else if (!strcmp(o, "--out"))
            bad = !(out_path = VALUE);
        else if (!strcmp(o, "--synthetic"))
            bad = !(synth_path = VALUE);
        else if (!strcmp(o, "--budget"))
            bad = cli_double(VALUE, o, 1e-6, 1.0, &p.budget);
        else if (!strcmp(o, "--k-format"))
            bad = cli_format(VALUE, o, &p.k_format);
        else if (!strcmp(o, "--v-format"))
            bad = cli_format(VALUE, o, &p.v_format);
        else if (!strcmp(o, "--group"))
            bad = cli_int(VALUE, o, 16, 1024, &p.group_size);
        else if (!strcmp(o, "--residual"))
            bad = cli_int(VALUE, o, 0, 1 << 20, &p.residual);
        else if (!strcmp(o, "--sink"))
            bad = cli_int(VALUE, o, 0, 1 << 20, &p.n_sink);
        else if (!strcmp(o, "--align"))
            bad = cli_int(VALUE, o, 4, 1024, &p.channel_align);
        else if (!strcmp(o, "--queries"))
            bad = cli_int(VALUE, o, 1, 1 << 20, &p.n_queries);
        else if (!strcmp(o, "--context"))
            bad = cli_int(VALUE, o, 1, 1 << 28, &p.context);
        else if (!strcmp(o, "--per-head"))
            p.per_head = 1;
        else if (!strcmp(o, "--k-only"))
            p.prune_v = 0;
        else if (!strcmp(o, "--rope-pairs"))
            p.rope_pairs = 1;
        else if (!strcmp(o, "--layers"))
            bad = cli_int(VALUE, o, 1, 4096, &sp.n_layers);
        else if (!strcmp(o, "--tokens"))
            bad = cli_int(VALUE, o, 1, 1 << 20, &sp.n_tokens);
        else if (!strcmp(o, "--q-heads"))
            bad = cli_int(VALUE, o, 1, 1024, &sp.n_q_heads);
        else if (!strcmp(o, "--kv-heads"))
            bad = cli_int(VALUE, o, 1, 1024, &sp.n_kv_heads);
        else if (!strcmp(o, "--head-dim"))
            bad = cli_int(VALUE, o, 16, 1024, &sp.head_dim);
        else if (!strcmp(o, "--seed")) {
            bad = cli_int(VALUE, o, 0, 1 << 30, &seed);
            sp.seed = (uint64_t)seed;
        } else if (!strcmp(o, "--dtype")) {
            const char *d = VALUE;
            bad = !d || (strcmp(d, "f32") && strcmp(d, "f16"));
            if (d && bad)
                fprintf(stderr, "--dtype: expected f32 or f16, got '%s'\n", d);
            if (!bad)
                sp.dtype = strcmp(d, "f16") ? ST_F32 : ST_F16;
        } else if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "unknown option %s\n", o);
            bad = 1;
        }
#undef VALUE
        if (bad) {
            usage(stderr);
            return 2;
        }
    }
    if (synth_path) {
        if (calib_write_synthetic(synth_path, &sp))
            return 1;
        printf("wrote synthetic calibration %s\n", synth_path);
        if (!out_path)
            return 0;
        calib_path = synth_path;
    }
    if (!calib_path || !out_path) {
        usage(stderr);
        return 2;
    }

    calib_file calib;
    if (calib_open(calib_path, &calib))
        return 1;
    budget_result r;
    int rc = budget_search(&calib, &p, &r);
    if (rc == 0) {
        budget_print(stdout, &calib, &p, &r);
        slimkv_plan *plan = NULL;
        slimkv_status st = budget_make_plan(&p, &r, &plan);
        if (st == SLIMKV_OK)
            st = slimkv_plan_save(out_path, plan);
        slimkv_plan_destroy(plan);
        if (st != SLIMKV_OK) {
            fprintf(stderr, "%s: %s\n", out_path, slimkv_status_str(st));
            rc = -1;
        } else {
            printf("wrote plan %s\n", out_path);
        }
        budget_result_free(&r);
    }
    calib_close(&calib);
    return rc == 0 ? 0 : 1;
}
