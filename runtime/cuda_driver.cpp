#include "runtime/cuda_driver.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstring>
#include <functional>
#include <mutex>
#include <vector>

namespace optjit::cuda {

namespace {

using CUresult = int;
using CUdevice = int;
using CUcontext = void*;
constexpr int kJitWallTime = 2, kJitErrorLogBuffer = 5, kJitErrorLogSize = 6, kJitInputPtx = 1;
constexpr int kAttrMultiprocessors = 16, kAttrCcMajor = 75, kAttrCcMinor = 76;
constexpr size_t kLogBytes = 1 << 16;

// The driver's entry points, resolved once. Versioned names are those cuda.h maps to.
struct Api {
    CUresult (*cuInit)(unsigned);
    CUresult (*cuGetErrorString)(CUresult, const char**);
    CUresult (*cuGetErrorName)(CUresult, const char**);
    CUresult (*cuDeviceGetCount)(int*);
    CUresult (*cuDeviceGet)(CUdevice*, int);
    CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice);
    CUresult (*cuDeviceGetName)(char*, int, CUdevice);
    CUresult (*cuCtxGetCurrent)(CUcontext*);
    CUresult (*cuCtxSetCurrent)(CUcontext);
    CUresult (*cuCtxGetDevice)(CUdevice*);
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
    CUresult (*cuCtxSynchronize)();
    CUresult (*cuMemAlloc)(DevicePtr*, size_t);
    CUresult (*cuMemFree)(DevicePtr);
    CUresult (*cuMemcpyHtoD)(DevicePtr, const void*, size_t);
    CUresult (*cuMemcpyDtoH)(void*, DevicePtr, size_t);
    CUresult (*cuMemcpyHtoDAsync)(DevicePtr, const void*, size_t, Stream);
    CUresult (*cuMemcpyDtoDAsync)(DevicePtr, DevicePtr, size_t, Stream);
    CUresult (*cuMemsetD8)(DevicePtr, unsigned char, size_t);
    CUresult (*cuMemsetD32Async)(DevicePtr, unsigned, size_t, Stream);
    CUresult (*cuStreamSynchronize)(Stream);
    CUresult (*cuModuleLoadDataEx)(Module*, const void*, unsigned, int*, void**);
    CUresult (*cuModuleUnload)(Module);
    CUresult (*cuLinkCreate)(unsigned, int*, void**, void**);
    CUresult (*cuLinkAddData)(void*, int, void*, size_t, const char*, unsigned, int*, void**);
    CUresult (*cuLinkComplete)(void*, void**, size_t*);
    CUresult (*cuLinkDestroy)(void*);
    CUresult (*cuModuleGetFunction)(Function*, Module, const char*);
    CUresult (*cuLaunchKernel)(Function, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, Stream, void**, void**);
    CUresult (*cuOccupancyMaxActiveBlocksPerMultiprocessor)(int*, Function, int, size_t);
    CUresult (*cuFuncGetAttribute)(int*, int, Function);
    CUresult (*cuEventCreate)(Event*, unsigned);
    CUresult (*cuEventDestroy)(Event);
    CUresult (*cuEventRecord)(Event, Stream);
    CUresult (*cuEventSynchronize)(Event);
    CUresult (*cuEventElapsedTime)(float*, Event, Event);
    CUresult (*cuStreamCreate)(Stream*, unsigned);
    CUresult (*cuStreamDestroy)(Stream);
    CUresult (*cuStreamBeginCapture)(Stream, int);
    CUresult (*cuStreamEndCapture)(Stream, Graph*);
    CUresult (*cuGraphInstantiateWithFlags)(GraphExec*, Graph, unsigned long long);
    CUresult (*cuGraphLaunch)(GraphExec, Stream);
    CUresult (*cuGraphExecDestroy)(GraphExec);
    CUresult (*cuGraphDestroy)(Graph);
};

struct State {
    Api api{};
    std::string error;  // why the driver is unusable; empty when loaded
    int device = -1;
    CUdevice cu_device = 0;
    int cc = 0;
    int sms = 0;
    std::string name;
};

template <class F>
bool resolve(void* lib, F& fn, std::initializer_list<const char*> names) {
    for (const char* n : names)
        if (void* p = dlsym(lib, n)) {
            fn = reinterpret_cast<F>(p);
            return true;
        }
    return false;
}

State& state() {
    static State s;
    static std::once_flag once;
    std::call_once(once, [] {
        void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            s.error = "no CUDA driver: libcuda.so.1 could not be loaded (a GPU and NVIDIA's driver are needed for GPU targets)";
            return;
        }
        Api& a = s.api;
        bool ok = resolve(lib, a.cuInit, {"cuInit"}) && resolve(lib, a.cuGetErrorString, {"cuGetErrorString"}) &&
                  resolve(lib, a.cuGetErrorName, {"cuGetErrorName"}) && resolve(lib, a.cuDeviceGetCount, {"cuDeviceGetCount"}) &&
                  resolve(lib, a.cuDeviceGet, {"cuDeviceGet"}) && resolve(lib, a.cuDeviceGetAttribute, {"cuDeviceGetAttribute"}) &&
                  resolve(lib, a.cuDeviceGetName, {"cuDeviceGetName"}) && resolve(lib, a.cuCtxGetCurrent, {"cuCtxGetCurrent"}) &&
                  resolve(lib, a.cuCtxSetCurrent, {"cuCtxSetCurrent"}) && resolve(lib, a.cuCtxGetDevice, {"cuCtxGetDevice"}) &&
                  resolve(lib, a.cuDevicePrimaryCtxRetain, {"cuDevicePrimaryCtxRetain"}) &&
                  resolve(lib, a.cuCtxSynchronize, {"cuCtxSynchronize"}) && resolve(lib, a.cuMemAlloc, {"cuMemAlloc_v2"}) &&
                  resolve(lib, a.cuMemFree, {"cuMemFree_v2"}) && resolve(lib, a.cuMemcpyHtoD, {"cuMemcpyHtoD_v2"}) &&
                  resolve(lib, a.cuMemcpyDtoH, {"cuMemcpyDtoH_v2"}) && resolve(lib, a.cuMemcpyHtoDAsync, {"cuMemcpyHtoDAsync_v2"}) &&
                  resolve(lib, a.cuMemcpyDtoDAsync, {"cuMemcpyDtoDAsync_v2"}) && resolve(lib, a.cuMemsetD8, {"cuMemsetD8_v2"}) &&
                  resolve(lib, a.cuMemsetD32Async, {"cuMemsetD32Async"}) &&
                  resolve(lib, a.cuStreamSynchronize, {"cuStreamSynchronize"}) &&
                  resolve(lib, a.cuModuleLoadDataEx, {"cuModuleLoadDataEx"}) && resolve(lib, a.cuModuleUnload, {"cuModuleUnload"}) &&
                  resolve(lib, a.cuLinkCreate, {"cuLinkCreate_v2"}) && resolve(lib, a.cuLinkAddData, {"cuLinkAddData_v2"}) &&
                  resolve(lib, a.cuLinkComplete, {"cuLinkComplete"}) && resolve(lib, a.cuLinkDestroy, {"cuLinkDestroy"}) &&
                  resolve(lib, a.cuModuleGetFunction, {"cuModuleGetFunction"}) && resolve(lib, a.cuLaunchKernel, {"cuLaunchKernel"}) &&
                  resolve(lib, a.cuOccupancyMaxActiveBlocksPerMultiprocessor, {"cuOccupancyMaxActiveBlocksPerMultiprocessor"}) &&
                  resolve(lib, a.cuFuncGetAttribute, {"cuFuncGetAttribute"}) &&
                  resolve(lib, a.cuEventCreate, {"cuEventCreate"}) && resolve(lib, a.cuEventDestroy, {"cuEventDestroy_v2"}) &&
                  resolve(lib, a.cuEventRecord, {"cuEventRecord"}) && resolve(lib, a.cuEventSynchronize, {"cuEventSynchronize"}) &&
                  resolve(lib, a.cuEventElapsedTime, {"cuEventElapsedTime_v2", "cuEventElapsedTime"}) &&
                  resolve(lib, a.cuStreamCreate, {"cuStreamCreate"}) && resolve(lib, a.cuStreamDestroy, {"cuStreamDestroy_v2"}) &&
                  resolve(lib, a.cuStreamBeginCapture, {"cuStreamBeginCapture_v2"}) &&
                  resolve(lib, a.cuStreamEndCapture, {"cuStreamEndCapture"}) &&
                  resolve(lib, a.cuGraphInstantiateWithFlags, {"cuGraphInstantiateWithFlags"}) &&
                  resolve(lib, a.cuGraphLaunch, {"cuGraphLaunch"}) && resolve(lib, a.cuGraphExecDestroy, {"cuGraphExecDestroy"}) &&
                  resolve(lib, a.cuGraphDestroy, {"cuGraphDestroy"});
        if (!ok) {
            s.error = "the CUDA driver (libcuda.so.1) lacks an entry point optjit needs: it is older than CUDA 12";
            return;
        }
        if (CUresult r = a.cuInit(0)) {
            const char* msg = nullptr;
            a.cuGetErrorString(r, &msg);
            s.error = fmt::format("the CUDA driver failed to initialize: {}", msg ? msg : "unknown error");
            return;
        }
        int count = 0;
        if (a.cuDeviceGetCount(&count) || count == 0) s.error = "the CUDA driver sees no GPU";
    });
    return s;
}

void check(CUresult r, const char* what) {
    if (r == 0) return;
    const char* name = nullptr;
    const char* msg = nullptr;
    state().api.cuGetErrorName(r, &name);
    state().api.cuGetErrorString(r, &msg);
    throw CudaError(fmt::format("CUDA {} failed: {} ({})", what, msg ? msg : "unknown error", name ? name : "?"));
}

// The API of a loaded driver with a current context on this thread.
const Api& api() {
    State& s = state();
    if (!s.error.empty()) throw CudaError(s.error);
    if (s.device < 0) init(0);
    CUcontext current = nullptr;
    s.api.cuCtxGetCurrent(&current);
    if (!current) init(s.device);
    return s.api;
}

}  // namespace

bool available() { return state().error.empty(); }
std::string unavailable_reason() { return state().error; }

int init(int device) {
    State& s = state();
    if (!s.error.empty()) throw CudaError(s.error);
    const Api& a = s.api;
    CUcontext current = nullptr;
    check(a.cuCtxGetCurrent(&current), "cuCtxGetCurrent");
    CUdevice dev = 0;
    if (current) {
        check(a.cuCtxGetDevice(&dev), "cuCtxGetDevice");
    } else {
        check(a.cuDeviceGet(&dev, device), "cuDeviceGet");
        CUcontext primary = nullptr;
        check(a.cuDevicePrimaryCtxRetain(&primary, dev), "cuDevicePrimaryCtxRetain");
        check(a.cuCtxSetCurrent(primary), "cuCtxSetCurrent");
    }
    if (s.device < 0 || s.cu_device != dev) {
        int major = 0, minor = 0;
        check(a.cuDeviceGetAttribute(&major, kAttrCcMajor, dev), "cuDeviceGetAttribute");
        check(a.cuDeviceGetAttribute(&minor, kAttrCcMinor, dev), "cuDeviceGetAttribute");
        check(a.cuDeviceGetAttribute(&s.sms, kAttrMultiprocessors, dev), "cuDeviceGetAttribute");
        char name[256] = {};
        check(a.cuDeviceGetName(name, sizeof name, dev), "cuDeviceGetName");
        s.name = name;
        s.cc = major * 10 + minor;
        s.cu_device = dev;
        s.device = device;
    }
    return s.cc;
}

Context current_context() {
    CUcontext current = nullptr;
    check(api().cuCtxGetCurrent(&current), "cuCtxGetCurrent");
    return current;
}

void set_current_context(Context context) { check(api().cuCtxSetCurrent(static_cast<CUcontext>(context)), "cuCtxSetCurrent"); }

int compute_capability() { return api(), state().cc; }
std::string device_name() { return api(), state().name; }
int multiprocessor_count() { return api(), state().sms; }

DevicePtr malloc(size_t bytes) {
    DevicePtr p = 0;
    CUresult r = api().cuMemAlloc(&p, bytes == 0 ? 1 : bytes);
    if (r) check(r, fmt::format("cuMemAlloc of {} bytes", bytes).c_str());
    return p;
}
void free(DevicePtr p) {
    if (p) check(api().cuMemFree(p), "cuMemFree");
}
void memcpy_htod(DevicePtr dst, const void* src, size_t bytes) { check(api().cuMemcpyHtoD(dst, src, bytes), "cuMemcpyHtoD"); }
void memcpy_dtoh(void* dst, DevicePtr src, size_t bytes) { check(api().cuMemcpyDtoH(dst, src, bytes), "cuMemcpyDtoH"); }
void memcpy_htod_async(DevicePtr dst, const void* src, size_t bytes, Stream stream) {
    check(api().cuMemcpyHtoDAsync(dst, src, bytes, stream), "cuMemcpyHtoDAsync");
}
void memcpy_dtod_async(DevicePtr dst, DevicePtr src, size_t bytes, Stream stream) {
    check(api().cuMemcpyDtoDAsync(dst, src, bytes, stream), "cuMemcpyDtoDAsync");
}
void memset_d8(DevicePtr dst, uint8_t value, size_t bytes) { check(api().cuMemsetD8(dst, value, bytes), "cuMemsetD8"); }
void memset_d32_async(DevicePtr dst, uint32_t value, size_t count, Stream stream) {
    check(api().cuMemsetD32Async(dst, value, count, stream), "cuMemsetD32Async");
}
void synchronize() { check(api().cuCtxSynchronize(), "cuCtxSynchronize"); }

Stream stream_create() {
    Stream s = nullptr;
    check(api().cuStreamCreate(&s, 0), "cuStreamCreate");
    return s;
}
void stream_destroy(Stream s) {
    if (s) check(api().cuStreamDestroy(s), "cuStreamDestroy");
}

GraphExec capture_graph(Stream stream, const std::function<void()>& work) {
    constexpr int kCaptureThreadLocal = 1;  // CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
    check(api().cuStreamBeginCapture(stream, kCaptureThreadLocal), "cuStreamBeginCapture");
    Graph graph = nullptr;
    try {
        work();
    } catch (...) {
        api().cuStreamEndCapture(stream, &graph);  // leave the stream usable; the error is work()'s
        if (graph) api().cuGraphDestroy(graph);
        throw;
    }
    check(api().cuStreamEndCapture(stream, &graph), "cuStreamEndCapture");
    GraphExec exec = nullptr;
    CUresult r = api().cuGraphInstantiateWithFlags(&exec, graph, 0);
    api().cuGraphDestroy(graph);
    check(r, "cuGraphInstantiateWithFlags");
    return exec;
}
void graph_launch(GraphExec exec, Stream stream) { check(api().cuGraphLaunch(exec, stream), "cuGraphLaunch"); }
void graph_destroy(GraphExec exec) {
    if (exec) check(api().cuGraphExecDestroy(exec), "cuGraphExecDestroy");
}
void stream_synchronize(Stream stream) { check(api().cuStreamSynchronize(stream), "cuStreamSynchronize"); }

namespace {

// The options both ways of compiling PTX take: an error log (ptxas's errors verbatim) and the
// driver's compile time, which it writes as a float over the value.
struct JitOptions {
    JitOptions() = default;
    JitOptions(const JitOptions&) = delete;  // values points into error_log
    JitOptions& operator=(const JitOptions&) = delete;

    std::vector<char> error_log = std::vector<char>(kLogBytes);
    int keys[3] = {kJitErrorLogBuffer, kJitErrorLogSize, kJitWallTime};
    void* values[3] = {error_log.data(), reinterpret_cast<void*>(uintptr_t(kLogBytes)), nullptr};

    static constexpr unsigned count = 3;
    void throw_if_failed(CUresult r, const char* verb, const std::string& name) const {
        if (r == 0) return;
        const char* msg = nullptr;
        api().cuGetErrorString(r, &msg);
        throw CudaError(fmt::format("the CUDA driver could not {} kernel {} ({}):\n{}", verb, name, msg ? msg : "error", error_log.data()));
    }
    void report_compile_ms(float* compile_ms) const {
        if (compile_ms) std::memcpy(compile_ms, &values[2], sizeof(float));
    }
};

}  // namespace

Module load_module(const std::string& image, const std::string& name, float* compile_ms) {
    JitOptions jit;
    Module m = nullptr;
    jit.throw_if_failed(api().cuModuleLoadDataEx(&m, image.c_str(), JitOptions::count, jit.keys, jit.values), "load", name);
    jit.report_compile_ms(compile_ms);
    return m;
}

std::string compile_relocatable(const std::string& ptx, const std::string& name, float* compile_ms) {
    const Api& a = api();
    JitOptions jit;
    void* link = nullptr;
    check(a.cuLinkCreate(JitOptions::count, jit.keys, jit.values, &link), "cuLinkCreate");
    void* cubin = nullptr;
    size_t bytes = 0;
    CUresult r = a.cuLinkAddData(link, kJitInputPtx, const_cast<char*>(ptx.c_str()), ptx.size() + 1, name.c_str(), 0, nullptr, nullptr);
    if (r == 0) r = a.cuLinkComplete(link, &cubin, &bytes);
    std::string image = r == 0 ? std::string(static_cast<const char*>(cubin), bytes) : "";  // the link state owns the cubin
    a.cuLinkDestroy(link);
    jit.throw_if_failed(r, "compile", name);
    jit.report_compile_ms(compile_ms);
    return image;
}

void unload_module(Module m) {
    if (m) api().cuModuleUnload(m);
}

Function get_function(Module m, const std::string& name) {
    Function f = nullptr;
    check(api().cuModuleGetFunction(&f, m, name.c_str()), fmt::format("cuModuleGetFunction({})", name).c_str());
    return f;
}

void launch(Function f, unsigned grid, unsigned block, void** params, Stream stream) {
    check(api().cuLaunchKernel(f, grid, 1, 1, block, 1, 1, 0, stream, params, nullptr), "cuLaunchKernel");
}

int registers(Function f) {
    int regs = 0;
    check(api().cuFuncGetAttribute(&regs, 4 /* CU_FUNC_ATTRIBUTE_NUM_REGS */, f), "cuFuncGetAttribute");
    return regs;
}

int occupancy(Function f, int block) {
    int blocks = 0;
    check(api().cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, f, block, 0), "cuOccupancyMaxActiveBlocksPerMultiprocessor");
    return blocks;
}

Event event_create() {
    Event e = nullptr;
    check(api().cuEventCreate(&e, 0), "cuEventCreate");
    return e;
}
void event_destroy(Event e) {
    if (e) api().cuEventDestroy(e);
}
void event_record(Event e, Stream stream) { check(api().cuEventRecord(e, stream), "cuEventRecord"); }
float event_elapsed_ms(Event start, Event end) {
    check(api().cuEventSynchronize(end), "cuEventSynchronize");
    float ms = 0;
    check(api().cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime");
    return ms;
}

}  // namespace optjit::cuda
