/* rank/train/device.c - choosing the backend: --device cpu|cuda, --dtype (rank/train/params.h). */
#include "rank/train/params.h"

#include <string.h>

#ifdef MELBO_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

int melbo_device_parse(const char *s, int *device, struct melbo_err *err) {
    if (!strcmp(s, "cpu"))
        *device = MELBO_DEVICE_CPU;
    else if (!strcmp(s, "cuda") || !strcmp(s, "gpu"))
        *device = MELBO_DEVICE_CUDA;
    else
        return melbo_err_set(err, MELBO_EINVAL, "--device must be cuda or cpu, not '%s'", s);
    return 0;
}

int melbo_dtype_flag_parse(const char *s, int *bf16, struct melbo_err *err) {
    if (strcmp(s, "bf16") && strcmp(s, "fp32"))
        return melbo_err_set(err, MELBO_EINVAL, "--dtype must be bf16 or fp32, not '%s'", s);
    *bf16 = !strcmp(s, "bf16");
    return 0;
}

int melbo_device_resolve(int *device, struct melbo_err *err) {
#ifdef MELBO_HAVE_CUDA
    if (*device == MELBO_DEVICE_AUTO) {
        int n = 0;
        *device = cudaGetDeviceCount(&n) == cudaSuccess && n > 0 ? MELBO_DEVICE_CUDA
                                                                 : MELBO_DEVICE_CPU;
    }
    return 0;
#else
    if (*device == MELBO_DEVICE_CUDA)
        return melbo_err_set(err, MELBO_EUNSUPPORTED,
                             "--device cuda: this melbo-rank was built without CUDA (configure "
                             "on a machine with nvcc, see README)");
    *device = MELBO_DEVICE_CPU;
    return 0;
#endif
}
