// Data-parallel plumbing without MPI: the threads of dist::run_thread_group
// stand in for ranks (their functions record, the test thread checks:
// doctest's assertions are not thread-safe). Synchronized batch norm against plain batch norm
// on the whole batch, the bucketed gradient reducer against the mean of the
// replicas' gradients, the backward hook it relies on, and the collective
// error and broadcast helpers. (The MPI build is exercised end to end by
// scripts/test: two ranks under mpirun against one process.)
#include <doctest/doctest.h>

#include <cstring>
#include <functional>
#include <map>

#include "core/autograd.h"
#include "core/dist/communicator.h"
#include "core/dist/grad_reducer.h"
#include "core/dist/launch.h"
#include "core/dist/sync_batch_norm.h"
#include "core/ops.h"
#include "layers/layers.h"
#include "models/registry.h"
#include "tests/grad_check.h"

using namespace bonsai;
using bonsai::testing::rel_error;

namespace {

Tensor rnd(const Shape& s, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  return Tensor::randn(s, rng, scale);
}

// Rows [begin, end) of the leading axis, as a copy.
Tensor rows(const Tensor& t, int64_t begin, int64_t end) {
  const int64_t per = t.numel() / t.dim(0);
  Shape s = t.shape();
  s[0] = end - begin;
  Tensor out = Tensor::empty(s, t.dtype());
  std::memcpy(out.raw(), static_cast<const char*>(t.raw()) + begin * per * dtype_size(t.dtype()),
              out.nbytes());
  return out;
}

}  // namespace

TEST_CASE("dist: a thread group sums in rank order, the same bits on every member") {
  std::vector<std::vector<float>> out(3);
  std::vector<std::vector<int64_t>> ints(3);
  std::vector<int> sizes(3);
  dist::run_thread_group(3, [&](int r, dist::Communicator& c) {
    sizes[r] = c.size();
    std::vector<float> v{0.1f * (r + 1), 1e8f * (r == 1 ? 1.f : -0.5f), static_cast<float>(r)};
    c.allreduce_sum(v.data(), 3);
    out[r] = v;
    std::vector<int64_t> k{r, 10};
    c.allreduce_sum(k.data(), 2);
    ints[r] = k;
  });
  CHECK(sizes == std::vector<int>{3, 3, 3});
  for (int r = 0; r < 3; ++r) {
    CHECK(out[r] == out[0]);
    CHECK(ints[r] == std::vector<int64_t>{3, 30});
  }
  CHECK(out[0][2] == 3.f);
  CHECK(out[0][0] == doctest::Approx(0.6f));
}

TEST_CASE("dist: the single-process world is a no-op; init(\"none\") keeps it") {
  dist::Communicator& w = dist::init("none");
  CHECK_EQ(w.size(), 1);
  CHECK_EQ(w.rank(), 0);
  float v = 2.f;
  w.allreduce_sum(&v, 1);
  CHECK(v == 2.f);
  CHECK_THROWS_WITH_AS(dist::init("bogus"), doctest::Contains("--distributed must be auto, mpi or none"),
                       Error);
  CHECK_EQ(dist::threads_per_rank(w, 0), 0);  // alone: all cores, as before
}

TEST_CASE("dist: agree() stops every rank together, naming the failing rank and its cause") {
  std::vector<std::string> messages(3);
  dist::run_thread_group(3, [&](int r, dist::Communicator& c) {
    try {
      dist::collectively(c, [&] {
        if (r == 2) throw Error("cannot decode 'train/n1/bad.JPEG'");
      });
      messages[r] = "no error";
    } catch (const dist::CollectiveError& e) {
      messages[r] = e.what();
    }
  });
  for (const auto& m : messages) CHECK(m == "rank 2: cannot decode 'train/n1/bad.JPEG'");
  // Alone, the original error passes through unchanged.
  CHECK_THROWS_WITH_AS(dist::collectively(*dist::local(), [] { throw Error("plain"); }), "plain", Error);
}

TEST_CASE("dist: a rank that fails outside a collective does not leave the others waiting") {
  CHECK_THROWS_WITH_AS(dist::run_thread_group(2,
                                              [](int r, dist::Communicator& c) {
                                                if (r == 1) throw Error("rank 1 broke");
                                                float v = 1.f;
                                                c.allreduce_sum(&v, 1);  // rank 0 waits here: it must not hang
                                              }),
                       "rank 1 broke", Error);
}

TEST_CASE("dist: broadcasts deliver rank 0's tensors, maps and strings; a different model is named") {
  std::vector<std::vector<float>> got(2);
  std::vector<std::map<std::string, Tensor>> maps(2);
  std::vector<std::string> strings(2);
  dist::run_thread_group(2, [&](int r, dist::Communicator& c) {
    Tensor w = Tensor::full({3, 2}, static_cast<float>(r + 1));
    Tensor k = Tensor::zeros({2}, DType::s64);
    k.data<int64_t>()[1] = r + 5;
    dist::broadcast_tensors(c, {{"w", w}, {"k", k}}, 0);
    got[r] = {w.data<float>()[0], w.data<float>()[5], static_cast<float>(k.data<int64_t>()[1])};
    std::map<std::string, Tensor> m;
    if (r == 0) m = {{"model/a", Tensor::full({2, 2}, 7.f)}, {"step", Tensor::zeros({1}, DType::s64)}};
    dist::broadcast_map(c, m, 0);
    maps[r] = m;
    std::string s = r == 0 ? "ckpt-12.safetensors" : "";
    dist::broadcast_string(c, s, 0);
    strings[r] = s;
  });
  CHECK(got[1] == std::vector<float>{1.f, 1.f, 5.f});
  REQUIRE(maps[1].size() == 2);
  CHECK(maps[1].at("model/a").shape() == Shape{2, 2});
  CHECK(maps[1].at("model/a").data<float>()[3] == 7.f);
  CHECK(maps[1].at("step").dtype() == DType::s64);
  CHECK(strings[1] == "ckpt-12.safetensors");

  std::vector<std::string> errors(2);
  dist::run_thread_group(2, [&](int r, dist::Communicator& c) {
    Tensor w = Tensor::zeros({r == 0 ? 4 : 5});
    try {
      dist::broadcast_tensors(c, {{"head.kernel", w}}, 0);
    } catch (const dist::CollectiveError& e) {
      errors[r] = e.what();
    }
  });
  CHECK(errors[0] == errors[1]);
  CHECK(errors[0].find("rank 1: the model differs from rank 0's: here 'head.kernel f32 [5]', there "
                       "'head.kernel f32 [4]'") != std::string::npos);
}

TEST_CASE("dist: average_tensors and check_identical") {
  std::vector<float> mean(2);
  std::vector<std::string> diverged(2);
  dist::run_thread_group(2, [&](int r, dist::Communicator& c) {
    Tensor m = Tensor::full({2}, r == 0 ? 1.f : 3.f);
    dist::average_tensors(c, {{"bn.moving_mean", m}});
    mean[r] = m.data<float>()[1];
    dist::check_identical(c, {{"bn.moving_mean", m}}, "averaged");  // passes
    Tensor w = Tensor::full({2}, r == 0 ? 1.f : 1.0000001f);
    try {
      dist::check_identical(c, {{"conv.kernel", w}}, "at step 3");
    } catch (const dist::CollectiveError& e) {
      diverged[r] = e.what();
    }
  });
  CHECK(mean == std::vector<float>{2.f, 2.f});
  CHECK(diverged[0] == "rank 1: at step 3: 'conv.kernel' differs from rank 0's; the replicas have diverged");
}

TEST_CASE("autograd: leaf_ready fires once per leaf, when its gradient is final") {
  Tensor a = Tensor::from({2}, {2.f, 3.f}).requires_grad_();
  Tensor b = Tensor::from({2}, {5.f, 7.f}).requires_grad_();
  Tensor c = Tensor::from({2}, {1.f, 1.f}).requires_grad_();  // not in this graph
  // a is used three times, b twice: y = Σ ab + a²b.
  Tensor y = ops::sum(ops::add(ops::mul(a, b), ops::mul(ops::mul(a, a), b)));
  std::map<TensorImpl*, std::vector<float>> fired;
  run_backward(y, Tensor::full(y.shape(), 1.f), {.leaf_ready = [&](TensorImpl* leaf) {
                 const float* g = Tensor(leaf->grad).data<float>();
                 CHECK(fired.count(leaf) == 0);
                 fired[leaf] = {g[0], g[1]};
               }});
  REQUIRE(fired.size() == 2);
  CHECK(fired[a.impl()] == std::vector<float>{5 + 2 * 2 * 5, 7 + 2 * 3 * 7});  // b + 2ab, already final
  CHECK(fired[b.impl()] == std::vector<float>{2 + 4, 3 + 9});                  // a + a²
  CHECK(fired.count(c.impl()) == 0);
}

TEST_CASE("sync_batch_norm alone equals ops::batch_norm (forward, moving statistics, gradients)") {
  for (Shape s : {Shape{4, 5, 3, 6}, Shape{7, 5}}) {
    const int64_t C = s.dim(-1);
    Tensor x = rnd(s, 1, 2.f);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] += 3.f;  // a mean far from 0
    Tensor g = rnd({C}, 2), b = rnd({C}, 3);
    Tensor rm1 = rnd({C}, 4), rv1 = Tensor::full({C}, 2.f), rm2 = rm1.clone(), rv2 = rv1.clone();
    Tensor cot = rnd(s, 5);
    auto run = [&](bool sync, Tensor rm, Tensor rv) {
      Tensor xi = x.clone().requires_grad_(), gi = g.clone().requires_grad_(), bi = b.clone().requires_grad_();
      ops::BatchNormParams p{.training = true, .momentum = 0.9f, .epsilon = 1e-3f};
      Tensor y = sync ? dist::sync_batch_norm(xi, gi, bi, rm, rv, p, *dist::local())
                      : ops::batch_norm(xi, gi, bi, rm, rv, p);
      run_backward(y, cot);
      return std::vector<Tensor>{y, xi.grad(), gi.grad(), bi.grad()};
    };
    auto want = run(false, rm1, rv1), got = run(true, rm2, rv2);
    for (size_t i = 0; i < want.size(); ++i) CHECK(rel_error(got[i], want[i]) < 1e-5);
    CHECK(rel_error(rm2, rm1) < 1e-6);
    CHECK(rel_error(rv2, rv1) < 1e-6);
  }
  Tensor rm = Tensor::zeros({3}), rv = Tensor::full({3}, 1.f);
  CHECK(testing::check_gradients(
            "sync_batch_norm",
            [&](const std::vector<Tensor>& in) {
              return dist::sync_batch_norm(in[0], in[1], in[2], rm, rv, {.training = true}, *dist::local());
            },
            {rnd({3, 4, 2, 3}, 9).requires_grad_(), rnd({3}, 10).requires_grad_(), rnd({3}, 11).requires_grad_()},
            {.eps = 1e-2, .rtol = 2e-2, .atol = 2e-3}) == 0);
}

TEST_CASE("sync_batch_norm over two ranks equals batch norm of the whole batch") {
  const Shape s{6, 3, 2, 4};
  const int64_t C = 4;
  Tensor x = rnd(s, 21, 1.5f), cot = rnd(s, 22), g = rnd({C}, 23), b = rnd({C}, 24);
  ops::BatchNormParams p{.training = true, .momentum = 0.9f, .epsilon = 1e-3f};
  // One process, the whole batch of 6.
  Tensor rm = Tensor::zeros({C}), rv = Tensor::full({C}, 1.f);
  Tensor xa = x.clone().requires_grad_(), ga = g.clone().requires_grad_(), ba = b.clone().requires_grad_();
  Tensor ya = ops::batch_norm(xa, ga, ba, rm, rv, p);
  run_backward(ya, cot);
  // Two ranks, 3 examples each; the loss is the sum of both ranks' losses.
  std::vector<Tensor> y(2), dx(2), dg(2), db(2), rms(2), rvs(2);
  dist::run_thread_group(2, [&](int r, dist::Communicator& c) {
    Tensor xi = rows(x, 3 * r, 3 * r + 3).requires_grad_();
    Tensor gi = g.clone().requires_grad_(), bi = b.clone().requires_grad_();
    rms[r] = Tensor::zeros({C});
    rvs[r] = Tensor::full({C}, 1.f);
    y[r] = dist::sync_batch_norm(xi, gi, bi, rms[r], rvs[r], p, c);
    run_backward(y[r], rows(cot, 3 * r, 3 * r + 3));
    dx[r] = xi.grad();
    dg[r] = gi.grad();
    db[r] = bi.grad();
  });
  for (int r = 0; r < 2; ++r) {
    CHECK(rel_error(y[r], rows(ya, 3 * r, 3 * r + 3)) < 1e-5);
    CHECK(rel_error(dx[r], rows(xa.grad(), 3 * r, 3 * r + 3)) < 1e-5);
    CHECK(rel_error(rms[r], rm) < 1e-6);
    CHECK(rel_error(rvs[r], rv) < 1e-6);
  }
  // γ and β: each rank holds its share; the shares sum to the whole.
  CHECK(rel_error(ops::add(dg[0], dg[1]), ga.grad()) < 1e-5);
  CHECK(rel_error(ops::add(db[0], db[1]), ba.grad()) < 1e-5);
}

TEST_CASE("BatchNorm2d with use_sync_batch_norm: two ranks train like one holding both halves") {
  auto make = [] {
    auto seq = std::make_shared<Sequential>();
    seq->push(std::make_shared<Conv2d>(Conv2dOptions{.in = 3, .out = 4, .kernel = 3, .seed = 5}), "conv");
    seq->push(std::make_shared<BatchNorm2d>(BatchNormOptions{.channels = 4}), "bn");
    return seq;
  };
  Tensor x = rnd({4, 5, 5, 3}, 31);
  auto single = make();
  use_sync_batch_norm(*single, dist::local());  // one rank: the same kernel, nothing to reduce
  Tensor loss = ops::mean(ops::relu((*single)(x)));
  loss.backward();
  std::vector<std::shared_ptr<Sequential>> replicas{make(), make()};
  dist::run_thread_group(2, [&](int r, dist::Communicator& c) {
    auto& m = *replicas[r];
    use_sync_batch_norm(m, std::shared_ptr<dist::Communicator>(&c, [](dist::Communicator*) {}));
    // Each rank's loss is the mean over its half; the reducer averages.
    Tensor l = ops::mean(ops::relu(m(rows(x, 2 * r, 2 * r + 2))));
    std::vector<Tensor> ps;
    for (auto& p : m.named_parameters()) ps.push_back(p.tensor);
    dist::GradientReducer reducer(c, ps, {.bucket_mb = 1e-5});  // a bucket per parameter
    reducer.start();
    run_backward(l, Tensor::full(l.shape(), 1.f), reducer.hooks());
    reducer.finish();
  });
  auto want = single->named_parameters();
  for (int r = 0; r < 2; ++r) {
    auto got = replicas[r]->named_parameters();
    for (size_t i = 0; i < want.size(); ++i) {
      INFO(want[i].name);
      CHECK(rel_error(got[i].tensor.grad(), want[i].tensor.grad()) < 1e-5);
    }
    auto bn = std::dynamic_pointer_cast<BatchNorm2d>(replicas[r]->child("bn"));
    auto bn1 = std::dynamic_pointer_cast<BatchNorm2d>(single->child("bn"));
    CHECK(bn->synced());
    CHECK(rel_error(bn->moving_variance, bn1->moving_variance) < 1e-6);
  }
}

TEST_CASE("GradientReducer: buckets in reverse order, averaged gradients, parameters without a gradient") {
  std::vector<std::vector<float>> grads(2);
  std::vector<int64_t> buckets(2);
  std::vector<bool> untouched(2);
  dist::run_thread_group(2, [&](int r, dist::Communicator& c) {
    Tensor w1 = Tensor::full({300}, 1.f).requires_grad_();
    Tensor w2 = Tensor::full({200}, 1.f).requires_grad_();
    Tensor never = Tensor::full({10}, 1.f).requires_grad_();
    // Buckets of 1 KB (256 floats), filled in reverse order: {w2, never}, {w1}.
    dist::GradientReducer reducer(c, {w1, never, w2}, {.bucket_mb = 1024.0 / (1024 * 1024)});
    buckets[r] = reducer.num_buckets();
    for (int step = 0; step < 2; ++step) {  // start() resets; gradients do not pile up
      w1.zero_grad();
      w2.zero_grad();
      reducer.start();
      Tensor lr = ops::add(ops::scale(ops::sum(w1), static_cast<float>(r + 1)), ops::scale(ops::sum(w2), 10.f * r));
      run_backward(lr, Tensor::full(lr.shape(), 1.f), reducer.hooks());
      reducer.finish();
    }
    grads[r] = {w1.grad().data<float>()[0], w1.grad().data<float>()[299], w2.grad().data<float>()[0]};
    untouched[r] = !never.grad().defined();
  });
  for (int r = 0; r < 2; ++r) {
    CHECK(buckets[r] == 2);
    CHECK(grads[r] == std::vector<float>{1.5f, 1.5f, 5.f});
    CHECK(untouched[r]);
  }
}

TEST_CASE("a zoo model with synchronized BN: two ranks' averaged gradients equal one process's") {
  // ResNet18 (BN then ReLU, residual sums, max pooling) at 32×32, batch 8
  // as 2 ranks × 4. Both sides use synchronized BN (alone: over one rank),
  // so they differ only in how sums are split.
  const nlohmann::json options = {{"num_classes", 10}, {"use_sync_bn", true}};
  Tensor x = rnd({8, 32, 32, 3}, 41, 60.f);
  Tensor labels = Tensor::zeros({8}, DType::s64);
  for (int i = 0; i < 8; ++i) labels.data<int64_t>()[i] = i * 3 % 10;
  auto single = models::build("resnet18", options);
  Tensor loss = ops::softmax_cross_entropy((*single)(x), labels);
  loss.backward();
  std::vector<std::shared_ptr<Module>> replicas{models::build("resnet18", options), models::build("resnet18", options)};
  dist::run_thread_group(2, [&](int r, dist::Communicator& c) {
    Module& m = *replicas[r];
    use_sync_batch_norm(m, std::shared_ptr<dist::Communicator>(&c, [](dist::Communicator*) {}));
    Tensor l = ops::softmax_cross_entropy(m(rows(x, 4 * r, 4 * r + 4)), rows(labels, 4 * r, 4 * r + 4));
    std::vector<Tensor> ps;
    for (auto& p : m.named_parameters()) ps.push_back(p.tensor);
    dist::GradientReducer reducer(c, ps, {.bucket_mb = 4});  // several buckets
    reducer.start();
    run_backward(l, Tensor::full(l.shape(), 1.f), reducer.hooks());
    reducer.finish();
  });
  auto want = single->named_parameters();
  double worst = 0;
  std::string worst_name;
  for (int r = 0; r < 2; ++r) {
    auto got = replicas[r]->named_parameters();
    for (size_t i = 0; i < want.size(); ++i) {
      const double e = rel_error(got[i].tensor.grad(), want[i].tensor.grad());
      if (e > worst) worst = e, worst_name = want[i].name;
    }
  }
  INFO(worst_name);
  CHECK(worst < 1e-5);
}
