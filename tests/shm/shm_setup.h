/* Set-up shared by the shm test files: a small config and opening a server
 * on it. Built as its own .c (shm_setup.c), which must not include
 * criterion.h: the TSan pass's Criterion stand-in defines its runner in
 * that header, so a second file including it would not link. Failures
 * therefore abort() with a message (Criterion reports the crashed test). */
#ifndef FERRY_TEST_SHM_SETUP_H
#define FERRY_TEST_SHM_SETUP_H

#include <ferry/shm.h>
#include <stdint.h>

/* The defaults, then name, ring_slots and payload_max; max_workers and
 * heartbeat_ms too when not 0 (0 keeps the default). */
void shm_test_config(fshm_config_t *cfg, const char *name, uint32_t slots, uint32_t payload_max,
                     uint32_t workers, uint32_t heartbeat_ms);

/* fshm_server_open(cfg), or abort() with fshm_last_error(). */
fshm_server_t *shm_test_open(const fshm_config_t *cfg);

#endif
