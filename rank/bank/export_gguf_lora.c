/*
 * rank/bank/export_gguf_lora.c - `--format gguf-lora`: one adapter as a llama.cpp LoRA adapter.
 *
 * What llama.cpp's loader (src/llama-adapter.cpp, llama_adapter_lora_init) requires, and what
 * convert_lora_to_gguf.py writes:
 *   general.architecture   the base model's GGUF architecture: llama.cpp refuses the adapter
 *                          when it differs ("model arch and LoRA arch mismatch")
 *   general.type           "adapter"
 *   adapter.type           "lora"
 *   adapter.lora.alpha     F32; llama.cpp scales by alpha / rank with rank = lora_b's ne[0]
 *   blk.S.ffn_down.weight.lora_a   F32 ne = [d_mlp, r] (row-major [r, d_mlp]: A as stored)
 *   blk.S.ffn_down.weight.lora_b   F32 ne = [r, d]     (row-major [d, r]: B as stored)
 * The loader pairs the two by name, checks lora_a ne[0] and lora_b ne[1] against the model's
 * ffn_down (ne = [n_ff, n_embd]) and lora_a ne[1] == lora_b ne[0], and refuses any tensor whose
 * name ends otherwise. It ignores other metadata, so provenance goes into melbo.* keys.
 *
 * The architecture comes from the bank's `architecture` metadata: HF classes map as
 * convert_hf_to_gguf.py maps them (Mistral is "llama" there); a bank trained on a GGUF model
 * records "LlamaForCausalLM (GGUF)" (melbo reads llama GGUFs only).
 */
#include "rank/bank/export.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "rank/bank/gguf_write.h"

static const struct {
    const char *hf;   // architectures[0], or a config.json model_type
    const char *gguf; // llama.cpp's general.architecture
} arch_map[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "llama"},
    {"Qwen2ForCausalLM", "qwen2"},
    {"Qwen3ForCausalLM", "qwen3"},
    {"QWenLMHeadModel", "qwen"},
    {"llama", "llama"},
    {"mistral", "llama"},
    {"qwen2", "qwen2"},
    {"qwen3", "qwen3"},
    {"qwen", "qwen"},
};

const char *melbo_export_gguf_arch(const char *architecture) {
    if (architecture == NULL)
        return NULL;
    /* "LlamaForCausalLM (GGUF)": the class melbo maps the GGUF's architecture to */
    size_t n = strcspn(architecture, " ");
    for (size_t i = 0; i < sizeof arch_map / sizeof arch_map[0]; i++)
        if (strlen(arch_map[i].hf) == n && !strncmp(arch_map[i].hf, architecture, n))
            return arch_map[i].gguf;
    return NULL;
}

/* A metadata value copied as a melbo.* string key, when the bank has it. */
static void copy_meta(struct melbo_gguf_writer *w, const struct melbo_bank *b, const char *key) {
    const char *v = melbo_bank_meta(b, key);
    char k[96];
    snprintf(k, sizeof k, "melbo.%s", key);
    if (v)
        melbo_gguf_writer_str(w, k, v);
}

int melbo_export_gguf_lora(const struct melbo_export_job *job, struct melbo_err *err) {
    const struct melbo_bank *b = job->bank;
    const char *hf = melbo_bank_meta(b, "architecture");
    const char *arch = melbo_export_gguf_arch(hf);
    if (arch == NULL)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: architecture '%s' has no llama.cpp architecture known to melbo "
                             "(Llama, Mistral, Qwen2, Qwen3, Qwen-1)",
                             job->bank_path, hf ? hf : "(none)");
    static const char *const modules[] = {"mlp.down_proj", "mlp.c_proj", "ffn_down"};
    int known = 0;
    for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++)
        known |= !strcmp(b->module, modules[i]);
    if (!known)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "%s: adapter_module '%s' is not an MLP output projection melbo can "
                             "name in llama.cpp (mlp.down_proj, mlp.c_proj, ffn_down)",
                             job->bank_path, b->module);
    if (b->source_layer < 0)
        return melbo_err_set(err, MELBO_EMISSING, "%s: missing metadata 'source_layer'",
                             job->bank_path);
    struct stat st;
    if (stat(job->out, &st) == 0 && S_ISDIR(st.st_mode))
        return melbo_err_set(err, MELBO_EIO,
                             "-o %s is a directory (--format gguf-lora writes one file)", job->out);

    struct melbo_gguf_writer w;
    melbo_gguf_writer_init(&w);
    char name[160], src[64];
    melbo_gguf_writer_str(&w, "general.architecture", arch);
    melbo_gguf_writer_str(&w, "general.type", "adapter");
    melbo_gguf_writer_str(&w, "adapter.type", "lora");
    melbo_gguf_writer_f32(&w, "adapter.lora.alpha", (float)b->alpha);
    const char *model = melbo_bank_meta(b, "model_name");
    snprintf(name, sizeof name, "melbo adapter %d for %s", job->adapter, model ? model : arch);
    melbo_gguf_writer_str(&w, "general.name", name);
    melbo_gguf_writer_u32(&w, "melbo.adapter", (uint32_t)job->adapter);
    const char *copied[] = {"model_name",
                            "model_fingerprint",
                            "architecture",
                            "source_layer",
                            "target_layer",
                            "adapter_module",
                            "adapter_alpha",
                            "p",
                            "q"};
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++)
        copy_meta(&w, b, copied[i]);
    if (b->steps > 0)
        melbo_gguf_writer_f32(&w, "melbo.objective",
                              b->objective[(size_t)job->adapter * b->steps + b->steps - 1]);

    /* the bank's A [r, d_mlp] and B [d, r] are already ggml's [d_mlp, r] and [r, d] */
    int64_t ne_a[2] = {b->d_mlp, b->rank}, ne_b[2] = {b->rank, b->d};
    snprintf(src, sizeof src, "blk.%d.ffn_down.weight", b->source_layer);
    snprintf(name, sizeof name, "%s.lora_a", src);
    melbo_gguf_writer_tensor_f32(&w, name, 2, ne_a, melbo_bank_lora_A(b, job->adapter, 0));
    snprintf(name, sizeof name, "%s.lora_b", src);
    melbo_gguf_writer_tensor_f32(&w, name, 2, ne_b, melbo_bank_lora_B(b, job->adapter, 0));
    int ret = melbo_gguf_writer_write(&w, job->out, err);
    if (ret)
        melbo_err_prefix(err, "cannot write -o %s", job->out);
    melbo_gguf_writer_free(&w);
    return ret;
}
