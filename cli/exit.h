/* Exit codes: the payload's own status passes through unchanged; hutch's failures are 255
 * (as Apptainer); a payload killed by signal N gives 128+N. */
#pragma once

#define EXIT_HUTCH_FAILURE 255
#define EXIT_USAGE 255
#define EXIT_SIGNAL_BASE 128
