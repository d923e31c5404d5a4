// Optimizer checkpoints: Optimizer::state_dict() and Optimizer::load_state_dict().
//
// Format, version 1. Little-endian; a string is a u64 byte count and its bytes.
//
//   "OPTJITCK"                     8 bytes of magic
//   u32 version                    1
//   u32 reserved                   0
//   u64 body_bytes                 bytes from here to the checksum
//   --- body ---
//   string program_text            the program as ir/printer.h prints it
//   u64 program_hash               FNV-1a 64 of program_text
//   i64 step                       steps taken
//   u32 groups; per group:
//     u32 hypers; per hyper-parameter:   string name, f64 value (every run-time value of the group)
//     u32 params; per parameter:
//       string name, i64 elements, i64 offset, i64 columns (0 unless rows x columns)
//       u32 states; per state (declaration order):
//         string name, string storage ("q8s:256", "fp32", "q4u:128:rank1"),
//         u64 value_bytes, u64 scale_bytes
//   then every state's bytes, in the same order: its values (or codes), then its scales (a
//   rank-1 state: its statistics and the room for a step's, as the kernel keeps them)
//   --- end of body ---
//   u64 checksum                   FNV-1a 64 of every byte before it
//
// States are bytes as stored, so a checkpoint moves between the GPU and the host bit for bit.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstring>
#include <deque>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "ir/interpreter.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/quantization.h"
#include "runtime/cuda_driver.h"
#include "runtime/fnv1a.h"
#include "runtime/optimizer.h"

namespace optjit {

namespace {

constexpr char kMagic[8] = {'O', 'P', 'T', 'J', 'I', 'T', 'C', 'K'};
constexpr uint32_t kVersion = 1;

class Writer {
public:
    std::vector<uint8_t> bytes;
    template <typename T> void put(T value) {
        const auto* p = reinterpret_cast<const uint8_t*>(&value);
        bytes.insert(bytes.end(), p, p + sizeof(T));
    }
    void put_string(const std::string& s) {
        put<uint64_t>(s.size());
        bytes.insert(bytes.end(), s.begin(), s.end());
    }
};

class Reader {
public:
    Reader(const std::vector<uint8_t>& bytes, size_t end) : bytes_(bytes), end_(end) {}
    template <typename T> T get() {
        T value;
        std::memcpy(&value, take(sizeof(T)), sizeof(T));
        return value;
    }
    std::string get_string() {
        uint64_t n = get<uint64_t>();
        const uint8_t* p = take(n);
        return std::string(reinterpret_cast<const char*>(p), n);
    }
    std::span<const uint8_t> get_bytes(uint64_t n) { return {take(n), size_t(n)}; }  // no copy
    size_t position() const { return at_; }

private:
    const uint8_t* take(uint64_t n) {
        if (n > end_ - at_) throw std::invalid_argument("the checkpoint is truncated or corrupt: a field runs past its end");
        const uint8_t* p = bytes_.data() + at_;
        at_ += n;
        return p;
    }
    const std::vector<uint8_t>& bytes_;
    size_t end_;
    size_t at_ = 0;
};

}  // namespace

std::vector<uint8_t> Optimizer::state_dict() const {
    bool any_gpu = false;
    for (size_t g = 0; g < num_groups(); ++g)
        for (size_t i = 0; i < num_params(g); ++i) any_gpu |= param(g, i).device == Device::Cuda;
    if (any_gpu) cuda::synchronize();

    Writer out;
    out.bytes.assign(kMagic, kMagic + 8);
    out.put<uint32_t>(kVersion);
    out.put<uint32_t>(0);
    const size_t body_bytes_at = out.bytes.size();
    out.put<uint64_t>(0);  // body_bytes, known at the end
    const std::string text = print(program());
    out.put_string(text);
    out.put<uint64_t>(fnv1a({reinterpret_cast<const uint8_t*>(text.data()), text.size()}));
    out.put<int64_t>(step_count());
    out.put<uint32_t>(uint32_t(num_groups()));
    struct Blob {
        Device device;
        uint64_t address;
        size_t bytes;
    };
    std::vector<Blob> blobs;
    size_t blob_bytes = 0;
    for (size_t g = 0; g < num_groups(); ++g) {
        out.put<uint32_t>(uint32_t(program().hypers.size()));
        for (const HyperDecl& h : program().hypers) {
            out.put_string(h.name);
            out.put<double>(hyper(g, h.name));
        }
        out.put<uint32_t>(uint32_t(num_params(g)));
        for (size_t i = 0; i < num_params(g); ++i) {
            const Parameter& p = param(g, i);
            out.put_string(p.name);
            out.put<int64_t>(element_count(p));
            out.put<int64_t>(p.offset);
            out.put<int64_t>(last_dimension(p));
            out.put<uint32_t>(uint32_t(program().states.size()));
            for (const StateDecl& d : program().states) {
                StateBuffer s = state(g, i, d.name);
                out.put_string(d.name);
                out.put_string(to_string(s.storage));
                out.put<uint64_t>(s.value_bytes);
                out.put<uint64_t>(s.scale_bytes);
                blobs.push_back({p.device, s.values, s.value_bytes});
                blobs.push_back({p.device, s.scales, s.scale_bytes});
                blob_bytes += s.value_bytes + s.scale_bytes;
            }
        }
    }
    // The states, copied once, straight into their place.
    size_t at = out.bytes.size();
    out.bytes.resize(at + blob_bytes + 8);
    for (const Blob& b : blobs) {
        copy_to_host(b.device, b.address, out.bytes.data() + at, b.bytes);
        at += b.bytes;
    }
    const uint64_t body_bytes = at - body_bytes_at - 8;
    std::memcpy(out.bytes.data() + body_bytes_at, &body_bytes, 8);
    const uint64_t checksum = fnv1a({out.bytes.data(), at});
    std::memcpy(out.bytes.data() + at, &checksum, 8);
    return out.bytes;
}

void Optimizer::load_state_dict(const std::vector<uint8_t>& checkpoint, LoadOptions options) {
    // Everything is read and checked, and every state's new bytes made, before any is written.
    constexpr size_t kHeader = 8 + 4 + 4 + 8;
    if (checkpoint.size() < kHeader || std::memcmp(checkpoint.data(), kMagic, 8) != 0)
        throw std::invalid_argument("not an optjit checkpoint: it does not begin with OPTJITCK");
    Reader header(checkpoint, kHeader);
    header.get_bytes(8);  // the magic
    const uint32_t version = header.get<uint32_t>();
    if (version != kVersion)
        throw std::invalid_argument(fmt::format("the checkpoint has format version {}; this optjit reads version {}", version, kVersion));
    header.get<uint32_t>();
    const uint64_t body_bytes = header.get<uint64_t>();
    if (body_bytes > checkpoint.size() - kHeader || checkpoint.size() - kHeader - body_bytes != 8)
        throw std::invalid_argument(fmt::format("the checkpoint is truncated: {} bytes where its header says {}", checkpoint.size(),
                                                kHeader + body_bytes + 8));
    uint64_t checksum;
    std::memcpy(&checksum, checkpoint.data() + kHeader + body_bytes, 8);
    if (checksum != fnv1a({checkpoint.data(), kHeader + body_bytes}))
        throw std::invalid_argument("the checkpoint is corrupt: its checksum does not match its bytes");

    Reader in(checkpoint, kHeader + body_bytes);
    in.get_bytes(kHeader);
    const std::string text = in.get_string();
    in.get<uint64_t>();  // the program's hash: for readers without a printer; the text is compared
    const std::string mine = print(program());
    if (text != mine) {
        std::string name = text.substr(0, text.find('\n'));
        if (name != mine.substr(0, mine.find('\n')))
            throw std::invalid_argument(fmt::format("the checkpoint is of another program ('{}'); this optimizer runs '{}'", name,
                                                    mine.substr(0, mine.find('\n'))));
        // The same optimizer built with other values of the hyper-parameters that decide its
        // states (passes/unused_states.h), or another version of its text.
        ParseResult theirs = parse(text);
        auto names = [](const std::vector<StateDecl>& states) {
            std::vector<std::string> out;
            for (const StateDecl& s : states) out.push_back(s.name);
            return out.empty() ? std::string("no state") : fmt::format("{} {}", out.size() == 1 ? "the state" : "the states", fmt::join(out, ", "));
        };
        if (theirs.ok() && names(theirs.program.states) != names(program().states)) {
            // The hyper-parameters one of them compiled in (passes/unused_states.h).
            auto only_in = [](const Program& a, const Program& b) {
                std::vector<std::string> out;
                for (const HyperDecl& h : a.hypers)
                    if (b.hyper_index(h.name) < 0) out.push_back(h.name);
                return out;
            };
            std::string why;
            if (auto here = only_in(theirs.program, program()); !here.empty())
                why += fmt::format("; this optimizer compiles in {} (keep_unused_states keeps it run-time)", fmt::join(here, ", "));
            if (auto there = only_in(program(), theirs.program); !there.empty())
                why += fmt::format("; the saved one compiled in {}", fmt::join(there, ", "));
            throw std::invalid_argument(fmt::format("the checkpoint's '{}' keeps {}, this optimizer's keeps {}{}: build this optimizer as the "
                                                    "saved one was built",
                                                    program().name, names(theirs.program.states), names(program().states), why));
        }
        throw std::invalid_argument(fmt::format("the checkpoint's program '{}' is not the text this optimizer runs (another version, or "
                                                "other hyper-parameters compiled in)",
                                                program().name));
    }
    const int64_t step = in.get<int64_t>();
    const uint32_t groups = in.get<uint32_t>();
    if (groups != num_groups())
        throw std::invalid_argument(fmt::format("the checkpoint has {} parameter groups; this optimizer has {}", groups, num_groups()));

    struct Write {  // from the checkpoint itself, or from a converted state
        Device device;
        uint64_t address;
        std::span<const uint8_t> bytes;
    };
    struct Pending {
        size_t group, param;
        std::string state;
        StateStorage stored;
        uint64_t value_bytes, scale_bytes;
    };
    std::vector<std::vector<std::pair<std::string, double>>> hypers(groups);
    std::vector<Pending> pending;
    for (size_t g = 0; g < groups; ++g) {
        const uint32_t count = in.get<uint32_t>();
        for (uint32_t h = 0; h < count; ++h) {
            std::string name = in.get_string();
            double value = in.get<double>();
            hypers[g].push_back({name, value});
        }
        const uint32_t params = in.get<uint32_t>();
        if (params != num_params(g))
            throw std::invalid_argument(fmt::format("group {}: the checkpoint has {} parameters; this optimizer has {}", g, params, num_params(g)));
        for (size_t i = 0; i < params; ++i) {
            const Parameter& p = param(g, i);
            const std::string name = in.get_string();
            const int64_t n = in.get<int64_t>(), offset = in.get<int64_t>(), columns = in.get<int64_t>();
            const std::string where = fmt::format("group {}, parameter {} ('{}')", g, i, p.name);
            if (name != p.name)
                throw std::invalid_argument(fmt::format("{}: the checkpoint names this parameter '{}'", where, name));
            if (n != element_count(p) || offset != p.offset || columns != last_dimension(p))
                throw std::invalid_argument(fmt::format("{}: the checkpoint holds {} elements at offset {} in rows of {}; this parameter has {} "
                                                        "at offset {} in rows of {}", where, n, offset, columns, element_count(p), p.offset,
                                                        last_dimension(p)));
            const uint32_t states = in.get<uint32_t>();
            if (states != program().states.size())
                throw std::invalid_argument(fmt::format("{}: the checkpoint has {} states; the program has {}", where, states, program().states.size()));
            for (const StateDecl& d : program().states) {
                Pending s{g, i, in.get_string(), {}, 0, 0};
                const std::string storage_text = in.get_string();
                std::string error;
                auto stored = parse_state_storage(storage_text, &error);
                if (s.state != d.name || !stored)
                    throw std::invalid_argument(fmt::format("{}: the checkpoint's state '{}' ({}) is not the program's '{}'", where, s.state,
                                                            storage_text, d.name));
                s.stored = *stored;
                s.value_bytes = in.get<uint64_t>();
                s.scale_bytes = in.get<uint64_t>();
                StateBuffer mine_state = state(g, i, d.name);
                if (!(s.stored == mine_state.storage) && !options.convert_formats)
                    throw std::invalid_argument(fmt::format("{}, state '{}': the checkpoint stores it as {}, this optimizer as {} (load with "
                                                            "convert_formats to dequantize and requantize it)", where, d.name, storage_text,
                                                            to_string(mine_state.storage)));
                const StateLayout expect = state_layout(s.stored, n, offset, columns);
                if (s.value_bytes != expect.value_bytes || s.scale_bytes != expect.scale_bytes)
                    throw std::invalid_argument(fmt::format("{}, state '{}': the checkpoint holds {} + {} bytes where {} of {} elements take {} + {}",
                                                            where, d.name, s.value_bytes, s.scale_bytes, storage_text, n, expect.value_bytes,
                                                            expect.scale_bytes));
                pending.push_back(s);
            }
        }
    }
    std::vector<Write> writes;
    std::deque<StateBytes> converted;  // stays where it is as it grows: writes point into it
    for (const Pending& s : pending) {
        const Parameter& p = param(s.group, s.param);
        StateBuffer target = state(s.group, s.param, s.state);
        std::span<const uint8_t> values = in.get_bytes(s.value_bytes), scales = in.get_bytes(s.scale_bytes);
        if (!(s.stored == target.storage)) {
            std::vector<float> decoded = decode_state(s.stored, values, scales, element_count(p), p.offset, last_dimension(p));
            converted.push_back(encode_state(target.storage, decoded, p.offset, last_dimension(p)));
            values = converted.back().values;
            scales = converted.back().scales;
        }
        writes.push_back({p.device, target.values, values});
        writes.push_back({p.device, target.scales, scales});
    }
    if (in.position() != kHeader + body_bytes)
        throw std::invalid_argument(fmt::format("the checkpoint is corrupt: {} bytes of its body are left over", kHeader + body_bytes - in.position()));
    for (size_t g = 0; g < groups; ++g)
        for (const auto& [name, value] : hypers[g]) hyper_values(program(), {{name, value}});  // throws for a name the program lacks

    for (const Write& w : writes) copy_to_device(w.device, w.address, w.bytes.data(), w.bytes.size());
    for (size_t g = 0; g < groups; ++g)
        for (const auto& [name, value] : hypers[g]) set_hyper(g, name, value);
    set_step_count(step);
}

}  // namespace optjit
