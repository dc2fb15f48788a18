/* Option parsing shared by the command-line tools. Each returns 0, or -1
 * with a message on stderr naming the option. */
#ifndef SLIMKV_TOOLS_CLI_H
#define SLIMKV_TOOLS_CLI_H

#include "slimkv.h"

/* The value after an option: argv[*i + 1], advancing *i; NULL with a message when missing. */
const char *cli_value(int argc, char **argv, int *i);
int cli_int(const char *text, const char *option, int min, int max, int *value);
int cli_double(const char *text, const char *option, double min, double max, double *value);
/* f32, f16, bf16, q8, q4, q2 */
int cli_format(const char *text, const char *option, slimkv_format *format);

#endif /* SLIMKV_TOOLS_CLI_H */
