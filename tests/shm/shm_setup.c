/* See shm_setup.h. No criterion.h here (see there). */
#include "shm_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void shm_test_config(fshm_config_t *cfg, const char *name, uint32_t slots, uint32_t payload_max,
                     uint32_t workers, uint32_t heartbeat_ms)
{
    fshm_config_default(cfg);
    cfg->name = name;
    cfg->ring_slots = slots;
    cfg->payload_max = payload_max;
    if (workers)
        cfg->max_workers = workers;
    if (heartbeat_ms)
        cfg->heartbeat_ms = heartbeat_ms;
}

fshm_server_t *shm_test_open(const fshm_config_t *cfg)
{
    fshm_server_t *srv;
    int rc = fshm_server_open(&srv, cfg);
    if (rc < 0) {
        fprintf(stderr, "shm test: fshm_server_open(%s): %s: %s\n", cfg->name, strerror(-rc),
                fshm_last_error());
        abort();
    }
    return srv;
}
