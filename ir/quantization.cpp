#include "ir/quantization.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "ir/numeric.h"

namespace optjit {

namespace {

#include "ir/qmaps.inc"

constexpr float kE4m3Max = 448.0f;

// Decision points between neighbouring codes: the exact midpoint of two floats is a double.
// A value at or above midpoint i takes code i + 1 (ties to the upper code).
struct Midpoints {
    std::vector<double> at;
    explicit Midpoints(std::span<const float> table) {
        for (size_t i = 1; i < table.size(); ++i) at.push_back((double(table[i - 1]) + double(table[i])) / 2);
    }
};

const Midpoints& midpoints(StateFormat f) {
    static const std::array<Midpoints, 4> all = {Midpoints(k_qmap_8bit_signed), Midpoints(k_qmap_8bit_unsigned),
                                                 Midpoints(k_qmap_4bit_signed), Midpoints(k_qmap_4bit_unsigned)};
    switch (f) {
    case StateFormat::Q8S: return all[0];
    case StateFormat::Q8U: return all[1];
    case StateFormat::Q4S: return all[2];
    case StateFormat::Q4U: return all[3];
    default: throw std::invalid_argument(fmt::format("{} has no code table", format_name(f)));
    }
}

bool is_4bit(StateFormat f) { return f == StateFormat::Q4S || f == StateFormat::Q4U; }

void check_quantized(const StateStorage& s, int64_t first_element) {
    if (!is_block_quantized(s.format)) throw std::invalid_argument(fmt::format("{} is not a block-quantized format", format_name(s.format)));
    if (s.block == 0) throw std::invalid_argument("block-quantized storage needs a block size");
    if (first_element % s.block != 0)
        throw std::invalid_argument(fmt::format("a shard must start at a block boundary (element {}, block {})", first_element, s.block));
}

void set_code(std::vector<uint8_t>& codes, StateFormat f, int64_t i, uint8_t code) {
    if (!is_4bit(f)) {
        codes[size_t(i)] = code;
        return;
    }
    uint8_t& byte = codes[size_t(i / 2)];
    byte = (i % 2 == 0) ? uint8_t((byte & 0x0f) | (code << 4)) : uint8_t((byte & 0xf0) | (code & 0x0f));
}

uint8_t get_code(const std::vector<uint8_t>& codes, StateFormat f, int64_t i) {
    if (!is_4bit(f)) return codes[size_t(i)];
    uint8_t byte = codes[size_t(i / 2)];
    return (i % 2 == 0) ? uint8_t(byte >> 4) : uint8_t(byte & 0x0f);
}

}  // namespace

std::span<const float> code_table(StateFormat f) {
    switch (f) {
    case StateFormat::Q8S: return k_qmap_8bit_signed;
    case StateFormat::Q8U: return k_qmap_8bit_unsigned;
    case StateFormat::Q4S: return k_qmap_4bit_signed;
    case StateFormat::Q4U: return k_qmap_4bit_unsigned;
    default: throw std::invalid_argument(fmt::format("{} has no code table", format_name(f)));
    }
}

uint8_t nearest_code(StateFormat f, float normalized) {
    if (std::isnan(normalized)) return 0;
    const std::vector<double>& mids = midpoints(f).at;
    return uint8_t(std::upper_bound(mids.begin(), mids.end(), double(normalized)) - mids.begin());
}

uint8_t float_to_e4m3(float v) {
    if (std::isnan(v)) return 0x7f;
    uint8_t sign = std::signbit(v) ? 0x80 : 0;
    double a = std::fabs(double(v));
    if (a >= kE4m3Max) return sign | 0x7e;  // saturate (satfinite)
    int e2 = 0;
    double fraction = std::frexp(a, &e2);  // a = fraction * 2^e2, fraction in [0.5, 1): exact
    int exponent = a == 0 ? -7 : e2 - 1;
    if (exponent < -6) {
        // Subnormal: multiples of 2^-9; rounding up to 8 * 2^-9 gives the smallest normal.
        return sign | uint8_t(std::nearbyint(a * 512.0));
    }
    double mantissa = 2 * fraction - 1.0;  // in [0, 1)
    int m = int(std::nearbyint(mantissa * 8.0));             // round to nearest even
    if (m == 8) {
        m = 0;
        ++exponent;
    }
    int code = ((exponent + 7) << 3) | m;
    return sign | uint8_t(std::min(code, 0x7e));
}

float e4m3_to_float(uint8_t code) {
    int e = (code >> 3) & 0xf, m = code & 7;
    float sign = (code & 0x80) ? -1.0f : 1.0f;
    if (e == 15 && m == 7) return std::numeric_limits<float>::quiet_NaN();
    if (e == 0) return sign * std::ldexp(float(m), -9);
    return sign * std::ldexp(1.0f + float(m) / 8.0f, e - 7);
}

uint8_t zero_code_byte(StateFormat f) {
    switch (f) {
    case StateFormat::Q8S: return 127;   // k_qmap_8bit_signed[127] == 0
    case StateFormat::Q4S: return 0x77;  // k_qmap_4bit_signed[7] == 0, twice
    default: return 0;                   // q8u, fp8: code 0 is 0; q4u has no zero (scale 0 makes it 0)
    }
}

size_t code_bytes(const StateStorage& s, int64_t n) { return is_4bit(s.format) ? size_t((n + 1) / 2) : size_t(n); }

int64_t scale_count(const StateStorage& s, int64_t first_element, int64_t n) {
    if (n <= 0) return 0;
    int64_t first = first_element / s.block, last = (first_element + n - 1) / s.block;
    return last - first + 1;
}

StateBytes encode_state(const StateStorage& s, std::span<const float> values, int64_t first_element, int64_t columns) {
    const int64_t n = int64_t(values.size());
    const StateLayout layout = state_layout(s, n, first_element, columns);
    StateBytes out{std::vector<uint8_t>(layout.value_bytes), std::vector<uint8_t>(layout.scale_bytes, 0)};
    if (!is_block_quantized(s.format)) {
        for (size_t i = 0; i < values.size(); ++i) store_element(state_dtype(s.format), out.values.data(), i, values[i]);
        return out;
    }
    QuantizedTensor q = quantize(s, values, first_element, s.rank1 ? columns : 0);
    std::memcpy(out.values.data(), q.codes.data(), out.values.size());
    std::memcpy(out.scales.data(), q.scales.data(), layout.stored_scales * 4);
    return out;
}

std::vector<float> decode_state(const StateStorage& s, std::span<const uint8_t> values, std::span<const uint8_t> scales, int64_t n,
                                int64_t first_element, int64_t columns) {
    if (!is_block_quantized(s.format)) {
        std::vector<float> out(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) out[size_t(i)] = float(load_element(state_dtype(s.format), values.data(), size_t(i)));
        return out;
    }
    const StateLayout layout = state_layout(s, n, first_element, columns);
    QuantizedTensor q;
    q.codes.assign(values.begin(), values.begin() + long(layout.value_bytes));
    q.scales.resize(layout.stored_scales);
    std::memcpy(q.scales.data(), scales.data(), layout.stored_scales * 4);
    return dequantize(s, q, n, first_element, s.rank1 ? columns : 0);
}

StateLayout state_layout(const StateStorage& s, int64_t n, int64_t first_element, int64_t columns) {
    StateLayout l;
    if (!is_block_quantized(s.format)) {
        l.value_bytes = size_t(n) * (s.format == StateFormat::BF16 ? 2 : 4);
        return l;
    }
    const bool rank1 = s.rank1 && columns > 0;
    l.value_bytes = code_bytes(s, n);
    l.stored_scales = size_t(rank1 ? rank1_statistic_count(n, columns) : scale_count(s, first_element, n));
    l.scale_bytes = 4 * l.stored_scales * (rank1 ? 2 : 1);
    return l;
}

namespace {

bool rank1_layout(const StateStorage& s, int64_t columns) { return s.rank1 && columns > 0; }

}  // namespace

QuantizedTensor quantize(const StateStorage& s, std::span<const float> values, int64_t first_element, int64_t columns) {
    const int64_t n = int64_t(values.size());
    if (rank1_layout(s, columns)) {
        if (first_element != 0) throw std::invalid_argument("rank-1 normalization needs the whole tensor, not a shard");
        Rank1Tensor r = quantize_rank1(values, n / columns, columns);
        QuantizedTensor q{std::move(r.codes), std::move(r.row_max)};
        q.scales.insert(q.scales.end(), r.column_max.begin(), r.column_max.end());
        return q;
    }
    check_quantized(s, first_element);
    QuantizedTensor q;
    q.codes.assign(code_bytes(s, n), 0);  // a q4 tensor of odd size ends in a 0 nibble
    for (int64_t begin = 0; begin < n; begin += s.block) {
        int64_t end = std::min<int64_t>(n, begin + s.block);
        float absmax = 0;
        for (int64_t i = begin; i < end; ++i) {
            float a = std::fabs(values[size_t(i)]);
            absmax = std::isnan(a) || std::isnan(absmax) ? std::numeric_limits<float>::quiet_NaN() : std::max(absmax, a);
        }
        float scale = std::max(absmax, kScaleFloor);  // NaN stays NaN
        if (s.format == StateFormat::FP8) scale = scale / kE4m3Max;
        q.scales.push_back(scale);
        const float inverse = 1.0f / scale;
        for (int64_t i = begin; i < end; ++i) {
            float normalized = values[size_t(i)] * inverse;
            uint8_t code = s.format == StateFormat::FP8 ? float_to_e4m3(normalized) : nearest_code(s.format, normalized);
            set_code(q.codes, s.format, i, code);
        }
    }
    return q;
}

std::vector<float> dequantize(const StateStorage& s, const QuantizedTensor& q, int64_t n, int64_t first_element, int64_t columns) {
    if (rank1_layout(s, columns)) {
        const int64_t rows = n / columns;
        if (first_element != 0 || q.scales.size() < size_t(rows + columns))
            throw std::invalid_argument(fmt::format("a rank-1 tensor of {} x {} needs its {} statistics, whole", rows, columns, rows + columns));
        Rank1Tensor r{q.codes, std::vector<float>(q.scales.begin(), q.scales.begin() + rows),
                      std::vector<float>(q.scales.begin() + rows, q.scales.begin() + rows + columns)};
        return dequantize_rank1(r, rows, columns);
    }
    check_quantized(s, first_element);
    if (q.codes.size() < code_bytes(s, n) || int64_t(q.scales.size()) < scale_count(s, first_element, n))
        throw std::invalid_argument(fmt::format("a quantized tensor of {} elements needs {} code bytes and {} scales", n,
                                                code_bytes(s, n), scale_count(s, first_element, n)));
    std::vector<float> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        uint8_t code = get_code(q.codes, s.format, i);
        float v = s.format == StateFormat::FP8 ? e4m3_to_float(code) : code_table(s.format)[code];
        out[size_t(i)] = v * q.scales[size_t(i / s.block)];
    }
    return out;
}

namespace {

// The larger of two magnitudes, NaN winning (a NaN must stay visible in a statistic).
float max_or_nan(float a, float b) { return std::isnan(a) || std::isnan(b) ? std::numeric_limits<float>::quiet_NaN() : std::max(a, b); }
float min_or_nan(float a, float b) { return std::isnan(a) || std::isnan(b) ? std::numeric_limits<float>::quiet_NaN() : std::min(a, b); }

void check_rank1_shape(int64_t rows, int64_t columns, size_t elements) {
    if (rows < 1 || columns < 1 || uint64_t(rows) * uint64_t(columns) != elements)
        throw std::invalid_argument(
            fmt::format("rank-1 normalization of a {} x {} view needs {} elements; the tensor has {}", rows, columns, rows * columns, elements));
}

}  // namespace

int64_t rank1_statistic_count(int64_t n, int64_t columns) { return n / columns + columns; }

float element_scale(const StateStorage& s, const QuantizedTensor& q, int64_t i, int64_t n, int64_t columns) {
    if (!rank1_layout(s, columns)) return q.scales[size_t(i / s.block)];
    return min_or_nan(q.scales[size_t(i / columns)], q.scales[size_t(n / columns + i % columns)]);
}

Rank1Tensor quantize_rank1(std::span<const float> values, int64_t rows, int64_t columns) {
    check_rank1_shape(rows, columns, values.size());
    Rank1Tensor q;
    q.row_max.assign(size_t(rows), 0.0f);
    q.column_max.assign(size_t(columns), 0.0f);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < columns; ++c) {
            float a = std::fabs(values[size_t(r * columns + c)]);
            q.row_max[size_t(r)] = max_or_nan(q.row_max[size_t(r)], a);
            q.column_max[size_t(c)] = max_or_nan(q.column_max[size_t(c)], a);
        }
    for (float& m : q.row_max) m = max_or_nan(m, kScaleFloor);
    for (float& m : q.column_max) m = max_or_nan(m, kScaleFloor);
    q.codes.assign(size_t((rows * columns + 1) / 2), 0);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < columns; ++c) {
            const float inverse = 1.0f / min_or_nan(q.row_max[size_t(r)], q.column_max[size_t(c)]);
            set_code(q.codes, StateFormat::Q4U, r * columns + c, nearest_code(StateFormat::Q4U, values[size_t(r * columns + c)] * inverse));
        }
    return q;
}

std::vector<float> dequantize_rank1(const Rank1Tensor& q, int64_t rows, int64_t columns) {
    check_rank1_shape(rows, columns, size_t(rows * columns));
    if (q.row_max.size() != size_t(rows) || q.column_max.size() != size_t(columns) || q.codes.size() < size_t((rows * columns + 1) / 2))
        throw std::invalid_argument(fmt::format("a rank-1 tensor of {} x {} needs {} row and {} column statistics and {} code bytes", rows,
                                                columns, rows, columns, (rows * columns + 1) / 2));
    std::vector<float> out(size_t(rows * columns));
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < columns; ++c) {
            uint8_t code = get_code(q.codes, StateFormat::Q4U, r * columns + c);
            out[size_t(r * columns + c)] = code_table(StateFormat::Q4U)[code] * min_or_nan(q.row_max[size_t(r)], q.column_max[size_t(c)]);
        }
    return out;
}

void round_trip(const StateStorage& s, std::span<double> values, int64_t first_element) {
    std::vector<float> f(values.begin(), values.end());
    std::vector<float> back = dequantize(s, quantize(s, f, first_element), int64_t(f.size()), first_element);
    std::copy(back.begin(), back.end(), values.begin());
}

}  // namespace optjit
