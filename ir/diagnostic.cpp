#include "ir/diagnostic.h"

#include <fmt/format.h>

#include <algorithm>

namespace optjit {

namespace {

// Longest stretch of a source line shown in a diagnostic; a 10 MB line must not become a
// 10 MB error message.
constexpr size_t kWindow = 100;

std::string_view line_of(std::string_view text, uint32_t line) {
    size_t start = 0;
    for (uint32_t l = 1; l < line; ++l) {
        size_t nl = text.find('\n', start);
        if (nl == std::string_view::npos) return {};
        start = nl + 1;
    }
    size_t end = text.find('\n', start);
    std::string_view s = text.substr(start, end == std::string_view::npos ? text.size() - start : end - start);
    if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
    return s;
}

// Non-printable bytes are shown as '?' so a diagnostic never carries control characters,
// and tabs become spaces so the caret lines up. Bytes from 0x80 too: programs are ASCII, and
// raw high bytes would be invalid UTF-8, C1 controls (0x9b is CSI) or a multi-byte character
// that shifts the caret.
std::string printable(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        unsigned char u = static_cast<unsigned char>(c);
        if (c == '\t') c = ' ';
        else if (u < 0x20 || u >= 0x7f) c = '?';
    }
    return out;
}

}  // namespace

std::string format_diagnostic(const Diagnostic& d, const SourceText* source) {
    std::string file = source ? source->filename : "<builder>";
    if (!d.loc.known()) return fmt::format("{}: error: {}\n", file, d.message);
    std::string out = fmt::format("{}:{}:{}: error: {}\n", file, d.loc.line, d.loc.col, d.message);
    if (!source) return out;
    std::string_view line = line_of(source->text, d.loc.line);
    size_t col = d.loc.col - 1;  // 0-based
    size_t begin = col > kWindow / 2 ? col - kWindow / 2 : 0;
    begin = std::min(begin, line.size());
    std::string_view shown = line.substr(begin, kWindow);
    std::string prefix = begin > 0 ? "..." : "";
    std::string suffix = begin + shown.size() < line.size() ? "..." : "";
    out += "  " + prefix + printable(shown) + suffix + "\n";
    // A location past the end of its line (a hand-made one) puts the caret just after the
    // shown text; the underline never runs past it (nor wraps around when it would).
    size_t end = prefix.size() + shown.size();
    size_t caret_at = std::min(end, prefix.size() + (col - std::min(col, begin)));
    size_t len = std::clamp<size_t>(d.loc.len, 1, std::max<size_t>(1, end - caret_at));
    out += "  " + std::string(caret_at, ' ') + "^" + std::string(len - 1, '~') + "\n";
    return out;
}

std::string format_diagnostics(const std::vector<Diagnostic>& ds, const SourceText* source) {
    // Like a C compiler's error limit: finding each line scans the text, so rendering 10^5
    // diagnostics of a large file would take quadratic time, and nobody reads past the first.
    constexpr size_t kLimit = 50;
    std::string out;
    for (size_t i = 0; i < ds.size() && i < kLimit; ++i) out += format_diagnostic(ds[i], source);
    if (ds.size() > kLimit) out += fmt::format("{} more error{} not shown\n", ds.size() - kLimit, ds.size() - kLimit == 1 ? "" : "s");
    return out;
}

ProgramError::ProgramError(std::vector<Diagnostic> diagnostics, const SourceText* source)
    : std::runtime_error(format_diagnostics(diagnostics, source)), diagnostics_(std::move(diagnostics)) {}

}  // namespace optjit
