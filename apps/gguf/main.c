/* ferry-gguf: writes a small random GGUF model of llama.cpp's "llama"
 * architecture, deterministic from a seed, for testing and benchmarking
 * against a real llama-server without downloading any model. */
#include "llama_model.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: ferry-gguf --out FILE [--seed N] [--shape tiny|bench]\n"
            "\n"
            "Writes a GGUF v3 model (architecture llama, random F16 weights, a\n"
            "SentencePiece-style vocabulary with <unk> <s> </s>, the 256 <0xNN> byte\n"
            "tokens, <|im_start|> and <|im_end|> (end of sequence), ChatML chat\n"
            "template). The same seed and shape always give the same bytes.\n"
            "\n"
            "  --out FILE      where to write (replaced atomically)\n"
            "  --seed N        weight seed (default 1)\n"
            "  --shape NAME    tiny  (2 layers, embedding 64, 4/2 heads, ff 256, ~0.5 MB; default)\n"
            "                  bench (6 layers, embedding 384, 6/2 heads, ff 1024, ~25 MB)\n"
            "  -h, --help      this text\n");
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'},
        {"seed", required_argument, 0, 's'},
        {"shape", required_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *out = NULL, *shape_name = "tiny";
    uint64_t seed = 1;
    int c;
    while ((c = getopt_long(argc, argv, "o:s:S:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 's': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 0);
            if (errno || *end || end == optarg || optarg[0] == '-') {
                fprintf(stderr, "ferry-gguf: --seed wants a non-negative integer, got '%s'\n", optarg);
                return 2;
            }
            seed = v;
            break;
        }
        case 'S': shape_name = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ferry-gguf: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!out) {
        fprintf(stderr, "ferry-gguf: --out FILE is required (see --help)\n");
        return 2;
    }
    const fgguf_shape_t *shape = fgguf_shape_find(shape_name);
    if (!shape) {
        fprintf(stderr, "ferry-gguf: unknown shape '%s' (tiny or bench)\n", shape_name);
        return 2;
    }

    fgguf_writer_t w;
    fgguf_writer_init(&w);
    int rc = fgguf_llama_build(&w, shape, seed);
    if (rc) {
        fprintf(stderr, "ferry-gguf: building the model failed: %s\n", strerror(-rc));
        fgguf_writer_destroy(&w);
        return 1;
    }
    size_t size = fgguf_file_size(&w);
    rc = fgguf_write_file(&w, out);
    fgguf_writer_destroy(&w);
    if (rc) {
        fprintf(stderr, "ferry-gguf: cannot write %s: %s\n", out, strerror(-rc));
        return 1;
    }
    fprintf(stderr, "ferry-gguf: wrote %s (%s, seed %" PRIu64 ", %zu bytes)\n", out, shape->name, seed, size);
    return 0;
}
