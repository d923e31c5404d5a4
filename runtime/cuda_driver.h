// A small layer over the CUDA driver API, loaded with dlopen("libcuda.so.1") at first use:
// no CUDA toolkit is needed to build or run optjit. Our own declarations of the few entry
// points we call, resolved with dlsym.
//
// Context: the current one if the calling thread has one (so pointers from PyTorch or any
// other CUDA user are valid), else the device's primary context, retained and made current.
// Without a driver or a GPU, every call throws CudaError with one sentence saying so; nothing
// host-side depends on this file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>

namespace optjit::cuda {

using Stream = void*;    // CUstream; nullptr is the legacy default stream
using Module = void*;    // CUmodule
using Function = void*;  // CUfunction
using Context = void*;   // CUcontext
using Event = void*;     // CUevent
using Graph = void*;     // CUgraph
using GraphExec = void*; // CUgraphExec
using DevicePtr = uint64_t;

class CudaError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// True if a driver and at least one device are present (never throws).
bool available();
// Why available() is false, as one sentence ("" when it is true).
std::string unavailable_reason();

// Makes a context current on this thread (see above) for `device` and returns its
// compute capability * 10 (90 for an H200).
int init(int device = 0);
// The calling thread's current context (nullptr where it has none), and making a context
// current on this thread: a worker that loads modules for another thread works in its context.
Context current_context();
void set_current_context(Context context);
int compute_capability();
std::string device_name();
int multiprocessor_count();

DevicePtr malloc(size_t bytes);
void free(DevicePtr p);
void memcpy_htod(DevicePtr dst, const void* src, size_t bytes);
void memcpy_dtoh(void* dst, DevicePtr src, size_t bytes);
void memcpy_htod_async(DevicePtr dst, const void* src, size_t bytes, Stream stream);
void memcpy_dtod_async(DevicePtr dst, DevicePtr src, size_t bytes, Stream stream);
void memset_d8(DevicePtr dst, uint8_t value, size_t bytes);
void memset_d32_async(DevicePtr dst, uint32_t value, size_t count, Stream stream);  // `count` 32-bit words
void synchronize();
void stream_synchronize(Stream stream);

// A stream of its own (legacy default stream semantics toward the null stream), and CUDA
// graphs: capture_graph records what `work` queues on `stream` (which must not be the null
// stream) and returns it instantiated, to be launched any number of times.
Stream stream_create();
void stream_destroy(Stream s);
GraphExec capture_graph(Stream stream, const std::function<void()>& work);
void graph_launch(GraphExec exec, Stream stream);
void graph_destroy(GraphExec exec);

// Device memory freed at the end of its scope (a failure to free, which only happens once the
// context is gone, is ignored). Movable, not copyable; empty when default-constructed.
class DeviceAlloc {
public:
    DeviceAlloc() = default;
    explicit DeviceAlloc(size_t bytes) : ptr_(malloc(bytes)), bytes_(bytes) {}
    ~DeviceAlloc() { release(); }
    DeviceAlloc(DeviceAlloc&& other) noexcept : ptr_(std::exchange(other.ptr_, 0)), bytes_(std::exchange(other.bytes_, 0)) {}
    DeviceAlloc& operator=(DeviceAlloc&& other) noexcept {
        if (this != &other) {
            release();
            ptr_ = std::exchange(other.ptr_, 0);
            bytes_ = std::exchange(other.bytes_, 0);
        }
        return *this;
    }
    DevicePtr get() const { return ptr_; }
    size_t size() const { return bytes_; }

private:
    void release() noexcept {
        try {
            free(ptr_);
        } catch (...) {
        }
        ptr_ = 0;
    }
    DevicePtr ptr_ = 0;
    size_t bytes_ = 0;
};

// Loads a cubin or PTX image (`name` says which kernel, in errors); throws CudaError with the
// driver's log (ptxas's errors verbatim for PTX). PTX is compiled as a whole program, which
// the driver caches by itself (its JIT cache, ~/.nv/ComputeCache). `compile_ms`, if given,
// receives the time the driver spent compiling (0 from its cache); the call can take longer,
// because the driver compiles one module at a time in a process (measured on the H200's CUDA
// 13 driver: a second thread's load waits for the first's compile). Quantized kernels load
// this way, not through compile_relocatable: its relocatable code costs them a quarter more
// registers (96 -> 128 for q8 AdamW, 146 by ptxas -c) and a block per multiprocessor.
Module load_module(const std::string& image, const std::string& name, float* compile_ms = nullptr);
// Compiles PTX to a cubin through cuLink, as relocatable code: unlike load_module, beside
// other threads' compiles (load_module's and this one's; measured on the H100's CUDA 13
// driver), but outside the driver's JIT cache and with a register budget of its own (fine for
// kernels whose registers do not set their speed). Errors as load_module's.
std::string compile_relocatable(const std::string& ptx, const std::string& name, float* compile_ms = nullptr);
void unload_module(Module m);
Function get_function(Module m, const std::string& name);
// Launches with kernel parameters given as an array of pointers to each argument.
void launch(Function f, unsigned grid, unsigned block, void** params, Stream stream);
// Registers per thread of a loaded kernel.
int registers(Function f);
// Resident blocks per multiprocessor for `block` threads.
int occupancy(Function f, int block);

Event event_create();
void event_destroy(Event e);
void event_record(Event e, Stream stream);
float event_elapsed_ms(Event start, Event end);  // synchronizes on `end`

}  // namespace optjit::cuda
