/* Shared by the libFuzzer targets: each input is written to a file of this process's own
 * (hutch opens images by path). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry point, declared for -Wmissing-prototypes */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* The input as the file path (one per process, rewritten each time); -1 on failure. */
int fuzz_write_file(const uint8_t *data, size_t size, char *path, size_t len);
