// The block-quantized formats (ir/quantization.h) against the reference tables and against a
// plain quantizer written here independently: linear scans, no midpoints, no bit tricks.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ir/interpreter.h"
#include "ir/quantization.h"
#include "ir/verifier.h"

using namespace optjit;

namespace {

std::map<std::string, std::vector<float>> reference_tables() {
    std::ifstream in(std::string(OPTJIT_SOURCE_DIR) + "/tests/data/qmaps.txt");
    REQUIRE(in.good());
    std::map<std::string, std::vector<float>> tables;
    std::string line, name;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        if (line.rfind("qmap_", 0) == 0) {
            name = line.substr(0, line.find(' '));
            continue;
        }
        std::istringstream values(line);
        std::string v;
        while (values >> v) tables[name].push_back(std::strtof(v.c_str(), nullptr));
    }
    return tables;
}

StateStorage storage(StateFormat f, uint32_t block = 0) { return StateStorage{f, block ? block : default_block_size(f), false}; }

// Nearest entry by a linear scan; on an exact tie the later (upper) code wins.
uint8_t plain_nearest(const std::vector<float>& table, float v) {
    size_t best = 0;
    double best_distance = std::fabs(double(v) - table[0]);
    for (size_t i = 1; i < table.size(); ++i) {
        double d = std::fabs(double(v) - table[i]);
        if (d <= best_distance) {
            best = i;
            best_distance = d;
        }
    }
    return uint8_t(best);
}

// e4m3 by brute force: the nearest finite value, ties to the even code; saturating.
uint8_t plain_e4m3(float v) {
    if (std::isnan(v)) return 0x7f;
    uint8_t best = 0;
    double best_distance = INFINITY;
    for (int c = 0; c < 256; ++c) {
        if ((c & 0x7f) == 0x7f) continue;  // NaN codes
        int e = (c >> 3) & 15, m = c & 7;
        double value = (c & 0x80 ? -1.0 : 1.0) * (e == 0 ? std::ldexp(double(m), -9) : std::ldexp(1.0 + m / 8.0, e - 7));
        if ((c & 0x80) != (std::signbit(v) ? 0x80 : 0)) continue;
        double d = std::fabs(double(v) - value);
        if (d < best_distance || (d == best_distance && (c & 1) == 0)) {
            best = uint8_t(c);
            best_distance = d;
        }
    }
    return best;
}

uint64_t seed() {
    if (const char* s = std::getenv("OPTJIT_TEST_SEED")) return std::strtoull(s, nullptr, 10);
    return std::random_device{}();
}

const StateFormat kTableFormats[] = {StateFormat::Q8S, StateFormat::Q8U, StateFormat::Q4S, StateFormat::Q4U};
const char* table_name(StateFormat f) {
    switch (f) {
    case StateFormat::Q8S: return "qmap_8bit_signed";
    case StateFormat::Q8U: return "qmap_8bit_unsigned";
    case StateFormat::Q4S: return "qmap_4bit_signed";
    default: return "qmap_4bit_unsigned";
    }
}

}  // namespace

TEST_CASE("quantization: every table entry matches qmaps.txt bit for bit") {
    auto tables = reference_tables();
    for (StateFormat f : kTableFormats) {
        INFO(format_name(f));
        const std::vector<float>& want = tables.at(table_name(f));
        std::span<const float> got = code_table(f);
        REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < want.size(); ++i) {
            INFO("entry ", i);
            CHECK(std::bit_cast<uint32_t>(got[i]) == std::bit_cast<uint32_t>(want[i]));
            if (i > 0) CHECK(got[i - 1] < got[i]);
            CHECK(nearest_code(f, got[i]) == i);  // every entry is its own code
        }
    }
}

TEST_CASE("quantization: code choice is the nearest entry, ties to the upper code, clamped at the ends") {
    uint64_t s = seed();
    INFO("seed ", s);
    std::mt19937_64 rng(s);
    for (StateFormat f : kTableFormats) {
        INFO(format_name(f));
        std::vector<float> table(code_table(f).begin(), code_table(f).end());
        // Exact midpoints, where they are floats, take the upper code; one float below, the lower.
        int ties = 0;
        for (size_t i = 1; i < table.size(); ++i) {
            double mid = (double(table[i - 1]) + table[i]) / 2;
            if (double(float(mid)) != mid) continue;
            ++ties;
            CHECK(nearest_code(f, float(mid)) == i);
            CHECK(nearest_code(f, std::nextafter(float(mid), -INFINITY)) == i - 1);
        }
        CHECK(ties > 0);
        std::uniform_real_distribution<float> any(-1.5f, 1.5f);
        for (int k = 0; k < 20000; ++k) {
            float v = any(rng);
            CHECK(nearest_code(f, v) == plain_nearest(table, v));
        }
        CHECK(nearest_code(f, 7.0f) == table.size() - 1);
        CHECK(nearest_code(f, -7.0f) == 0);
        CHECK(nearest_code(f, std::numeric_limits<float>::quiet_NaN()) == 0);
    }
}

TEST_CASE("quantization: fp8 e4m3 conversion") {
    for (int c = 0; c < 256; ++c) {
        INFO("code ", c);
        float v = e4m3_to_float(uint8_t(c));
        if ((c & 0x7f) == 0x7f) {
            CHECK(std::isnan(v));
            continue;
        }
        CHECK(float_to_e4m3(v) == c);
    }
    CHECK(e4m3_to_float(0x7e) == 448.0f);
    CHECK(e4m3_to_float(0x01) == std::ldexp(1.0f, -9));
    CHECK(float_to_e4m3(1000.0f) == 0x7e);   // saturates
    CHECK(float_to_e4m3(-1e30f) == 0xfe);
    CHECK(float_to_e4m3(std::numeric_limits<float>::quiet_NaN()) == 0x7f);
    CHECK(float_to_e4m3(1.0625f) == 0x38);   // between 1 (0x38) and 1.125 (0x39): to even
    CHECK(float_to_e4m3(1.1875f) == 0x3a);   // between 1.125 and 1.25: to even (0x3a)
    uint64_t s = seed();
    INFO("seed ", s);
    std::mt19937_64 rng(s);
    std::uniform_real_distribution<float> exponent(-12, 10);
    for (int k = 0; k < 20000; ++k) {
        float v = std::exp2(exponent(rng)) * (rng() & 1 ? -1.0f : 1.0f);
        CHECK(float_to_e4m3(v) == plain_e4m3(v));
    }
}

TEST_CASE("quantization: blocks, scales, packing, short blocks, zero blocks and NaN") {
    // q4: two codes a byte, the even element in the high nibble.
    StateStorage q4 = storage(StateFormat::Q4S, 32);
    std::vector<float> values(70);
    for (size_t i = 0; i < values.size(); ++i) values[i] = float(std::sin(double(i))) * (i < 32 ? 2.0f : -0.5f);
    QuantizedTensor q = quantize(q4, values);
    REQUIRE(q.codes.size() == 35);
    REQUIRE(q.scales.size() == 3);  // 32 + 32 + a short block of 6
    for (size_t i = 0; i < values.size(); ++i) {
        uint8_t code = i % 2 == 0 ? q.codes[i / 2] >> 4 : q.codes[i / 2] & 15;
        CHECK(code == nearest_code(StateFormat::Q4S, values[i] * (1.0f / q.scales[i / 32])));
    }
    // The scale is the block's absmax, also when it comes from a negative value.
    float absmax1 = 0;
    for (size_t i = 32; i < 64; ++i) absmax1 = std::max(absmax1, std::fabs(values[i]));
    CHECK(q.scales[1] == absmax1);
    std::vector<float> negative_max{-3.0f, 1.0f, 2.0f, -0.5f};
    QuantizedTensor qn = quantize(storage(StateFormat::Q8S, 32), negative_max);
    CHECK(qn.scales[0] == 3.0f);
    CHECK(dequantize(storage(StateFormat::Q8S, 32), qn, 4)[0] == code_table(StateFormat::Q8S)[0] * 3.0f);

    // A zero block: scale floored at 1e-12, and it reads back as (near) zero.
    std::vector<float> zeros(64, 0.0f);
    for (StateFormat f : {StateFormat::Q8S, StateFormat::Q8U, StateFormat::Q4S, StateFormat::Q4U, StateFormat::FP8}) {
        INFO(format_name(f));
        QuantizedTensor z = quantize(storage(f, 32), zeros);
        CHECK(z.scales[0] == (f == StateFormat::FP8 ? 1e-12f / 448.0f : 1e-12f));
        for (float v : dequantize(storage(f, 32), z, 64)) CHECK(std::fabs(v) <= 1e-12f);
    }

    // A NaN poisons its block's scale, and only its block.
    std::vector<float> with_nan(64, 0.25f);
    with_nan[40] = std::numeric_limits<float>::quiet_NaN();
    QuantizedTensor qnan = quantize(storage(StateFormat::Q8U, 32), with_nan);
    std::vector<float> back = dequantize(storage(StateFormat::Q8U, 32), qnan, 64);
    CHECK(back[0] == 0.25f);
    for (size_t i = 32; i < 64; ++i) CHECK(std::isnan(back[i]));
}

TEST_CASE("quantization: round trips stay within half a code gap of the block scale") {
    uint64_t s = seed();
    INFO("seed ", s);
    std::mt19937_64 rng(s);
    std::normal_distribution<float> normal;
    for (StateFormat f : {StateFormat::Q8S, StateFormat::Q8U, StateFormat::Q4S, StateFormat::Q4U, StateFormat::FP8}) {
        INFO(format_name(f));
        StateStorage st = storage(f);
        bool is_unsigned = f == StateFormat::Q8U || f == StateFormat::Q4U;
        std::vector<float> values(3 * st.block + 17);
        for (float& v : values) v = is_unsigned ? std::fabs(normal(rng)) : normal(rng);
        QuantizedTensor q = quantize(st, values);
        std::vector<float> back = dequantize(st, q, int64_t(values.size()));
        for (size_t i = 0; i < values.size(); ++i) {
            float scale = q.scales[i / st.block];
            double err = std::fabs(double(back[i]) - values[i]);
            if (f == StateFormat::FP8) {
                CHECK(err <= std::fabs(values[i]) * 0x1p-4 + scale * 0x1p-10);  // half an e4m3 ulp (or a subnormal step)
            } else {
                std::span<const float> t = code_table(f);
                uint8_t c = nearest_code(f, values[i] * (1.0f / scale));
                double gap = std::max(c > 0 ? t[c] - t[c - 1] : 0.0f, c + 1 < t.size() ? t[c + 1] - t[c] : 0.0f);
                CHECK(err <= (gap / 2 + 1e-7) * scale + (f == StateFormat::Q4U ? 0.0625 * scale : 0));
            }
        }
    }
}

TEST_CASE("quantization: a shard quantizes as the whole tensor does") {
    StateStorage st = storage(StateFormat::Q8S, 64);
    std::vector<float> values(64 * 5 + 9);
    for (size_t i = 0; i < values.size(); ++i) values[i] = float(std::cos(0.37 * double(i))) * float(1 + i % 7);
    QuantizedTensor whole = quantize(st, values);
    std::vector<float> tail(values.begin() + 128, values.end());
    QuantizedTensor shard = quantize(st, tail, 128);
    CHECK(std::vector<uint8_t>(whole.codes.begin() + 128, whole.codes.end()) == shard.codes);
    CHECK(std::vector<float>(whole.scales.begin() + 2, whole.scales.end()) == shard.scales);
    CHECK(scale_count(st, 128, int64_t(tail.size())) == int64_t(shard.scales.size()));
    CHECK_THROWS_AS(quantize(st, tail, 100), std::invalid_argument);
}

TEST_CASE("quantization: the interpreter stores quantized states through their codes") {
    Program adamw = parse_and_verify(R"(optimizer adamw
  hyper lr = 1e-2
  hyper beta1 = 0.9
  hyper beta2 = 0.999
  hyper eps = 1e-8
  state m = 0
  state v = 0
  update
    m = lerp(m, g, 1 - beta1)
    v = lerp(v, g * g, 1 - beta2)
    p = p - lr * (m / (1 - beta1 ^ step)) / (sqrt(v / (1 - beta2 ^ step)) + eps)
)", "<test>");
    uint64_t s = seed();
    INFO("seed ", s);
    std::mt19937_64 rng(s);
    std::normal_distribution<double> normal;
    for (StateFormat f : {StateFormat::Q8S, StateFormat::Q4S, StateFormat::FP8}) {
        INFO(format_name(f));
        StorageSignature fp32;
        StorageSignature quantized;
        quantized.states["m"] = storage(f);
        quantized.states["v"] = storage(StateFormat::Q8U);
        Interpreter plain(adamw, hyper_values(adamw, {}), fp32), q(adamw, hyper_values(adamw, {}), quantized);
        std::vector<HostTensor> a(1), b(1);
        a[0].p.resize(5000);  // small tensors (under kMinQuantizedElements) keep fp32 states
        for (double& x : a[0].p) x = float(normal(rng));
        a[0].g.resize(5000);
        for (double& x : a[0].g) x = float(normal(rng));
        b = a;
        plain.init_states(a[0]);
        q.init_states(b[0]);
        for (double x : b[0].states[0]) CHECK(x == 0.0);  // a zero state starts at exactly 0
        plain.step(1, a);
        q.step(1, b);
        // The same step; the quantized run stores its states through their format, and the
        // parameter update used the unrounded states (so p is the same).
        CHECK(a[0].p == b[0].p);
        round_trip(quantized.states["m"], a[0].states[0]);
        round_trip(quantized.states["v"], a[0].states[1]);
        CHECK(a[0].states[0] == b[0].states[0]);
        CHECK(a[0].states[1] == b[0].states[1]);
    }
}

TEST_CASE("quantization: tensors under 4096 elements keep fp32 states, also as shards of a large tensor") {
    Program p = parse_and_verify("optimizer momentum\n  state m = 0\n  update\n    m = 0.9 * m + g\n    p = p - 0.1 * m\n", "<test>");
    StorageSignature q8;
    q8.states["m"] = storage(StateFormat::Q8S);
    CHECK(storage_for_tensor(q8, 4095).state("m").format == StateFormat::F32);
    CHECK(storage_for_tensor(q8, 4096).state("m").format == StateFormat::Q8S);
    Interpreter interp(p, {}, q8);
    std::vector<HostTensor> t(3);
    t[0].p.assign(4095, 1.0);
    t[1].p.assign(4096, 1.0);
    t[2].p.assign(256, 1.0);  // a shard of a 1 M-element tensor: quantized
    t[2].first_element = 4096;
    t[2].tensor_elements = 1 << 20;
    for (HostTensor& x : t) {
        x.g.resize(x.p.size());
        for (size_t i = 0; i < x.g.size(); ++i) x.g[i] = std::sin(0.1 * double(i)) * 0.37;
        interp.init_states(x);
    }
    interp.step(1, t);
    CHECK(t[0].states[0][3] == float(t[0].g[3]));  // fp32, not a code of the q8s table
    std::vector<double> expected(t[1].g);
    round_trip(q8.states["m"], expected);
    CHECK(t[1].states[0] == expected);
    std::vector<double> shard(t[2].g);
    round_trip(q8.states["m"], shard, 4096);
    CHECK(t[2].states[0] == shard);
}

// Rank-1 normalization against a plain reference written here: statistics by loops over the
// matrix, codes by a linear scan of qmaps.txt's q4u table, on heavy-tailed non-negative values
// (a second moment's) of several shapes; then the round trip's bound, a zero row, NaN, shapes.
TEST_CASE("quantization: rank-1 normalization of q4u against a plain reference") {
    const std::vector<float> table = reference_tables().at("qmap_4bit_unsigned");
    const uint64_t s = seed();
    INFO("seed ", s, " (OPTJIT_TEST_SEED replays it)");
    std::mt19937_64 rng(s);
    std::normal_distribution<float> normal;
    for (auto [rows, columns] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {1, 37}, {37, 1}, {16, 64}, {33, 129}, {7, 5}}) {
        INFO(rows, " x ", columns);
        std::vector<float> v(size_t(rows * columns));
        for (float& x : v) x = normal(rng) * normal(rng) * std::exp(2 * normal(rng));
        for (float& x : v) x = x * x;
        v[size_t(rng() % v.size())] = 0;
        Rank1Tensor q = quantize_rank1(v, rows, columns);
        std::vector<float> rmax(size_t(rows), 0), cmax(size_t(columns), 0);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < columns; ++c) {
                rmax[size_t(r)] = std::max(rmax[size_t(r)], std::fabs(v[size_t(r * columns + c)]));
                cmax[size_t(c)] = std::max(cmax[size_t(c)], std::fabs(v[size_t(r * columns + c)]));
            }
        for (float& m : rmax) m = std::max(m, 1e-12f);
        for (float& m : cmax) m = std::max(m, 1e-12f);
        CHECK(q.row_max == rmax);
        CHECK(q.column_max == cmax);
        std::vector<float> back = dequantize_rank1(q, rows, columns);
        int64_t wrong = 0;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < columns; ++c) {
                size_t i = size_t(r * columns + c);
                float m = std::min(rmax[size_t(r)], cmax[size_t(c)]);
                uint8_t code = plain_nearest(table, v[i] * (1.0f / m));
                uint8_t byte = q.codes[i / 2];
                if ((i % 2 == 0 ? byte >> 4 : byte & 15) != code) ++wrong;
                CHECK(back[i] == table[code] * m);
                CHECK(std::fabs(back[i] - v[i]) <= m / 16 * (1 + 1e-6));  // q4u's gaps are 1/16; below 1/16 reads 1/16
            }
        CHECK(wrong == 0);
    }
    // A zero row reads back as its floored statistic times 1/16; a NaN poisons its row and column.
    std::vector<float> v = {0, 0, 0, 4, 5, 6, 7, 8, std::numeric_limits<float>::quiet_NaN()};
    std::vector<float> back = dequantize_rank1(quantize_rank1(v, 3, 3), 3, 3);
    CHECK(back[0] == 1e-12f / 16);
    CHECK(std::isnan(back[2]));
    CHECK(std::isnan(back[5]));
    CHECK(std::isnan(back[6]));
    CHECK(std::isnan(back[8]));
    CHECK(back[3] == table[10] * 6.0f);  // 4 / min(row 6, column 7) is nearest 11 / 16
    CHECK_THROWS_WITH_AS(quantize_rank1(v, 2, 4), "rank-1 normalization of a 2 x 4 view needs 8 elements; the tensor has 9", std::invalid_argument);
}

// q4u:rank1 in the interpreter: a tensor with columns stores its second moment through
// quantize_rank1 (one statistic per row and per column); a one-dimensional tensor stores it
// block-wise, exactly as plain q4u; a shard is refused (it cannot see whole rows and columns).
TEST_CASE("quantization: the interpreter stores q4u:rank1 states by rows and columns") {
    Program rms = parse_and_verify("optimizer rms\n  state v = 0\n  update\n    v = lerp(v, g * g, 0.1)\n    p = p - 0.01 * g / (sqrt(v) + 1e-8)\n",
                                   "<test>");
    StorageSignature rank1, blockwise;
    rank1.states["v"] = StateStorage{StateFormat::Q4U, 128, true};
    blockwise.states["v"] = StateStorage{StateFormat::Q4U, 128, false};
    const uint64_t s = seed();
    INFO("seed ", s);
    std::mt19937_64 rng(s);
    std::normal_distribution<double> normal;
    std::vector<HostTensor> t(1);
    t[0].p.resize(64 * 96);
    t[0].g.resize(t[0].p.size());
    for (double& x : t[0].p) x = float(normal(rng));
    for (double& x : t[0].g) x = float(normal(rng) * std::exp(normal(rng)));
    std::vector<HostTensor> matrix = t, flat = t, plain = t;
    matrix[0].columns = 96;
    Interpreter with_rank1(rms, {}, rank1), without(rms, {}, blockwise);
    with_rank1.init_states(matrix[0]);
    with_rank1.init_states(flat[0]);
    without.init_states(plain[0]);
    for (int step = 1; step <= 3; ++step) {
        with_rank1.step(step, matrix);
        with_rank1.step(step, flat);
        without.step(step, plain);
    }
    // Rows and columns: 64 + 96 statistics, and the states read back through them.
    CHECK(matrix[0].quantized[0].scales.size() == 64 + 96);
    Rank1Tensor r = quantize_rank1(matrix[0].unquantized[0], 64, 96);
    std::vector<float> back = dequantize_rank1(r, 64, 96);
    CHECK(std::vector<double>(back.begin(), back.end()) == matrix[0].states[0]);
    CHECK(matrix[0].quantized[0].codes == r.codes);
    // One dimension: block-wise, bit for bit plain q4u.
    CHECK(flat[0].states[0] == plain[0].states[0]);
    CHECK(flat[0].p == plain[0].p);
    CHECK(matrix[0].states[0] != plain[0].states[0]);
    // A shard of a larger matrix is refused with one sentence.
    std::vector<HostTensor> shard = t;
    shard[0].columns = 96;
    shard[0].first_element = 64 * 96;
    shard[0].tensor_elements = 2 * 64 * 96;
    with_rank1.init_states(shard[0]);
    CHECK_THROWS_WITH_AS(with_rank1.step(1, shard), "rank-1 normalization needs the whole tensor: a shard cannot see its rows' and columns' maxima",
                         std::invalid_argument);
}
