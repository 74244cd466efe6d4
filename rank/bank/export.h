/*
 * rank/bank/export.h - `melbo-rank bank export BANK ... --format F -o OUT`: one vector or adapter
 * of a bank written in a format other tools load.
 *
 *   --adapter K --format peft -o DIR        PEFT LoRA directory (adapter_config.json +
 *                                           adapter_model.safetensors) for
 *                                           PeftModel.from_pretrained on the HF checkpoint
 *   --adapter K --format gguf-lora -o F     llama.cpp LoRA adapter GGUF (--lora F)
 *   --vector EXPR --format gguf-control-vector -o F
 *                                           llama.cpp control vector GGUF (--control-vector F):
 *                                           the vector of EXPR (rank/bank/vexpr.h, as `gen
 *                                           --vector`) as direction.S, S the bank's source layer
 *
 * Formats are rows of one table in export.c (name, the bank kind it exports, its writer), so a
 * new format is a row and a writer. Every output is written atomically: it exists whole or not
 * at all.
 *
 * Exit status as every melbo-rank command (rank/commands.h): 0, 1 for a bank or an output that
 * fails (message on stderr), 2 for a usage error.
 */
#ifndef MELBO_RANK_BANK_EXPORT_H
#define MELBO_RANK_BANK_EXPORT_H

#include "common/err.h"
#include "rank/bank/bank.h"

#ifdef __cplusplus
extern "C" {
#endif

/* `melbo-rank bank export ...`: argv[0] is "export". */
int melbo_bank_export_main(int argc, char **argv);

/* What a format's writer gets: the open bank, the selection and the output path. */
struct melbo_export_job {
    const struct melbo_bank *bank;
    const char *bank_path;
    int adapter;        // adapter formats: the adapter's index, < bank->N
    const char *vector; // vector formats: the vector expression (--vector EXPR), not yet checked
    const char *out;    // -o: a directory (peft) or a file
};

/* The writers (export_peft.c, export_gguf_lora.c, export_control_vector.c). Return 0 or a
 * negative code with err set; nothing is left at job->out on failure. */
int melbo_export_peft(const struct melbo_export_job *job, struct melbo_err *err);
int melbo_export_gguf_lora(const struct melbo_export_job *job, struct melbo_err *err);
int melbo_export_control_vector(const struct melbo_export_job *job, struct melbo_err *err);

/* llama.cpp's general.architecture for a bank's `architecture` metadata (HF's architectures[0],
 * "<class> (GGUF)" for a GGUF model, or a config model_type): "llama", "qwen2", "qwen3", "qwen";
 * NULL when melbo does not know it. */
const char *melbo_export_gguf_arch(const char *architecture);

#ifdef __cplusplus
}
#endif
#endif
