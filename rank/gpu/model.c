/* rank/gpu/model.c - weights in GPU memory (rank/gpu/model.h). */
#include "rank/gpu/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

size_t melbo_gpu_dtype_size(enum melbo_gpu_dtype t) { return t == MELBO_GPU_F32 ? 4 : 2; }

const char *melbo_gpu_dtype_name(enum melbo_gpu_dtype t) {
    return t == MELBO_GPU_F32 ? "fp32" : "bf16";
}

int melbo_gpu_err(struct melbo_err *err, int rc, const char *what) {
    if (rc == 0)
        return 0;
    return melbo_err_set(err, rc < 0 ? rc : MELBO_EIO, "GPU: %s: %s", what,
                         melbo_cuda_strerror(rc));
}

int melbo_gpu_select_device(int *device, struct melbo_err *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return melbo_err_set(err, MELBO_EUNSUPPORTED, "--device cuda: no CUDA device (%s)",
                             e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (lr == NULL)
        lr = getenv("SLURM_LOCALID");
    int dev = lr ? atoi(lr) % n : 0;
    e = cudaSetDevice(dev);
    if (e != cudaSuccess)
        return melbo_err_set(err, MELBO_EUNSUPPORTED, "--device cuda: cannot use device %d: %s",
                             dev, cudaGetErrorString(e));
    *device = dev;
    return 0;
}

size_t melbo_gpu_device_used(void) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
        return 0;
    return total_b - free_b;
}

/* Lays out every tensor of g in base (NULL: count only). Needs g->cfg, range, flags set. */
static void model_layout(struct melbo_gpu_model *g, char *base, size_t *used, int embed, int head,
                         int tied) {
    const struct melbo_model_config *c = &g->cfg;
    size_t es = melbo_gpu_dtype_size(g->dtype);
    size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim, ff = (size_t)c->d_ff;
    size_t rows = (size_t)melbo_model_qkv_rows(c), qd = (size_t)c->n_heads * hd;
    *used = 0;
    for (int l = g->layer_begin; l < g->layer_end; l++) {
        struct melbo_gpu_layer *w = &g->layers[l];
        int has_bqkv = w->b_qkv != NULL, has_bo = w->b_o != NULL;
        w->attn_norm = melbo_gpu_carve(base, used, d * es);
        w->w_qkv = melbo_gpu_carve(base, used, rows * d * es);
        w->b_qkv = has_bqkv ? melbo_gpu_carve(base, used, rows * 4) : NULL;
        w->q_norm = c->qk_norm ? melbo_gpu_carve(base, used, hd * es) : NULL;
        w->k_norm = c->qk_norm ? melbo_gpu_carve(base, used, hd * es) : NULL;
        w->w_o = melbo_gpu_carve(base, used, d * qd * es);
        w->b_o = has_bo ? melbo_gpu_carve(base, used, d * 4) : NULL;
        w->mlp_norm = melbo_gpu_carve(base, used, d * es);
        w->w_gu = melbo_gpu_carve(base, used, 2 * ff * d * es);
        w->w_down = melbo_gpu_carve(base, used, d * ff * es);
        /* keep the "has bias" marks when only counting */
        if (base == NULL) {
            w->b_qkv = has_bqkv ? (float *)1 : NULL;
            w->b_o = has_bo ? (float *)1 : NULL;
        }
    }
    g->embed = embed ? melbo_gpu_carve(base, used, (size_t)c->vocab * d * es) : NULL;
    g->final_norm = head ? melbo_gpu_carve(base, used, d * es) : NULL;
    g->lm_head = head ? (tied && embed ? g->embed : melbo_gpu_carve(base, used, (size_t)c->vocab * d * es))
                      : NULL;
    g->rope_inv_freq = melbo_gpu_carve(base, used, (size_t)(c->rope_dim / 2) * 4);
}

/* Stream, cuBLASLt handle and the arena for the layout; layers[] must hold the bias marks. */
static int model_alloc(struct melbo_gpu_model *g, int embed, int head, int tied,
                       struct melbo_err *err) {
    size_t used = 0;
    model_layout(g, NULL, &used, embed, head, tied);
    cudaError_t e = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess)
        return melbo_gpu_err(err, (int)e, "creating the stream");
    int rc = melbo_cuda_blas_init(&g->blas, 0);
    if (rc)
        return melbo_gpu_err(err, rc, "creating the cuBLASLt handle");
    e = cudaMalloc(&g->arena, used);
    if (e != cudaSuccess)
        return melbo_err_set(err, MELBO_ENOMEM,
                             "GPU: cannot allocate %.2f GB for the weights: %s", used / 1e9,
                             cudaGetErrorString(e));
    g->arena_bytes = used;
    model_layout(g, g->arena, &used, embed, head, tied);
    return 0;
}

/* Copies n fp32 host values to dst in dtype t, through the staging buffer stage (n elements). */
static int put(void *dst, const float *src, size_t n, enum melbo_gpu_dtype t, void *stage) {
    if (t == MELBO_GPU_F32)
        return (int)cudaMemcpy(dst, src, n * 4, cudaMemcpyHostToDevice);
    melbo_bf16_from_f32_host(stage, src, n);
    return (int)cudaMemcpy(dst, stage, n * 2, cudaMemcpyHostToDevice);
}

static int put_f32(float *dst, const float *src, size_t n) {
    return (int)cudaMemcpy(dst, src, n * 4, cudaMemcpyHostToDevice);
}

/*
 * The CUDA kernels implement the Llama family (Llama, Mistral, Qwen2/3, Qwen-1). Issue 21's
 * families (Gemma 2/3, OLMo 2, Phi-3/4) run on the CPU backend only for now.
 */
static int gpu_supports(const struct melbo_model_config *c, struct melbo_err *err) {
    if (c->arch <= MELBO_ARCH_QWEN && c->act == MELBO_ACT_SILU && !c->post_norms &&
        !c->no_pre_norms && c->qk_norm <= 1 && c->embed_scale == 0.0f && c->attn_scale == 0.0f &&
        c->attn_softcap == 0.0f && c->final_softcap == 0.0f && c->window == 0 && !c->local_rope)
        return 0;
    return melbo_err_set(err, MELBO_EUNSUPPORTED,
                         "the CUDA backend does not run model_type \"%s\" yet: use --device cpu",
                         c->model_type);
}

int melbo_gpu_model_upload(struct melbo_gpu_model *g, const struct melbo_model *m,
                           enum melbo_gpu_dtype dtype, struct melbo_err *err) {
    memset(g, 0, sizeof *g);
    if (gpu_supports(&m->cfg, err))
        return MELBO_EUNSUPPORTED;
    g->cfg = m->cfg;
    g->dtype = dtype;
    g->tp_rank = m->tp_rank;
    g->tp_size = m->tp_size;
    g->reduce = m->reduce;
    g->layer_begin = m->layer_begin;
    g->layer_end = m->layer_end;
    g->layers = melbo_xcalloc((size_t)m->cfg.n_layers, sizeof *g->layers);
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        g->layers[l].b_qkv = m->layers[l].b_qkv ? (float *)1 : NULL;
        g->layers[l].b_o = m->layers[l].b_o ? (float *)1 : NULL;
    }
    int tied = m->lm_head != NULL && m->lm_head == m->embed;
    int ret = model_alloc(g, m->embed != NULL, m->lm_head != NULL, tied, err);
    if (ret)
        return ret;
    const struct melbo_model_config *c = &m->cfg;
    size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim, ff = (size_t)c->d_ff;
    size_t rows = (size_t)melbo_model_qkv_rows(c), qd = (size_t)c->n_heads * hd;
    size_t biggest = 2 * ff * d;
    if (m->embed || m->lm_head)
        biggest = biggest > (size_t)c->vocab * d ? biggest : (size_t)c->vocab * d;
    void *stage = dtype == MELBO_GPU_BF16 ? melbo_xmalloc(biggest * 2) : NULL;
    int rc = 0;
    for (int l = m->layer_begin; l < m->layer_end && rc == 0; l++) {
        const struct melbo_layer_weights *w = &m->layers[l];
        struct melbo_gpu_layer *gw = &g->layers[l];
        rc = put(gw->attn_norm, w->attn_norm, d, dtype, stage);
        rc = rc ? rc : put(gw->w_qkv, w->w_qkv, rows * d, dtype, stage);
        rc = rc || !w->b_qkv ? rc : put_f32(gw->b_qkv, w->b_qkv, rows);
        rc = rc || !w->q_norm ? rc : put(gw->q_norm, w->q_norm, hd, dtype, stage);
        rc = rc || !w->k_norm ? rc : put(gw->k_norm, w->k_norm, hd, dtype, stage);
        rc = rc ? rc : put(gw->w_o, w->w_o, d * qd, dtype, stage);
        rc = rc || !w->b_o ? rc : put_f32(gw->b_o, w->b_o, d);
        rc = rc ? rc : put(gw->mlp_norm, w->mlp_norm, d, dtype, stage);
        rc = rc ? rc : put(gw->w_gu, w->w_gu, 2 * ff * d, dtype, stage);
        rc = rc ? rc : put(gw->w_down, w->w_down, d * ff, dtype, stage);
    }
    if (rc == 0 && m->embed)
        rc = put(g->embed, m->embed, (size_t)c->vocab * d, dtype, stage);
    if (rc == 0 && m->final_norm)
        rc = put(g->final_norm, m->final_norm, d, dtype, stage);
    if (rc == 0 && m->lm_head && !tied)
        rc = put(g->lm_head, m->lm_head, (size_t)c->vocab * d, dtype, stage);
    if (rc == 0)
        rc = put_f32(g->rope_inv_freq, m->rope_inv_freq, (size_t)(c->rope_dim / 2));
    free(stage);
    return melbo_gpu_err(err, rc, "copying the weights to the device");
}

/* Fills n device values with mean + std * normal, seed derived from (seed, *tensor_no). */
static int fill(void *x, size_t n, float mean, float std, enum melbo_gpu_dtype t, uint64_t seed,
                uint64_t *tensor_no, cudaStream_t s) {
    uint64_t k = seed * 0x9e3779b97f4a7c15ULL + ++*tensor_no;
    return t == MELBO_GPU_F32 ? melbo_cuda_fill_normal_f32(x, n, mean, std, k, s)
                              : melbo_cuda_fill_normal_bf16(x, n, mean, std, k, s);
}

int melbo_gpu_model_init_random(struct melbo_gpu_model *g, const struct melbo_model_config *cfg,
                                const struct melbo_load_opts *opts, enum melbo_gpu_dtype dtype,
                                uint64_t seed, struct melbo_err *err) {
    memset(g, 0, sizeof *g);
    if (gpu_supports(cfg, err))
        return MELBO_EUNSUPPORTED;
    g->cfg = *cfg;
    g->dtype = dtype;
    g->tp_size = 1;
    g->layer_begin = opts->layer_begin;
    g->layer_end = opts->layer_end < 0 ? cfg->n_layers : opts->layer_end;
    if (g->layer_begin < 0 || g->layer_begin > g->layer_end || g->layer_end > cfg->n_layers)
        return melbo_err_set(err, MELBO_ERANGE, "layers [%d, %d) are outside a %d-layer model",
                             g->layer_begin, g->layer_end, cfg->n_layers);
    g->layers = melbo_xcalloc((size_t)cfg->n_layers, sizeof *g->layers);
    for (int l = g->layer_begin; l < g->layer_end; l++)
    {
        g->layers[l].b_qkv = cfg->qkv_bias ? (float *)1 : NULL;
        g->layers[l].b_o = cfg->o_bias ? (float *)1 : NULL;
    }
    int ret = model_alloc(g, opts->embed, opts->head, cfg->tied_embeddings, err);
    if (ret)
        return ret;
    const struct melbo_model_config *c = &g->cfg;
    size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim, ff = (size_t)c->d_ff;
    size_t rows = (size_t)melbo_model_qkv_rows(c), qd = (size_t)c->n_heads * hd;
    cudaStream_t s = g->stream;
    uint64_t k = 0;
    int rc = 0;
    for (int l = g->layer_begin; l < g->layer_end && rc == 0; l++) {
        struct melbo_gpu_layer *w = &g->layers[l];
        k = (uint64_t)l << 8;
        rc = fill(w->attn_norm, d, 1.0f, 0.1f, dtype, seed, &k, s);
        rc = rc ? rc : fill(w->w_qkv, rows * d, 0.0f, 1.0f / sqrtf((float)d), dtype, seed, &k, s);
        rc = rc || !w->b_qkv ? rc
                             : melbo_cuda_fill_normal_f32(w->b_qkv, rows, 0.0f, 0.1f, seed + ++k, s);
        rc = rc || !w->q_norm ? rc : fill(w->q_norm, hd, 1.0f, 0.1f, dtype, seed, &k, s);
        rc = rc || !w->k_norm ? rc : fill(w->k_norm, hd, 1.0f, 0.1f, dtype, seed, &k, s);
        rc = rc ? rc : fill(w->w_o, d * qd, 0.0f, 1.0f / sqrtf((float)qd), dtype, seed, &k, s);
        rc = rc || !w->b_o ? rc
                           : melbo_cuda_fill_normal_f32(w->b_o, d, 0.0f, 0.1f, seed + ++k, s);
        rc = rc ? rc : fill(w->mlp_norm, d, 1.0f, 0.1f, dtype, seed, &k, s);
        rc = rc ? rc : fill(w->w_gu, 2 * ff * d, 0.0f, 1.0f / sqrtf((float)d), dtype, seed, &k, s);
        rc = rc ? rc : fill(w->w_down, d * ff, 0.0f, 1.0f / sqrtf((float)ff), dtype, seed, &k, s);
    }
    k = (uint64_t)1 << 40;
    if (rc == 0 && g->embed)
        rc = fill(g->embed, (size_t)c->vocab * d, 0.0f, 1.0f, dtype, seed, &k, s);
    if (rc == 0 && g->final_norm)
        rc = fill(g->final_norm, d, 1.0f, 0.1f, dtype, seed, &k, s);
    if (rc == 0 && g->lm_head && g->lm_head != g->embed)
        rc = fill(g->lm_head, (size_t)c->vocab * d, 0.0f, 1.0f / sqrtf((float)d), dtype, seed, &k,
                  s);
    if (rc == 0) { /* RoPE frequencies as the host model computes them */
        float *inv = melbo_xalloc_f32((size_t)(c->rope_dim / 2) + 1);
        melbo_config_rope_inv_freq(c, inv);
        rc = put_f32(g->rope_inv_freq, inv, (size_t)(c->rope_dim / 2));
        free(inv);
    }
    if (rc == 0)
        rc = (int)cudaStreamSynchronize(s);
    return melbo_gpu_err(err, rc, "drawing random weights");
}

void melbo_gpu_model_free(struct melbo_gpu_model *g) {
    if (g->arena == NULL && g->stream == NULL && g->blas == NULL) { /* nothing on the device */
        free(g->layers);
        memset(g, 0, sizeof *g);
        return;
    }
    if (g->stream)
        cudaStreamSynchronize(g->stream);
    melbo_cuda_blas_free(g->blas);
    cudaFree(g->arena);
    if (g->stream)
        cudaStreamDestroy(g->stream);
    free(g->layers);
    memset(g, 0, sizeof *g);
}
