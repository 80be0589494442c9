/* ferry farm: helpers shared by the farm layer's files (not public). */
#ifndef FERRY_FARM_INTERNAL_H
#define FERRY_FARM_INTERNAL_H

#include "ferry/farm.h"

/* sodium_init() once; -EIO if libsodium cannot start. */
int ffarm_crypto_init(void);
void ffarm_put_u64(uint8_t *p, uint64_t v);
uint64_t ffarm_get_u64(const uint8_t *p);

#endif
