/* slimkv-prune: applies a plan's K channel masks to a model's q_proj /
 * k_proj weights (KVPruner weight-side pruning, SDS refit), so the model
 * emits already-pruned K. See weights.h for the rules. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "weights.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: slimkv-prune --model IN.safetensors --plan PLAN.safetensors --out OUT.safetensors\n"
            "                    [--refit CALIB.safetensors] [--remove]\n"
            "Llama naming: model.layers.{i}.self_attn.q_proj.weight [n_q*D, hidden] and k_proj.weight\n"
            "[n_kv*D, hidden] (F32/F16/BF16; q/k biases too when present). Pruned K channels (closed\n"
            "under RoPE pairs c, c + D/2; streaming heads untouched) zero their k_proj rows and the\n"
            "q_proj rows of every query head of the group. Every other tensor is copied.\n"
            "  --refit FILE   least-squares refit of the kept q_proj rows on calibration hidden states\n"
            "                 (layers.{i}.hidden or calib.hidden [tokens, hidden]); reports the score error\n"
            "  --remove       drop pruned rows instead of zeroing them (one kept count per layer needed);\n"
            "                 writes model.layers.{i}.self_attn.k_kept_channels [n_kv, d] (I32)\n");
}

int main(int argc, char **argv)
{
    prune_options o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int bad = 0;
        if (!strcmp(a, "--model"))
            bad = !(o.model_in = cli_value(argc, argv, &i));
        else if (!strcmp(a, "--plan"))
            bad = !(o.plan_path = cli_value(argc, argv, &i));
        else if (!strcmp(a, "--out"))
            bad = !(o.model_out = cli_value(argc, argv, &i));
        else if (!strcmp(a, "--refit"))
            bad = !(o.calib_path = cli_value(argc, argv, &i));
        else if (!strcmp(a, "--remove"))
            o.remove = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "unknown option %s\n", a);
            bad = 1;
        }
        if (bad) {
            usage(stderr);
            return 2;
        }
    }
    if (!o.model_in || !o.plan_path || !o.model_out) {
        usage(stderr);
        return 2;
    }
    score_errors err = {0};
    if (prune_model(&o, &err))
        return 1;
    printf("wrote %s (K channels %s)\n", o.model_out, o.remove ? "removed" : "zeroed");
    if (o.calib_path) {
        double ref = err.reference > 0 ? err.reference : 1;
        printf("pre-RoPE score error on calibration, relative ||S' - S|| / ||S||:\n"
               "  plain pruning %.6f, after refit %.6f (%d KV groups refit)\n",
               sqrt(err.pruned / ref), sqrt(err.refit / ref), err.groups_refit);
    }
    return 0;
}
