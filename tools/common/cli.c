/* Option parsing shared by the command-line tools. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cli_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_int(const char *text, const char *option, int min, int max, int *value)
{
    char *end;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || !*text || *end || errno || v < min || v > max) {
        fprintf(stderr, "%s: expected an integer in [%d, %d], got '%s'\n", option, min, max, text ? text : "");
        return -1;
    }
    *value = (int)v;
    return 0;
}

int cli_double(const char *text, const char *option, double min, double max, double *value)
{
    char *end;
    errno = 0;
    double v = text ? strtod(text, &end) : 0;
    if (!text || !*text || *end || errno || !(v >= min && v <= max)) {
        fprintf(stderr, "%s: expected a number in [%g, %g], got '%s'\n", option, min, max, text ? text : "");
        return -1;
    }
    *value = v;
    return 0;
}

int cli_format(const char *text, const char *option, slimkv_format *format)
{
    if (text && slimkv_format_from_name(text, strlen(text), format) == SLIMKV_OK)
        return 0;
    fprintf(stderr, "%s: expected f32, f16, bf16, q8, q4, q3 or q2, got '%s'\n", option, text ? text : "");
    return -1;
}
