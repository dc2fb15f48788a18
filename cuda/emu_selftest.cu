/* emu_selftest.cu: checks cuda_compat.h. The same source builds against the
 * emulator and against real CUDA, so the kernels also show that what passes
 * under the emulator is legal CUDA:
 *
 *   g++ -std=c++17 -x c++ -DSLIMKV_CUDA_EMU -O1 -g cuda/emu_selftest.cu -o /tmp/emu_selftest
 *   nvcc -x cu cuda/emu_selftest.cu -o /tmp/emu_selftest_gpu
 *
 * Checks that only make sense for the emulator (scheduling order, garbage
 * fill, fault injection, allocation count) are under SLIMKV_EMU_ACTIVE. */
#include "cuda_compat.h"

#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#define EXPECT(cond, ...)                                                        \
    do {                                                                         \
        if (!(cond)) {                                                           \
            std::printf("emu selftest failed: %s:%d: %s: ", __func__, __LINE__, #cond); \
            std::printf(__VA_ARGS__);                                            \
            std::printf("\n");                                                   \
            return false;                                                        \
        }                                                                        \
    } while (0)
#define EXPECT_CUDA(call) \
    do {                  \
        cudaError_t expect_error_ = (call); \
        EXPECT(expect_error_ == cudaSuccess, "%s", cudaGetErrorString(expect_error_)); \
    } while (0)

#if SLIMKV_EMU_ACTIVE
/* Reading memory nobody wrote is what some checks provoke on purpose; under
 * valgrind that memory is (rightly) undefined, so those checks stand aside. */
static bool running_on_valgrind()
{
#ifdef SLIMKV_EMU_VALGRIND
    return RUNNING_ON_VALGRIND != 0;
#else
    return false;
#endif
}
#endif

/* ---------------------------------------------------------------- kernels */

/* Tree reduction of one block's slice of `in`, for any block size. */
__global__ void block_sum_kernel(const int *in, int *sums)
{
    __shared__ int partial[1024];
    unsigned t = threadIdx.x, n = blockDim.x;
    partial[t] = in[blockIdx.x * n + t];
    __syncthreads();
    unsigned span = 1;
    while (span < n)
        span *= 2;
    for (unsigned stride = span / 2; stride > 0; stride /= 2) {
        if (t < stride && t + stride < n)
            partial[t] += partial[t + stride];
        __syncthreads();
    }
    if (t == 0)
        sums[blockIdx.x] = partial[0];
}

/* Threads past `active` leave at once; the rest still meet at the barrier. */
__global__ void early_exit_kernel(unsigned active, int *sum)
{
    __shared__ int ones[1024];
    if (threadIdx.x >= active)
        return;
    ones[threadIdx.x] = 1;
    __syncthreads();
    if (threadIdx.x != 0)
        return;
    int total = 0;
    for (unsigned i = 0; i < active; ++i)
        total += ones[i];
    *sum = total;
}

/* Every thread of a 3-D grid records who it is. */
__global__ void whoami_kernel(unsigned *out)
{
    unsigned block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    unsigned threads = blockDim.x * blockDim.y * blockDim.z;
    unsigned thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    unsigned *mine = out + 8 * (block * threads + thread);
    mine[0] = blockIdx.x, mine[1] = blockIdx.y, mine[2] = blockIdx.z;
    mine[3] = threadIdx.x, mine[4] = threadIdx.y, mine[5] = threadIdx.z;
    mine[6] = blockDim.x | blockDim.y << 8 | blockDim.z << 16;
    mine[7] = gridDim.x | gridDim.y << 8 | gridDim.z << 16;
}

/* Dynamic shared memory of a template type: reverses each block's slice. */
template <typename T>
__global__ void reverse_kernel(const T *in, T *out)
{
    SLIMKV_DYNAMIC_SHARED(T, staged);
    unsigned t = threadIdx.x, n = blockDim.x;
    staged[t] = in[blockIdx.x * n + t];
    __syncthreads();
    out[blockIdx.x * n + t] = staged[n - 1 - t];
}

/* Two views of the same dynamic shared memory in one kernel. */
__global__ void two_views_kernel(unsigned *out)
{
    SLIMKV_DYNAMIC_SHARED(float, as_float);
    SLIMKV_DYNAMIC_SHARED(unsigned, as_bits);
    if (threadIdx.x == 0)
        as_float[0] = 1.0f;
    __syncthreads();
    if (threadIdx.x == 1) {
        out[0] = as_bits[0];
        out[1] = static_cast<unsigned>(reinterpret_cast<uintptr_t>(as_bits) % 16);
    }
}

/* Reads its neighbour's slot with no barrier in between: a race on a GPU. */
__global__ void missing_barrier_kernel(int *out)
{
    SLIMKV_DYNAMIC_SHARED(int, slots);
    unsigned t = threadIdx.x, n = blockDim.x;
    slots[t] = static_cast<int>(t);
    out[t] = slots[(t + 1) % n];
}

/* Each thread draws a ticket before and after a barrier: shows the order in
 * which the scheduler ran the threads in each phase. */
__global__ void ticket_kernel(int *counter, int *tickets)
{
    unsigned t = threadIdx.x, n = blockDim.x;
    tickets[t] = atomicAdd(counter, 1);
    __syncthreads();
    tickets[n + t] = atomicAdd(counter, 1);
}

/* A large local array: fiber stacks must hold it. */
__global__ void big_frame_kernel(int *out)
{
    int frame[8192];
    for (int i = 0; i < 8192; ++i)
        frame[i] = i ^ static_cast<int>(threadIdx.x);
    int total = 0;
    for (int i = 0; i < 8192; i += 97)
        total += frame[i];
    out[threadIdx.x] = total;
}

__global__ void touch_kernel(int *flag) { *flag = 1; }

/* ------------------------------------------------------------------ tests */

static bool check_block_sums(unsigned block_size)
{
    const unsigned blocks = 2, n = blocks * block_size;
    std::vector<int> host(n);
    for (unsigned i = 0; i < n; ++i)
        host[i] = static_cast<int>(i);
    int *in = nullptr, *sums = nullptr;
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&in), n * sizeof(int)));
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&sums), blocks * sizeof(int)));
    EXPECT_CUDA(cudaMemcpy(in, host.data(), n * sizeof(int), cudaMemcpyHostToDevice));
    SLIMKV_LAUNCH(block_sum_kernel, blocks, block_size, 0, 0, in, sums);
    EXPECT_CUDA(cudaGetLastError());
    int got[blocks];
    EXPECT_CUDA(cudaMemcpy(got, sums, sizeof got, cudaMemcpyDeviceToHost));
    long long b = block_size;
    EXPECT(got[0] == b * (b - 1) / 2, "block size %u: %d", block_size, got[0]);
    EXPECT(got[1] == b * b + b * (b - 1) / 2, "block size %u: %d", block_size, got[1]);
    EXPECT_CUDA(cudaFree(in));
    EXPECT_CUDA(cudaFree(sums));
    return true;
}

static bool test_reduction()
{
    for (unsigned block_size : {1u, 32u, 128u, 1000u})
        if (!check_block_sums(block_size))
            return false;
    int *sum = nullptr;
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&sum), sizeof(int)));
    SLIMKV_LAUNCH(early_exit_kernel, 1, 128, 0, 0, 100u, sum);
    int got = 0;
    EXPECT_CUDA(cudaMemcpy(&got, sum, sizeof got, cudaMemcpyDeviceToHost));
    EXPECT(got == 100, "early exit: %d", got);
    EXPECT_CUDA(cudaFree(sum));
    return true;
}

/* Launches from two host threads at once must not share emulator state. */
static bool test_host_threads()
{
    bool ok[2] = {false, false};
    std::thread a([&] { ok[0] = check_block_sums(256); });
    std::thread b([&] { ok[1] = check_block_sums(512); });
    a.join();
    b.join();
    EXPECT(ok[0] && ok[1], "thread results %d %d", ok[0], ok[1]);
    return true;
}

static bool test_3d_grid()
{
    const dim3 grid(3, 2, 2), block(4, 3, 2);
    const unsigned threads = 4 * 3 * 2, total = 3 * 2 * 2 * threads;
    unsigned *out = nullptr;
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&out), total * 8 * sizeof(unsigned)));
    SLIMKV_LAUNCH(whoami_kernel, grid, block, 0, 0, out);
    EXPECT_CUDA(cudaGetLastError());
    std::vector<unsigned> host(total * 8);
    EXPECT_CUDA(cudaMemcpy(host.data(), out, host.size() * sizeof(unsigned), cudaMemcpyDeviceToHost));
    unsigned i = 0;
    for (unsigned bz = 0; bz < 2; ++bz)
        for (unsigned by = 0; by < 2; ++by)
            for (unsigned bx = 0; bx < 3; ++bx)
                for (unsigned tz = 0; tz < 2; ++tz)
                    for (unsigned ty = 0; ty < 3; ++ty)
                        for (unsigned tx = 0; tx < 4; ++tx, ++i) {
                            const unsigned *r = &host[8 * i];
                            const unsigned want[8] = {bx, by, bz, tx, ty, tz, 4 | 3 << 8 | 2 << 16,
                                                      3 | 2 << 8 | 2 << 16};
                            for (int k = 0; k < 8; ++k)
                                EXPECT(r[k] == want[k], "element %u field %d: %u, want %u", i, k, r[k], want[k]);
                        }
    EXPECT_CUDA(cudaFree(out));
    return true;
}

template <typename T>
static bool check_reverse(unsigned blocks, unsigned block_size)
{
    const unsigned n = blocks * block_size;
    std::vector<T> host(n), back(n);
    for (unsigned i = 0; i < n; ++i)
        host[i] = static_cast<T>(i * 3 + 1);
    T *in = nullptr, *out = nullptr;
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&in), n * sizeof(T)));
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&out), n * sizeof(T)));
    EXPECT_CUDA(cudaMemcpy(in, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    SLIMKV_LAUNCH(reverse_kernel<T>, blocks, block_size, block_size * sizeof(T), 0, in, out);
    EXPECT_CUDA(cudaGetLastError());
    EXPECT_CUDA(cudaMemcpy(back.data(), out, n * sizeof(T), cudaMemcpyDeviceToHost));
    for (unsigned b = 0; b < blocks; ++b)
        for (unsigned t = 0; t < block_size; ++t)
            EXPECT(back[b * block_size + t] == host[b * block_size + block_size - 1 - t], "at %u.%u", b, t);
    EXPECT_CUDA(cudaFree(in));
    EXPECT_CUDA(cudaFree(out));
    return true;
}

static bool test_dynamic_shared()
{
    if (!check_reverse<float>(3, 256) || !check_reverse<int>(2, 1000))
        return false;
    unsigned *out = nullptr;
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&out), 2 * sizeof(unsigned)));
    SLIMKV_LAUNCH(two_views_kernel, 1, 2, 64, 0, out);
    unsigned got[2];
    EXPECT_CUDA(cudaMemcpy(got, out, sizeof got, cudaMemcpyDeviceToHost));
    EXPECT(got[0] == 0x3f800000u, "bits of 1.0f: %#x", got[0]);
    EXPECT(got[1] == 0, "dynamic shared memory misaligned by %u", got[1]);
    EXPECT_CUDA(cudaFree(out));
    return true;
}

/* The emulator's promises about scheduling and garbage. */
static bool test_emulator_schedule()
{
#if SLIMKV_EMU_ACTIVE
    const unsigned n = 64;
    int *counter = nullptr, *tickets = nullptr;
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&counter), sizeof(int)));
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&tickets), 2 * n * sizeof(int)));
    EXPECT_CUDA(cudaMemset(counter, 0, sizeof(int)));
    SLIMKV_LAUNCH(ticket_kernel, 1, n, 0, 0, counter, tickets);
    for (unsigned t = 0; t < n; ++t) {
        EXPECT(tickets[t] == static_cast<int>(t), "phase 0 runs ascending: thread %u got %d", t, tickets[t]);
        EXPECT(tickets[n + t] == static_cast<int>(2 * n - 1 - t), "phase 1 runs descending: thread %u got %d", t,
               tickets[n + t]);
    }
    EXPECT_CUDA(cudaFree(counter));
    EXPECT_CUDA(cudaFree(tickets));

    if (!running_on_valgrind()) {
        int *out = nullptr;
        EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&out), n * sizeof(int)));
        SLIMKV_LAUNCH(missing_barrier_kernel, 1, n, n * sizeof(int), 0, out);
        /* Thread 0 runs first and reads slot 1 before thread 1 wrote it. */
        EXPECT(out[0] == static_cast<int>(0xA5A5A5A5u), "missing barrier went unnoticed: %#x", out[0]);
        EXPECT_CUDA(cudaFree(out));
    }

    int *sums = nullptr;
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&sums), 1024 * sizeof(int)));
    SLIMKV_LAUNCH(big_frame_kernel, 1, 1024, 0, 0, sums);
    EXPECT_CUDA(cudaGetLastError());
    int want = 0;
    for (int i = 0; i < 8192; i += 97)
        want += i ^ 1023;
    EXPECT(sums[1023] == want, "big frame: %d, want %d", sums[1023], want);
    EXPECT_CUDA(cudaFree(sums));

    /* Outside a kernel, __syncthreads is harmless. */
    __syncthreads();
#endif
    return true;
}

static bool test_memcpy()
{
    const size_t n = 4096;
    std::vector<float> host(n), back(n, -1.0f);
    for (size_t i = 0; i < n; ++i)
        host[i] = 0.5f * static_cast<float>(i);
    float *a = nullptr, *b = nullptr;
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&a), n * sizeof(float)));
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&b), n * sizeof(float)));
    EXPECT(reinterpret_cast<uintptr_t>(a) % 256 == 0, "cudaMalloc alignment");
    EXPECT_CUDA(cudaMemcpy(a, host.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    EXPECT_CUDA(cudaMemcpy(b, a, n * sizeof(float), cudaMemcpyDeviceToDevice));
    EXPECT_CUDA(cudaMemcpy(back.data(), b, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; ++i)
        EXPECT(back[i] == host[i], "round trip at %zu", i);

    cudaStream_t stream = nullptr;
    EXPECT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    EXPECT_CUDA(cudaMemsetAsync(b, 0, n * sizeof(float), stream));
    EXPECT_CUDA(cudaMemcpyAsync(back.data(), b, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
    EXPECT_CUDA(cudaStreamSynchronize(stream));
    for (size_t i = 0; i < n; ++i)
        EXPECT(back[i] == 0.0f, "memset at %zu", i);
    EXPECT_CUDA(cudaMemcpyAsync(b, a, n * sizeof(float), cudaMemcpyDefault, stream));
    SLIMKV_LAUNCH(reverse_kernel<float>, 4, 1024, 1024 * sizeof(float), stream, a, b);
    EXPECT_CUDA(cudaGetLastError());
    EXPECT_CUDA(cudaMemcpyAsync(back.data(), b, n * sizeof(float), cudaMemcpyDeviceToHost, stream));
    EXPECT_CUDA(cudaStreamSynchronize(stream));
    EXPECT(back[0] == host[1023] && back[4095] == host[3072], "reverse on a stream");
    EXPECT_CUDA(cudaStreamDestroy(stream));

    cudaStream_t plain = nullptr;
    EXPECT_CUDA(cudaStreamCreate(&plain));
    EXPECT_CUDA(cudaStreamDestroy(plain));
    EXPECT_CUDA(cudaFree(a));
    EXPECT_CUDA(cudaFree(b));
    EXPECT_CUDA(cudaFree(nullptr));
    EXPECT_CUDA(cudaDeviceSynchronize());

    int count = 0, device = -1;
    EXPECT_CUDA(cudaGetDeviceCount(&count));
    EXPECT(count >= 1, "device count %d", count);
    EXPECT_CUDA(cudaGetDevice(&device));
    EXPECT_CUDA(cudaSetDevice(device));
    return true;
}

static bool test_fail_alloc()
{
#if SLIMKV_EMU_ACTIVE
    const long before = slimkv_cuda_emu_live_allocs();
    int sentinel = 0;
    void *first = nullptr, *second = &sentinel, *third = nullptr, *fourth = nullptr;
    slimkv_cuda_emu_fail_alloc(1);
    EXPECT_CUDA(cudaMalloc(&first, 64));
    EXPECT(cudaMalloc(&second, 64) == cudaErrorMemoryAllocation, "planned failure did not come");
    EXPECT(second == nullptr, "failed cudaMalloc left %p", second);
    EXPECT(cudaPeekAtLastError() == cudaErrorMemoryAllocation, "peek");
    EXPECT(cudaGetLastError() == cudaErrorMemoryAllocation, "last error");
    EXPECT(cudaGetLastError() == cudaSuccess, "last error not cleared");
    EXPECT_CUDA(cudaMalloc(&third, 64)); /* one failure only */
    EXPECT(slimkv_cuda_emu_live_allocs() == before + 2, "live %ld", slimkv_cuda_emu_live_allocs());
    slimkv_cuda_emu_fail_alloc(0);
    slimkv_cuda_emu_fail_alloc(-1); /* planned, then called off */
    EXPECT_CUDA(cudaMalloc(&fourth, 64));
    void *empty = &sentinel;
    EXPECT_CUDA(cudaMalloc(&empty, 0));
    EXPECT(empty == nullptr, "zero-byte cudaMalloc gave %p", empty);
    for (void *p : {first, third, fourth})
        EXPECT_CUDA(cudaFree(p));
    EXPECT(slimkv_cuda_emu_live_allocs() == before, "live %ld, want %ld", slimkv_cuda_emu_live_allocs(), before);
#endif
    return true;
}

static bool test_bad_launch()
{
    int *flag = nullptr, got = -1;
    EXPECT_CUDA(cudaMalloc(reinterpret_cast<void **>(&flag), sizeof(int)));
    EXPECT_CUDA(cudaMemset(flag, 0, sizeof(int)));
    EXPECT(cudaGetLastError() == cudaSuccess, "stale error");
    SLIMKV_LAUNCH(touch_kernel, 1, 2000, 0, 0, flag);
    EXPECT(cudaPeekAtLastError() == cudaErrorInvalidConfiguration, "peek after block 2000");
    cudaError_t error = cudaGetLastError();
    EXPECT(error == cudaErrorInvalidConfiguration, "block 2000 gave %d (%s)", static_cast<int>(error),
           cudaGetErrorString(error));
    EXPECT(cudaGetLastError() == cudaSuccess, "error not cleared");
    SLIMKV_LAUNCH(touch_kernel, dim3(1, 0, 1), 1, 0, 0, flag);
    EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration, "empty grid");
    SLIMKV_LAUNCH(touch_kernel, 1, 1, 300 * 1024, 0, flag);
    EXPECT(cudaGetLastError() == cudaErrorInvalidValue, "300 KiB of shared memory");
    EXPECT_CUDA(cudaMemcpy(&got, flag, sizeof got, cudaMemcpyDeviceToHost));
    EXPECT(got == 0, "a bad launch ran the kernel");
    EXPECT_CUDA(cudaFree(flag));
    return true;
}

int main()
{
    bool ok = test_reduction() && test_host_threads() && test_3d_grid() && test_dynamic_shared() &&
              test_emulator_schedule() && test_memcpy() && test_fail_alloc() && test_bad_launch();
#if SLIMKV_EMU_ACTIVE
    if (ok && slimkv_cuda_emu_live_allocs() != 0) {
        std::printf("emu selftest failed: %ld cudaMalloc blocks still live\n", slimkv_cuda_emu_live_allocs());
        ok = false;
    }
#endif
    if (!ok)
        return 1;
    std::printf("emu selftest ok\n");
    return 0;
}
