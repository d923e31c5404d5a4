#include "passes/fold_uniform_factors.h"

#include <algorithm>

#include "ir/analysis.h"
#include "passes/rewrite.h"

namespace optjit {

namespace {

class UniformFactorFolder {
public:
    explicit UniformFactorFolder(Program& program) : program_(program), scope_(program) {}

    void run() {
        for (const Assign& a : program_.scalars) scope_.bind(a.target, scope_.info(a.value));
        for (Assign& a : program_.update) {
            fold(a.value);
            ValueInfo info = scope_.info(a.value);
            if (is_updatable(program_, a.target)) info.varies = Varies::Element;  // as hoist-scalars sees it
            scope_.bind(a.target, info);
        }
    }

private:
    bool uniform(const Expr& e) const { return is_per_launch(program_, scope_, e); }

    // Children first, so that a product sees its factors' divisions already turned around.
    void fold(Expr& e) {
        for (Expr& a : e.args) fold(a);
        if (e.op == Op::Div && !uniform(e.args[0]) && uniform(e.args[1])) {
            Loc loc = e.loc;
            Expr reciprocal = Expr::make(Op::Div, {Expr::num(1, loc), std::move(e.args[1])}, loc);
            e = Expr::make(Op::Mul, {std::move(e.args[0]), std::move(reciprocal)}, loc);
        }
        if (e.op != Op::Mul || uniform(e)) return;
        std::vector<Expr*> factors;
        gather(e, factors);
        std::vector<bool> per_launch_factor;
        for (const Expr* f : factors) per_launch_factor.push_back(uniform(*f));
        if (std::count(per_launch_factor.begin(), per_launch_factor.end(), true) < 2) return;
        std::vector<Expr> per_element, per_launch;
        for (size_t i = 0; i < factors.size(); ++i) (per_launch_factor[i] ? per_launch : per_element).push_back(std::move(*factors[i]));
        Loc loc = e.loc;
        e = Expr::make(Op::Mul, {product(std::move(per_element), loc), product(std::move(per_launch), loc)}, loc);
    }

    // The factors of a per-element product: its operands, through nested per-element products.
    void gather(Expr& e, std::vector<Expr*>& factors) {
        for (Expr& a : e.args) {
            if (a.op == Op::Mul && !uniform(a)) gather(a, factors);
            else factors.push_back(&a);
        }
    }

    static Expr product(std::vector<Expr> factors, Loc loc) {
        Expr out = std::move(factors[0]);
        for (size_t i = 1; i < factors.size(); ++i) out = Expr::make(Op::Mul, {std::move(out), std::move(factors[i])}, loc);
        return out;
    }

    Program& program_;
    Scope scope_;
};

}  // namespace

Program fold_uniform_factors(Program program, bool fast_math) {
    if (fast_math) UniformFactorFolder(program).run();
    return program;
}

}  // namespace optjit
