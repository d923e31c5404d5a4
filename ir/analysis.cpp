#include "ir/analysis.h"

#include <algorithm>
#include <map>

namespace optjit {

Scope::Scope(const Program& program) {
    names_[std::string(kParamName)] = {NameKind::Param, {Varies::Element, false}};
    names_[std::string(kGradName)] = {NameKind::Grad, {Varies::Element, false}};
    names_[std::string(kStepName)] = {NameKind::Step, {Varies::Launch, false}};
    for (const HyperDecl& h : program.hypers) names_.try_emplace(h.name, Entry{NameKind::Hyper, {Varies::Launch, false}});
    for (const StateDecl& s : program.states) names_.try_emplace(s.name, Entry{NameKind::State, {Varies::Element, false}});
}

const Scope::Entry* Scope::find(std::string_view name) const {
    auto it = names_.find(std::string(name));
    return it == names_.end() ? nullptr : &it->second;
}

void Scope::bind(const std::string& name, ValueInfo info) {
    auto [it, inserted] = names_.try_emplace(name, Entry{NameKind::Local, info});
    if (!inserted) it->second.info = info;
}

ValueInfo Scope::info(const Expr& e) const {
    switch (e.op) {
    case Op::Number: return {Varies::Constant, false};
    case Op::Ref: {
        const Entry* entry = find(e.name);
        return entry ? entry->info : ValueInfo{Varies::Element, false};
    }
    case Op::TensorSum:
    case Op::TensorMax: return {Varies::Tensor, true};
    case Op::GlobalSum:
    case Op::GlobalMax: return {Varies::Global, true};
    default: break;
    }
    ValueInfo out;
    for (const Expr& a : e.args) {
        ValueInfo ai = info(a);
        out.varies = std::max(out.varies, ai.varies);
        out.uses_reduction |= ai.uses_reduction;
    }
    return out;
}

bool is_updatable(const Program& program, std::string_view name) {
    return name == kParamName || program.state_index(name) >= 0;
}

std::vector<Reduction> reductions(const Program& program) {
    std::vector<Reduction> out;
    int globals = 0, tensors = 0;
    for (const Assign& a : program.update)
        for_each_node(a.value, [&](const Expr& e) {
            if (is_reduction(e.op)) out.push_back({&e, e.op, is_global_reduction(e.op) ? globals++ : tensors++});
        });
    return out;
}

int global_reduction_count(const Program& program) {
    int n = 0;
    for (const Reduction& r : reductions(program)) n += is_global_reduction(r.op);
    return n;
}

std::vector<std::set<std::string>> reduction_inputs(const Program& program) {
    // What each name's current value reads of the step's inputs.
    std::map<std::string, std::set<std::string>> reads;
    reads[std::string(kParamName)] = {std::string(kParamName)};
    reads[std::string(kGradName)] = {std::string(kGradName)};
    for (const StateDecl& s : program.states) reads[s.name] = {s.name};
    auto inputs_of = [&](const Expr& e) {
        std::set<std::string> out;
        for_each_node(e, [&](const Expr& n) {
            auto it = n.op == Op::Ref ? reads.find(n.name) : reads.end();
            if (it != reads.end()) out.insert(it->second.begin(), it->second.end());
        });
        return out;
    };
    std::vector<std::set<std::string>> out;
    for (const Assign& a : program.update) {
        for_each_node(a.value, [&](const Expr& e) {
            if (is_reduction(e.op)) out.push_back(inputs_of(e));
        });
        reads[a.target] = inputs_of(a.value);
    }
    return out;
}

int tensor_reduction_count(const Program& program) {
    return int(reductions(program).size()) - global_reduction_count(program);
}

}  // namespace optjit
