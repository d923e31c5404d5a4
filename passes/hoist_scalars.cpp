#include "passes/hoist_scalars.h"

#include <algorithm>

#include "ir/analysis.h"
#include "passes/rewrite.h"

namespace optjit {

namespace {

class Hoister {
public:
    explicit Hoister(Program& program) : program_(program), scope_(program), names_(program, "_s") {}

    void run() {
        for (const Assign& a : program_.scalars) scope_.bind(a.target, scope_.info(a.value));
        std::vector<Assign> update = std::move(program_.update);
        program_.update.clear();
        for (Assign& a : update) {
            std::string target = a.target;
            ValueInfo info = scope_.info(a.value);
            if (!is_updatable(program_, a.target) && hoistable(a.value)) {
                program_.scalars.push_back(std::move(a));
            } else {
                extract(a.value);
                program_.update.push_back(std::move(a));
                // Computed per element from here on: a later expression reading it (say a
                // local that read p after `p = lr`) must not be hoisted above it.
                info.varies = std::max(info.varies, Varies::Element);
            }
            scope_.bind(target, info);
        }
    }

private:
    bool hoistable(const Expr& e) const { return is_per_launch(program_, scope_, e); }

    void extract(Expr& e) {
        if (e.op == Op::Number || e.op == Op::Ref) return;
        if (hoistable(e)) {
            std::string name = names_.next();
            Loc loc = e.loc;
            program_.scalars.push_back({name, std::move(e), loc});
            scope_.bind(name, {Varies::Launch});
            e = Expr::ref(name, loc);
            return;
        }
        for (Expr& a : e.args) extract(a);
    }

    Program& program_;
    Scope scope_;
    FreshNames names_;
};

}  // namespace

Program hoist_scalars(Program program) {
    Hoister(program).run();
    return program;
}

}  // namespace optjit
