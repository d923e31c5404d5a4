#include "ir/verifier.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "ir/analysis.h"
#include "ir/parser.h"

namespace optjit {

namespace {

bool is_identifier(std::string_view s) {
    if (s.empty()) return false;
    auto start = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
    if (!start(s[0])) return false;
    return std::all_of(s.begin() + 1, s.end(), [&](char c) { return start(c) || (c >= '0' && c <= '9'); });
}

bool is_keyword(std::string_view s) {
    return s == "optimizer" || s == "hyper" || s == "state" || s == "scalars" || s == "update";
}

// A name as messages show it: a 10 MB identifier must not make a 10 MB message.
std::string shown(std::string_view name) {
    if (name.size() <= 40) return std::string(name);
    return fmt::format("{}...", name.substr(0, 40));
}

std::string plural(int n, std::string_view word) { return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s"); }

class Verifier {
public:
    explicit Verifier(const Program& program) : program_(program), scope_(program) {
        // Where each name is first assigned in update, for "used before it is assigned"
        // (a map, not a scan per use: 10^5 misused names must not take quadratic time).
        for (const Assign& a : program_.update) first_update_.try_emplace(a.target, a.loc);
    }

    std::vector<Diagnostic> run() {
        if (!is_identifier(program_.name) || is_keyword(program_.name))
            error(program_.name_loc, fmt::format("'{}' is not a valid optimizer name (letters, digits and '_', not a keyword)", shown(program_.name)));
        declarations();
        for (const Assign& a : program_.scalars) statement(a, /*in_scalars=*/true);
        for (const Assign& a : program_.update) statement(a, /*in_scalars=*/false);
        updates();
        std::stable_sort(diags_.begin(), diags_.end(), [](const Diagnostic& a, const Diagnostic& b) {
            return std::pair(a.loc.line, a.loc.col) < std::pair(b.loc.line, b.loc.col);
        });
        return std::move(diags_);
    }

private:
    void error(Loc loc, std::string message) { diags_.push_back({loc, std::move(message)}); }

    void declare(const std::string& name, Loc loc, std::string_view what) {
        if (!is_identifier(name) || is_keyword(name)) {
            error(loc, fmt::format("'{}' is not a valid {} name (letters, digits and '_', not a keyword)", shown(name), what));
            return;
        }
        if (name == kParamName || name == kGradName || name == kStepName) {
            error(loc, fmt::format("'{}' is built in (p: parameter, g: gradient, step: step counter) and cannot name a {}", shown(name), what));
            return;
        }
        auto [it, inserted] = declared_.try_emplace(name, loc);
        if (!inserted) error(loc, fmt::format("'{}' is defined twice (first at {})", shown(name), where(it->second)));
    }

    static std::string where(Loc loc) { return loc.known() ? fmt::format("line {}", loc.line) : std::string("an earlier declaration"); }

    void declarations() {
        for (const HyperDecl& h : program_.hypers) {
            declare(h.name, h.loc, "hyper-parameter");
            if (!std::isfinite(h.value)) error(h.loc, fmt::format("hyper-parameter '{}' has a non-finite default", shown(h.name)));
        }
        for (const StateDecl& s : program_.states) {
            declare(s.name, s.loc, "state");
            if (!std::isfinite(s.init)) error(s.loc, fmt::format("state '{}' has a non-finite initial value", shown(s.name)));
        }
    }

    void statement(const Assign& a, bool in_scalars) {
        expression(a.value, in_scalars);
        ValueInfo info = scope_.info(a.value);
        if (in_scalars && info.varies > Varies::Launch && !expr_errors_)
            error(a.value.loc.known() ? a.value.loc : a.loc,
                  fmt::format("'{}' varies per element, but the scalars section holds values fixed for a launch (move it to 'update')", shown(a.target)));
        expr_errors_ = false;

        const Scope::Entry* entry = scope_.find(a.target);
        if (a.target == kGradName) {
            error(a.loc, "cannot assign to the gradient 'g': it is an input (assign a new name instead)");
            return;
        }
        if (a.target == kStepName) {
            error(a.loc, "cannot assign to 'step': the step counter is an input");
            return;
        }
        if (!is_identifier(a.target) || is_keyword(a.target)) {
            error(a.loc, fmt::format("'{}' is not a valid name (letters, digits and '_', not a keyword)", shown(a.target)));
            return;
        }
        if (entry && entry->kind == NameKind::Hyper) {
            error(a.loc, fmt::format("cannot assign to hyper-parameter '{}': hyper-parameters are read-only (assign a new name instead)", shown(a.target)));
            return;
        }
        bool updatable = is_updatable(program_, a.target);
        if (in_scalars && updatable) {
            error(a.loc, fmt::format("'{}' is per element and can only be assigned in 'update'", shown(a.target)));
            return;
        }
        if (updatable) {
            updated_.insert(a.target);
        } else if (entry) {
            auto it = local_locs_.find(a.target);
            error(a.loc, fmt::format("'{}' is defined twice (first at {}); only p and states can be reassigned",
                                     shown(a.target), it == local_locs_.end() ? "an earlier assignment" : where(it->second)));
            return;
        } else {
            local_locs_[a.target] = a.loc;
        }
        scope_.bind(a.target, info);
    }

    // Checks names, arities and reduction placement in `e`. A reduction may read another
    // reduction's value, directly or through names: it then needs a pass of its own after that
    // one (ir/analysis.h's reduction_levels).
    void expression(const Expr& e, bool in_scalars) {
        const OpInfo& info = op_info(e.op);
        switch (e.op) {
        case Op::Number:
            if (!std::isfinite(e.number)) fail(e.loc, "a number in the program is not finite");
            return;
        case Op::Ref: {
            const Scope::Entry* entry = scope_.find(e.name);
            if (!entry) {
                auto later = first_update_.find(e.name);
                if (later != first_update_.end() && later->second.known())
                    fail(e.loc, fmt::format("'{}' is used before it is assigned (at line {})", shown(e.name), later->second.line));
                else
                    fail(e.loc, fmt::format("undefined name '{}'", shown(e.name)));
                return;
            }
            if (in_scalars && entry->info.varies > Varies::Launch)
                fail(e.loc, fmt::format("'{}' varies per element and cannot be used in the scalars section", shown(e.name)));
            return;
        }
        default: break;
        }
        if (int(e.args.size()) != info.arity) {
            fail(e.loc, fmt::format("'{}' takes {}, got {}", info.spelling, plural(info.arity, "argument"), e.args.size()));
        }
        if (is_reduction(e.op) && in_scalars) {
            fail(e.loc, fmt::format("'{}' cannot be used in the scalars section: a reduction needs the elements", info.spelling));
            return;
        }
        for (const Expr& a : e.args) expression(a, in_scalars);
    }

    void fail(Loc loc, std::string message) {
        expr_errors_ = true;
        error(loc, std::move(message));
    }

    void updates() {
        for (const StateDecl& s : program_.states)
            if (!updated_.count(s.name))
                error(s.loc, fmt::format("state '{}' is never updated (assign it in 'update')", shown(s.name)));
        if (!updated_.count(std::string(kParamName)))
            error(program_.name_loc, fmt::format("optimizer '{}' never updates the parameter 'p'", shown(program_.name)));
    }

    const Program& program_;
    Scope scope_;
    std::vector<Diagnostic> diags_;
    std::unordered_map<std::string, Loc> declared_;
    std::unordered_map<std::string, Loc> local_locs_;
    std::unordered_map<std::string, Loc> first_update_;
    std::unordered_set<std::string> updated_;
    bool expr_errors_ = false;
};

}  // namespace

std::vector<Diagnostic> verify(const Program& program) { return Verifier(program).run(); }

Program parse_and_verify(std::string_view text, const std::string& filename) {
    SourceText source{filename, std::string(text)};
    ParseResult parsed = parse(text);
    if (!parsed.ok()) throw ProgramError(parsed.errors, &source);
    std::vector<Diagnostic> errors = verify(parsed.program);
    if (!errors.empty()) throw ProgramError(errors, &source);
    return std::move(parsed.program);
}

void verify_or_throw(const Program& program) {
    std::vector<Diagnostic> errors = verify(program);
    if (!errors.empty()) throw ProgramError(errors, nullptr);
}

}  // namespace optjit
