/* cuda_compat.h: the CUDA plugin's .cu sources build with nvcc for the GPU,
 * or with `g++ -std=c++17 -x c++ -DSLIMKV_CUDA_EMU` to run kernels on the CPU
 * (SLIMKV_EMU_ACTIVE is 1 then), so kernel logic is testable without a GPU.
 * Launch with SLIMKV_LAUNCH(kernel, grid, block, shmem, stream, args...); put
 * a kernel name holding a comma in parentheses: (k<float, 4>). Get dynamic
 * shared memory with SLIMKV_DYNAMIC_SHARED(type, name).
 *
 * The emulator runs blocks one after another, x fastest. A block's threads
 * are ucontext fibers; each phase runs every live fiber up to its next
 * __syncthreads() or return, ascending on even phases and descending on odd
 * ones, so a missing barrier changes results. A fiber that returned counts as
 * past every later barrier. Dynamic shared memory (per block) and fresh
 * cudaMalloc memory are filled with 0xA5 and marked undefined for valgrind.
 * __shared__ arrays are `static thread_local`: they start zeroed and keep
 * their contents from block to block. Not emulated: warp intrinsics, cooperative
 * groups, __constant__ and textures, device-side launches, cudaFuncSetAttribute,
 * asynchrony (every call has finished when it returns).
 *
 * Everything is inline (C++17), so any number of translation units of a
 * program or .so may include this. The test hooks slimkv_cuda_emu_fail_alloc()
 * and slimkv_cuda_emu_live_allocs() are also `used`: each TU emits them as weak
 * symbols, the linker keeps one and dlsym() finds it. Emulator state is per
 * host thread, like CUDA's last error; allocation counters are process-wide. */
#ifndef SLIMKV_CUDA_COMPAT_H
#define SLIMKV_CUDA_COMPAT_H

#ifndef SLIMKV_CUDA_EMU /* ---------------------------------- real CUDA */

#include <cuda_runtime.h>

#define SLIMKV_EMU_ACTIVE 0
#define SLIMKV_LAUNCH(kernel, grid, block, shmem, stream, ...) \
    kernel<<<(grid), (block), (shmem), (stream)>>>(__VA_ARGS__)
/* One untyped extern array for all kernels: `extern __shared__ T name[]` with
 * different T in different kernels or template instances does not compile. */
#define SLIMKV_DYNAMIC_SHARED(type, name)                          \
    extern __shared__ __align__(16) unsigned char slimkv_smem_[]; \
    type *name = reinterpret_cast<type *>(slimkv_smem_)

#else /* ------------------------------------------------------- emulator */

#ifdef __CUDACC__
#error "SLIMKV_CUDA_EMU is for host compilers; nvcc builds the real kernels"
#endif

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SLIMKV_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLIMKV_EMU_ASAN 1
#endif
#endif
#ifdef SLIMKV_EMU_ASAN /* tell ASan which stack is live, or it reports false errors */
#include <sanitizer/common_interface_defs.h>
#define SLIMKV_EMU_ASAN_START(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define SLIMKV_EMU_ASAN_FINISH(save, bottom, size) __sanitizer_finish_switch_fiber(save, bottom, size)
#else
#define SLIMKV_EMU_ASAN_START(save, bottom, size) ((void)(save))
#define SLIMKV_EMU_ASAN_FINISH(save, bottom, size) ((void)(save))
#endif
#if __has_include(<valgrind/memcheck.h>) /* client requests cost nothing outside valgrind */
#include <valgrind/memcheck.h>
#define SLIMKV_EMU_VALGRIND 1
#define SLIMKV_EMU_MARK_UNDEFINED(p, n) ((void)VALGRIND_MAKE_MEM_UNDEFINED((p), (n)))
#define SLIMKV_EMU_STACK_REGISTER(lo, hi) VALGRIND_STACK_REGISTER((lo), (hi))
#define SLIMKV_EMU_STACK_DEREGISTER(id) VALGRIND_STACK_DEREGISTER(id)
#else
#define SLIMKV_EMU_MARK_UNDEFINED(p, n) ((void)0)
#define SLIMKV_EMU_STACK_REGISTER(lo, hi) 0u
#define SLIMKV_EMU_STACK_DEREGISTER(id) ((void)(id))
#endif

#define SLIMKV_EMU_ACTIVE 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static thread_local /* blocks run in turn: a static is per-block memory */
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
inline thread_local dim3 threadIdx(0, 0, 0), blockIdx(0, 0, 0), blockDim, gridDim;
/* CUDA's 16-byte vector type (aligned like the device's, for 128-bit loads). */
struct __attribute__((aligned(16))) uint4 {
    unsigned x, y, z, w;
};

/* cudaErrorInvalidConfiguration is what CUDA reports for a bad grid or block. */
enum cudaError {
    cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9, cudaErrorNoDevice = 100, cudaErrorInvalidDevice = 101,
    cudaErrorNotSupported = 801,
};
typedef enum cudaError cudaError_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4,
};
struct CUstream_st { unsigned flags; };
typedef struct CUstream_st *cudaStream_t;
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01

namespace slimkv_emu {

constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDimZ = 64;
constexpr unsigned kMaxGridDimX = 0x7fffffffu, kMaxGridDimYZ = 65535;
constexpr size_t kMaxDynamicSharedBytes = 228 * 1024;
constexpr size_t kFiberStackBytes = 256 * 1024;
constexpr size_t kDeviceAllocAlignment = 256; /* cudaMalloc's guarantee */
constexpr int kGarbageByte = 0xA5;            /* stands for memory nobody wrote */

inline std::atomic<int> alloc_failure_countdown{-1}; /* < 0: no failure planned */
inline std::atomic<long> live_device_allocs{0};
inline thread_local cudaError_t last_error = cudaSuccess;

inline cudaError_t record(cudaError_t error) { return error != cudaSuccess ? last_error = error : error; }

/* Valgrind flags reads of the garbage; normal runs see 0xA5 patterns. */
inline void fill_with_garbage(void *p, size_t n) { std::memset(p, kGarbageByte, n), SLIMKV_EMU_MARK_UNDEFINED(p, n); }

struct Fiber {
    ucontext_t context; /* points into itself: a Fiber must never move */
    char *stack = nullptr;
    unsigned valgrind_stack_id = 0;
    bool finished = false;
};

/* Per host thread: runs the fibers of one block at a time. */
struct BlockScheduler {
    Fiber *fibers = nullptr; /* kMaxThreadsPerBlock of them, allocated once */
    size_t guard_bytes = 0;
    ucontext_t scheduler_context;
    bool inside_kernel = false;
    unsigned current = 0; /* fiber running now */
    void (*invoke_body)(const void *) = nullptr;
    const void *body = nullptr;
    unsigned char *dynamic_shared = nullptr;
    const void *scheduler_stack_bottom = nullptr; /* for ASan, learnt on entry to a fiber */
    size_t scheduler_stack_size = 0;

    ~BlockScheduler()
    {
        for (unsigned i = 0; fibers && i < kMaxThreadsPerBlock; ++i)
            if (fibers[i].stack) {
                SLIMKV_EMU_STACK_DEREGISTER(fibers[i].valgrind_stack_id);
                munmap(fibers[i].stack - guard_bytes, guard_bytes + kFiberStackBytes);
            }
        delete[] fibers;
    }
};
inline thread_local BlockScheduler scheduler;

/* Gives fiber i a stack (once; reused by later blocks and launches) with a
 * PROT_NONE page below it, so an overflow faults instead of corrupting. */
inline bool prepare_fiber(BlockScheduler &s, unsigned i)
{
    Fiber &f = s.fibers[i];
    if (f.stack)
        return true;
    s.guard_bytes = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void *region = mmap(nullptr, s.guard_bytes + kFiberStackBytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED)
        return false;
    mprotect(region, s.guard_bytes, PROT_NONE);
    if (getcontext(&f.context) != 0) {
        munmap(region, s.guard_bytes + kFiberStackBytes);
        return false;
    }
    f.stack = static_cast<char *>(region) + s.guard_bytes;
    f.valgrind_stack_id = SLIMKV_EMU_STACK_REGISTER(f.stack, f.stack + kFiberStackBytes);
    return true;
}

/* makecontext passes only ints, so the fiber finds its work in `scheduler`. */
inline void fiber_main()
{
    BlockScheduler &s = scheduler;
    SLIMKV_EMU_ASAN_FINISH(nullptr, &s.scheduler_stack_bottom, &s.scheduler_stack_size);
    s.invoke_body(s.body);
    s.fibers[s.current].finished = true;
    SLIMKV_EMU_ASAN_START(nullptr, s.scheduler_stack_bottom, s.scheduler_stack_size); /* stack dies */
    setcontext(&s.scheduler_context); /* this stack is done with; never returns */
}

inline void switch_to_fiber(BlockScheduler &s, unsigned i)
{
    s.current = i;
    void *fake_stack = nullptr;
    SLIMKV_EMU_ASAN_START(&fake_stack, s.fibers[i].stack, kFiberStackBytes);
    swapcontext(&s.scheduler_context, &s.fibers[i].context);
    SLIMKV_EMU_ASAN_FINISH(fake_stack, nullptr, nullptr);
}

/* __syncthreads() from a fiber: hand control back until the next phase. */
inline void yield_to_scheduler(BlockScheduler &s)
{
    void *fake_stack = nullptr;
    SLIMKV_EMU_ASAN_START(&fake_stack, s.scheduler_stack_bottom, s.scheduler_stack_size);
    swapcontext(&s.fibers[s.current].context, &s.scheduler_context);
    SLIMKV_EMU_ASAN_FINISH(fake_stack, &s.scheduler_stack_bottom, &s.scheduler_stack_size);
}

inline void run_block(BlockScheduler &s, dim3 block_index, dim3 grid, dim3 block, unsigned threads)
{
    for (unsigned i = 0; i < threads; ++i) {
        Fiber &f = s.fibers[i];
        f.context.uc_stack.ss_sp = f.stack;
        f.context.uc_stack.ss_size = kFiberStackBytes;
        f.context.uc_link = &s.scheduler_context;
        makecontext(&f.context, fiber_main, 0);
        f.finished = false;
    }
    unsigned live = threads;
    for (unsigned phase = 0; live > 0; ++phase) {
        for (unsigned k = 0; k < threads; ++k) {
            unsigned i = phase % 2 == 0 ? k : threads - 1 - k;
            if (s.fibers[i].finished)
                continue;
            threadIdx = dim3(i % block.x, i / block.x % block.y, i / (block.x * block.y));
            blockIdx = block_index, blockDim = block, gridDim = grid; /* kernels may have written them */
            switch_to_fiber(s, i);
            if (s.fibers[i].finished)
                --live;
        }
    }
}

inline void run_grid(dim3 grid, dim3 block, size_t shmem, void (*invoke)(const void *), const void *body)
{
    BlockScheduler &s = scheduler;
    if (s.inside_kernel)
        return (void)record(cudaErrorNotSupported); /* no launches from device code */
    unsigned long long threads = 1ull * block.x * block.y * block.z;
    if (threads == 0 || threads > kMaxThreadsPerBlock || block.z > kMaxBlockDimZ || grid.x == 0 ||
        grid.y == 0 || grid.z == 0 || grid.x > kMaxGridDimX || grid.y > kMaxGridDimYZ ||
        grid.z > kMaxGridDimYZ)
        return (void)record(cudaErrorInvalidConfiguration);
    if (shmem > kMaxDynamicSharedBytes)
        return (void)record(cudaErrorInvalidValue);
    if (!s.fibers)
        s.fibers = new (std::nothrow) Fiber[kMaxThreadsPerBlock];
    bool ready = s.fibers != nullptr;
    for (unsigned i = 0; ready && i < threads; ++i)
        ready = prepare_fiber(s, i);
    void *shared = nullptr;
    if (!ready || (shmem > 0 && posix_memalign(&shared, 16, shmem) != 0))
        return (void)record(cudaErrorMemoryAllocation);
    s.dynamic_shared = static_cast<unsigned char *>(shared);
    s.invoke_body = invoke, s.body = body, s.inside_kernel = true;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                if (shmem > 0)
                    fill_with_garbage(shared, shmem); /* each block starts with junk */
                run_block(s, dim3(x, y, z), grid, block, static_cast<unsigned>(threads));
            }
    s.inside_kernel = false;
    s.dynamic_shared = nullptr;
    std::free(shared);
}

template <typename Body>
inline void launch(dim3 grid, dim3 block, size_t shmem, cudaStream_t, const Body &body)
{
    run_grid(grid, block, shmem, [](const void *b) { (*static_cast<const Body *>(b))(); }, &body);
}

} // namespace slimkv_emu

/* The arguments are evaluated by every emulated thread: keep them free of
 * side effects (they are in practice: pointers, sizes, scalars). */
#define SLIMKV_LAUNCH(kernel, grid, block, shmem, stream, ...) \
    slimkv_emu::launch(dim3(grid), dim3(block), static_cast<size_t>(shmem), stream, [=] { kernel(__VA_ARGS__); })
#define SLIMKV_DYNAMIC_SHARED(type, name) \
    type *name = reinterpret_cast<type *>(slimkv_emu::scheduler.dynamic_shared)

inline void __syncthreads()
{
    if (slimkv_emu::scheduler.inside_kernel)
        slimkv_emu::yield_to_scheduler(slimkv_emu::scheduler);
}

/* Fibers never interrupt each other mid-operation, so plain code is atomic.
 * The int sum goes through unsigned to wrap as the GPU does. */
inline int atomicAdd(int *a, int v) { int old = *a; *a = static_cast<int>(0u + old + v); return old; }
inline float atomicAdd(float *a, float v) { float old = *a; *a = old + v; return old; }
inline int atomicOr(int *a, int v) { int old = *a; *a = old | v; return old; }
inline int atomicMax(int *a, int v) { int old = *a; *a = old > v ? old : v; return old; }

/* ---- runtime API subset: synchronous, on the host heap ---- */

inline cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    if (!ptr)
        return slimkv_emu::record(cudaErrorInvalidValue);
    int countdown = slimkv_emu::alloc_failure_countdown.load();
    while (countdown >= 0 &&
           !slimkv_emu::alloc_failure_countdown.compare_exchange_weak(countdown, countdown - 1)) {
    }
    *ptr = nullptr;
    if (countdown == 0)
        return slimkv_emu::record(cudaErrorMemoryAllocation); /* the planned failure */
    void *block = nullptr;
    if (bytes == 0) /* CUDA too gives NULL and success */
        return cudaSuccess;
    if (posix_memalign(&block, slimkv_emu::kDeviceAllocAlignment, bytes) != 0)
        return slimkv_emu::record(cudaErrorMemoryAllocation);
    slimkv_emu::fill_with_garbage(block, bytes);
    ++slimkv_emu::live_device_allocs;
    *ptr = block;
    return cudaSuccess;
}
inline cudaError_t cudaFree(void *ptr)
{
    slimkv_emu::live_device_allocs -= ptr != nullptr;
    std::free(ptr);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    if (static_cast<unsigned>(kind) > cudaMemcpyDefault || (bytes > 0 && (!dst || !src)))
        return slimkv_emu::record(cudaErrorInvalidValue);
    return bytes > 0 ? (std::memcpy(dst, src, bytes), cudaSuccess) : cudaSuccess; /* overlap: ASan reports it */
}
inline cudaError_t cudaMemset(void *dst, int value, size_t bytes)
{
    if (bytes > 0 && !dst)
        return slimkv_emu::record(cudaErrorInvalidValue);
    return bytes > 0 ? (std::memset(dst, value, bytes), cudaSuccess) : cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t = nullptr) { return cudaMemcpy(dst, src, bytes, kind); }
inline cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes,
                                   cudaStream_t = nullptr) { return cudaMemset(dst, value, bytes); }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags)
{
    if (!stream)
        return slimkv_emu::record(cudaErrorInvalidValue);
    *stream = new (std::nothrow) CUstream_st{flags}; /* a real object, so leaks show */
    return *stream ? cudaSuccess : slimkv_emu::record(cudaErrorMemoryAllocation);
}
inline cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }
inline cudaError_t cudaStreamDestroy(cudaStream_t stream) { delete stream; return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int *n) { return n ? (*n = 1, cudaSuccess) : slimkv_emu::record(cudaErrorInvalidValue); }
inline cudaError_t cudaGetDevice(int *d) { return d ? (*d = 0, cudaSuccess) : slimkv_emu::record(cudaErrorInvalidValue); }
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : slimkv_emu::record(cudaErrorInvalidDevice); }
inline cudaError_t cudaPeekAtLastError() { return slimkv_emu::last_error; }
inline cudaError_t cudaGetLastError()
{
    cudaError_t error = slimkv_emu::last_error;
    return slimkv_emu::last_error = cudaSuccess, error;
}
inline const char *cudaGetErrorString(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNotSupported: return "operation not supported";
    }
    return "unrecognized error code";
}

/* Test hooks, found with dlsym in the plugin. n >= 0: the n-th cudaMalloc
 * from now (0 = the next) fails once; n < 0: no failure. */
extern "C" __attribute__((visibility("default"), used)) inline void slimkv_cuda_emu_fail_alloc(int n)
{
    slimkv_emu::alloc_failure_countdown.store(n < 0 ? -1 : n);
}
/* Blocks from cudaMalloc not yet given to cudaFree. */
extern "C" __attribute__((visibility("default"), used)) inline long slimkv_cuda_emu_live_allocs(void)
{
    return slimkv_emu::live_device_allocs.load();
}

#endif /* SLIMKV_CUDA_EMU */
#endif /* SLIMKV_CUDA_COMPAT_H */
