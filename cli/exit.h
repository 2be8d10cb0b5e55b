/* Exit codes, as Apptainer's: the payload's own status passes through unchanged; a command
 * line its parser (cobra) would reject (an unknown verb or option, an option without its
 * value, too few or too many arguments, a verb group without its subcommand) is 1;
 * everything else hutch refuses (an option's value included) or fails at is 255; a payload
 * killed by signal N gives 128+N. */
#pragma once

#define EXIT_HUTCH_FAILURE 255
#define EXIT_USAGE 1
#define EXIT_SIGNAL_BASE 128
