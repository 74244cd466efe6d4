/*
 * tests/mpi/make_random_model.c DIR D LAYERS HEADS KV_HEADS FF VOCAB
 * Writes a Llama-layout Hugging Face checkpoint (config.json + model.safetensors, F32) with random
 * weights, for tests that need a model larger than the committed goldens (tensor-parallel memory).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file.h"
#include "common/mem.h"
#include "common/rng.h"
#include "rank/model/safetensors_write.h"

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s DIR D LAYERS HEADS KV_HEADS FF VOCAB\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int d = atoi(argv[2]), L = atoi(argv[3]), H = atoi(argv[4]), KV = atoi(argv[5]);
    int ff = atoi(argv[6]), V = atoi(argv[7]), hd = d / H;
    mkdir(dir, 0755);
    char path[4096], cfg[2048];
    int n = snprintf(cfg, sizeof cfg,
                     "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                     "\"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                     "\"num_key_value_heads\": %d, \"intermediate_size\": %d, \"vocab_size\": %d, "
                     "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"hidden_act\": \"silu\", "
                     "\"tie_word_embeddings\": false, \"max_position_embeddings\": 2048}\n",
                     d, L, H, KV, ff, V);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (melbo_file_write_atomic(path, cfg, (size_t)n, NULL) != 0)
        return 1;
    struct melbo_st_writer w;
    melbo_st_writer_init(&w);
    float **bufs = melbo_xcalloc((size_t)(L * 9 + 3), sizeof *bufs);
    int nb = 0;
    uint64_t stream = 0;
#define ADD(name_fmt, layer, rows, cols, scale, one)                                       \
    do {                                                                                   \
        char nm[128];                                                                      \
        snprintf(nm, sizeof nm, name_fmt, layer);                                          \
        size_t cnt = (size_t)(rows) * (size_t)((cols) > 0 ? (cols) : 1);                       \
        float *b = melbo_xalloc_f32(cnt);                                                  \
        melbo_rng_normal_f32(5, stream++, b, cnt);                                         \
        for (size_t i = 0; i < cnt; i++)                                                   \
            b[i] = (one) + (scale) * b[i];                                                 \
        int64_t shp[2] = {rows, cols};                                                     \
        melbo_st_writer_add(&w, nm, MELBO_DTYPE_F32, (cols) > 0 ? 2 : 1, shp, b);              \
        bufs[nb++] = b;                                                                    \
    } while (0)
    float s = 0.5f / (float)d;
    for (int l = 0; l < L; l++) {
        ADD("model.layers.%d.input_layernorm.weight", l, d, 0, 0.1f, 1.0f);
        ADD("model.layers.%d.self_attn.q_proj.weight", l, H * hd, d, s * 20, 0.0f);
        ADD("model.layers.%d.self_attn.k_proj.weight", l, KV * hd, d, s * 20, 0.0f);
        ADD("model.layers.%d.self_attn.v_proj.weight", l, KV * hd, d, s * 20, 0.0f);
        ADD("model.layers.%d.self_attn.o_proj.weight", l, d, H * hd, s * 20, 0.0f);
        ADD("model.layers.%d.post_attention_layernorm.weight", l, d, 0, 0.1f, 1.0f);
        ADD("model.layers.%d.mlp.gate_proj.weight", l, ff, d, s * 20, 0.0f);
        ADD("model.layers.%d.mlp.up_proj.weight", l, ff, d, s * 20, 0.0f);
        ADD("model.layers.%d.mlp.down_proj.weight", l, d, ff, s * 20, 0.0f);
    }
    ADD("model.embed_tokens.weight%.0d", 0, V, d, 1.0f, 0.0f);
    ADD("model.norm.weight%.0d", 0, d, 0, 0.1f, 1.0f);
    ADD("lm_head.weight%.0d", 0, V, d, s * 20, 0.0f);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int ret = melbo_st_writer_write(&w, path, NULL);
    melbo_st_writer_free(&w);
    for (int i = 0; i < nb; i++)
        free(bufs[i]);
    free(bufs);
    return ret ? 1 : 0;
}
