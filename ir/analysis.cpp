#include "ir/analysis.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

namespace optjit {

Scope::Scope(const Program& program) {
    names_[std::string(kParamName)] = {NameKind::Param, {Varies::Element}};
    names_[std::string(kGradName)] = {NameKind::Grad, {Varies::Element}};
    names_[std::string(kStepName)] = {NameKind::Step, {Varies::Launch}};
    for (const HyperDecl& h : program.hypers) names_.try_emplace(h.name, Entry{NameKind::Hyper, {Varies::Launch}});
    for (const StateDecl& s : program.states) names_.try_emplace(s.name, Entry{NameKind::State, {Varies::Element}});
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
    case Op::Number: return {Varies::Constant};
    case Op::Ref: {
        const Entry* entry = find(e.name);
        return entry ? entry->info : ValueInfo{Varies::Element};
    }
    case Op::TensorSum:
    case Op::TensorMax: return {Varies::Tensor};
    case Op::GlobalSum:
    case Op::GlobalMax: return {Varies::Global};
    default: break;
    }
    ValueInfo out;
    for (const Expr& a : e.args) {
        ValueInfo ai = info(a);
        out.varies = std::max(out.varies, ai.varies);
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

std::vector<int> reduction_levels(const Program& program) {
    const std::vector<Reduction> list = reductions(program);
    std::map<const Expr*, size_t> index;
    for (size_t k = 0; k < list.size(); ++k) index[list[k].node] = k;
    // The reductions each name's value reads, and each reduction's argument reads (directly,
    // nested, or through names).
    std::map<std::string, std::set<size_t>> name_reads;
    std::vector<std::set<size_t>> depends(list.size());
    std::function<std::set<size_t>(const Expr&)> reads = [&](const Expr& e) -> std::set<size_t> {
        if (e.op == Op::Ref) {
            auto it = name_reads.find(e.name);
            return it == name_reads.end() ? std::set<size_t>{} : it->second;
        }
        std::set<size_t> out;
        for (const Expr& a : e.args) out.merge(reads(a));
        if (!is_reduction(e.op)) return out;
        const size_t k = index.at(&e);
        depends[k] = std::move(out);
        return {k};
    };
    for (const Assign& a : program.update) name_reads[a.target] = reads(a.value);

    // As soon as possible: 1 + the highest level of what it reads.
    std::vector<int> level(list.size(), 1);
    bool changed = true;
    while (changed) {  // a fixed point: a reduction nested in another comes after it in the list
        changed = false;
        for (size_t k = 0; k < list.size(); ++k)
            for (size_t d : depends[k])
                if (level[k] < level[d] + 1) level[k] = level[d] + 1, changed = true;
    }
    // Then as late as the reductions that read it allow, where a later pass already loads
    // everything its argument reads: clipped LAMB's norm of p joins the pass over p, g, m and v
    // instead of adding a read of p to the pass over g.
    const int levels = list.empty() ? 0 : *std::max_element(level.begin(), level.end());
    const std::vector<std::set<std::string>> inputs = reduction_inputs(program);
    std::vector<size_t> order(list.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return level[a] != level[b] ? level[a] > level[b] : a < b; });
    for (size_t k : order) {
        int latest = levels;
        for (size_t d = 0; d < list.size(); ++d)
            if (depends[d].count(k)) latest = std::min(latest, level[d] - 1);
        for (int later = latest; later > level[k]; --later) {
            std::set<std::string> loaded;
            for (size_t j = 0; j < list.size(); ++j)
                if (j != k && level[j] == later) loaded.insert(inputs[j].begin(), inputs[j].end());
            if (std::includes(loaded.begin(), loaded.end(), inputs[k].begin(), inputs[k].end())) {
                level[k] = later;
                break;
            }
        }
    }
    return level;
}

int reduction_level_count(const Program& program) {
    int n = 0;
    for (int level : reduction_levels(program)) n = std::max(n, level);
    return n;
}

int tensor_reduction_count(const Program& program) {
    return int(reductions(program).size()) - global_reduction_count(program);
}

}  // namespace optjit
