// Memory on a parameter's device, host or GPU, behind one interface: what the optimizer owns
// its states in, what `optjit bench` puts its parameters in, what checkpoints read and write.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

#include "runtime/cuda_driver.h"

namespace optjit {

enum class Device : uint8_t { Host, Cuda };
inline std::string_view device_name(Device d) { return d == Device::Host ? "host" : "cuda"; }

// Sets `bytes` bytes at `address` in memory on `device` to `byte`.
inline void fill_bytes(Device device, uint64_t address, uint8_t byte, size_t bytes) {
    if (bytes == 0) return;
    if (device == Device::Cuda)
        cuda::memset_d8(address, byte, bytes);
    else
        std::memset(reinterpret_cast<void*>(address), byte, bytes);
}

// An allocation, freed with the object. Never empty (a state of an empty tensor still has an
// address); 256-byte aligned on the host, as cuMemAlloc's are.
class DeviceMemory {
public:
    DeviceMemory(Device device, size_t bytes) : device_(device), bytes_(std::max<size_t>(bytes, 256)) {
        if (device_ == Device::Cuda) {
            gpu_ = cuda::DeviceAlloc(bytes_);
        } else {
            host_ = static_cast<std::byte*>(std::aligned_alloc(256, (bytes_ + 255) / 256 * 256));
            if (!host_) throw std::bad_alloc();
        }
    }
    ~DeviceMemory() { std::free(host_); }
    DeviceMemory(const DeviceMemory&) = delete;
    DeviceMemory& operator=(const DeviceMemory&) = delete;

    uint64_t address() const { return device_ == Device::Cuda ? gpu_.get() : reinterpret_cast<uint64_t>(host_); }
    void fill(uint8_t byte, size_t bytes) { fill_bytes(device_, address(), byte, bytes); }

private:
    Device device_;
    size_t bytes_;
    std::byte* host_ = nullptr;
    cuda::DeviceAlloc gpu_;
};

// Copies between the host and memory on `device` (synchronous: a GPU copy waits for the work
// queued before it on blocking streams).
inline void copy_to_device(Device device, uint64_t address, const void* source, size_t bytes) {
    if (bytes == 0) return;
    if (device == Device::Cuda)
        cuda::memcpy_htod(address, source, bytes);
    else
        std::memcpy(reinterpret_cast<void*>(address), source, bytes);
}
inline void copy_to_host(Device device, uint64_t address, void* destination, size_t bytes) {
    if (bytes == 0) return;
    if (device == Device::Cuda)
        cuda::memcpy_dtoh(destination, address, bytes);
    else
        std::memcpy(destination, reinterpret_cast<const void*>(address), bytes);
}
inline std::vector<uint8_t> copy_to_host(Device device, uint64_t address, size_t bytes) {
    std::vector<uint8_t> out(bytes);
    copy_to_host(device, address, out.data(), bytes);
    return out;
}

}  // namespace optjit
