/* proto/wire.c - envelope encoding/decoding and protocol names (proto/wire.h). */
#include "proto/wire.h"

#include <stdlib.h>
#include <strings.h>

#include "common/err.h"

int melbo_wire_encode(const Melbo__Envelope *env, size_t reserve, uint8_t **frame, size_t *len) {
    size_t n = melbo__envelope__get_packed_size(env);
    if (n > MELBO_FRAME_MAX)
        return MELBO_ERANGE;
    uint8_t *buf = malloc(reserve + MELBO_FRAME_HEADER + n);
    if (buf == NULL)
        return MELBO_ENOMEM;
    melbo_frame_put_header(buf + reserve, (uint32_t)n);
    melbo__envelope__pack(env, buf + reserve + MELBO_FRAME_HEADER);
    *frame = buf;
    *len = MELBO_FRAME_HEADER + n;
    return 0;
}

Melbo__Envelope *melbo_wire_decode(const uint8_t *payload, size_t len) {
    Melbo__Envelope *env = melbo__envelope__unpack(NULL, len, payload);
    if (env == NULL)
        return NULL;
    if (env->body_case == MELBO__ENVELOPE__BODY__NOT_SET) {
        melbo__envelope__free_unpacked(env, NULL);
        return NULL;
    }
    return env;
}

static const char *const state_names[] = {"UNKNOWN", "QUEUED", "STARTING", "RUNNING", "GENERATING",
                                          "CHECKPOINTED", "DONE", "FAILED", "CANCELLED"};

const char *melbo_job_state_name(int state) {
    if (state < 0 || state >= (int)(sizeof state_names / sizeof state_names[0]))
        return "UNKNOWN";
    return state_names[state];
}

int melbo_job_state_parse(const char *s) {
    for (int i = 1; i < (int)(sizeof state_names / sizeof state_names[0]); i++)
        if (!strcasecmp(s, state_names[i]))
            return i;
    return -1;
}

int melbo_job_state_terminal(int state) {
    return state == MELBO__JOB_STATE__DONE || state == MELBO__JOB_STATE__FAILED ||
           state == MELBO__JOB_STATE__CANCELLED;
}

const char *melbo_wire_error_name(int code) {
    static const char *const names[] = {"none",       "protocol", "version",  "auth",
                                        "invalid",    "not-found", "state",   "permission",
                                        "slow-consumer", "internal", "too-large"};
    if (code < 0 || code >= (int)(sizeof names / sizeof names[0]))
        return "unknown";
    return names[code];
}
