#include "layers/module.h"

namespace bonsai {

const char* role_name(ParamRole r) {
  switch (r) {
    case ParamRole::conv_kernel: return "conv_kernel";
    case ParamRole::depthwise_kernel: return "depthwise_kernel";
    case ParamRole::dense_kernel: return "dense_kernel";
    case ParamRole::bias: return "bias";
    case ParamRole::bn_gamma: return "bn_gamma";
    case ParamRole::bn_beta: return "bn_beta";
    case ParamRole::other: return "other";
  }
  return "?";
}

namespace {
std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

void check_new_name(const std::string& name, const std::string& kind) {
  BONSAI_CHECK(!name.empty() && name.find('.') == std::string::npos,
               kind + " name '" + name + "' must be non-empty and contain no '.'");
}
}  // namespace

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

std::vector<NamedParam> Module::named_parameters(const std::string& prefix) const {
  std::vector<NamedParam> out;
  for (const Param& p : params_) out.push_back({join(prefix, p.name), p.tensor, p.role});
  for (const auto& [name, child] : children_) {
    auto sub = child->named_parameters(join(prefix, name));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, t] : buffers_) out.emplace_back(join(prefix, name), t);
  for (const auto& [name, child] : children_) {
    auto sub = child->named_buffers(join(prefix, name));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const NamedParam& p : named_parameters()) n += p.tensor.numel();
  return n;
}

void Module::visit(const std::function<void(const std::string&, Module&)>& fn, const std::string& prefix) {
  fn(prefix, *this);
  for (auto& [name, child] : children_) child->visit(fn, join(prefix, name));
}

std::shared_ptr<Module> Module::child(const std::string& path) const {
  auto dot = path.find('.');
  std::string head = path.substr(0, dot);
  for (const auto& [name, c] : children_) {
    if (name != head) continue;
    return dot == std::string::npos ? c : c->child(path.substr(dot + 1));
  }
  std::string known;
  for (const auto& [name, c] : children_) known += (known.empty() ? "" : ", ") + name;
  BONSAI_CHECK(false, "no child '" + head + "' (in path '" + path + "'); children are: " + known);
  return nullptr;
}

void Module::replace_child(const std::string& path, std::shared_ptr<Module> replacement) {
  BONSAI_CHECK(replacement != nullptr, "replace_child('" + path + "') with a null module");
  auto dot = path.rfind('.');
  if (dot != std::string::npos) {
    child(path.substr(0, dot))->replace_child(path.substr(dot + 1), std::move(replacement));
    return;
  }
  for (auto& [name, c] : children_) {
    if (name != path) continue;
    replacement->train(c->is_training());
    c = std::move(replacement);
    return;
  }
  child(path);  // throws, listing the children
}

int64_t Module::macs() const {
  int64_t n = own_macs();
  for (const auto& [name, c] : children_) n += c->macs();
  return n;
}

void Module::zero_grad() {
  for (Param& p : params_) p.tensor.zero_grad();
  for (auto& [name, child] : children_) child->zero_grad();
}

Tensor& Module::add_parameter(const std::string& name, Tensor t, ParamRole role) {
  check_new_name(name, "parameter");
  t.requires_grad_();
  params_.push_back({name, std::move(t), role});
  return params_.back().tensor;
}

Tensor& Module::add_buffer(const std::string& name, Tensor t) {
  check_new_name(name, "buffer");
  buffers_.emplace_back(name, std::move(t));
  return buffers_.back().second;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_new_name(name, "child");
  for (const auto& [n, c] : children_) BONSAI_CHECK(n != name, "duplicate child name '" + name + "'");
  child->train(training_);
  children_.emplace_back(name, std::move(child));
}

}  // namespace bonsai
