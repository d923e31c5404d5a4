#include "runtime/thread_pool.h"

#include <algorithm>

namespace optjit {

ThreadPool::ThreadPool(unsigned threads) {
    threads = std::max(1u, threads);
    for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this, i] { work(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    start_.notify_all();
    for (std::thread& t : workers_) t.join();
}

ThreadPool& ThreadPool::global() {
    static ThreadPool pool;
    return pool;
}

namespace {
std::pair<int64_t, int64_t> share(int64_t n, unsigned parts, unsigned index) {
    int64_t per = n / parts, extra = n % parts;
    int64_t begin = index * per + std::min<int64_t>(index, extra);
    return {begin, begin + per + (int64_t(index) < extra ? 1 : 0)};
}
}  // namespace

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    if (workers_.empty() || n == 1) {
        fn(0, n);
        return;
    }
    {
        std::lock_guard lock(mutex_);
        job_ = &fn;
        n_ = n;
        pending_ = unsigned(workers_.size());
        ++generation_;
    }
    start_.notify_all();
    auto [b, e] = share(n, size(), 0);
    if (b < e) fn(b, e);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
}

void ThreadPool::work(unsigned index) {
    uint64_t seen = 0;
    for (;;) {
        std::unique_lock lock(mutex_);
        start_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        const auto* job = job_;
        int64_t n = n_;
        lock.unlock();
        auto [b, e] = share(n, size(), index);
        if (b < e) (*job)(b, e);
        lock.lock();
        if (--pending_ == 0) done_.notify_all();
    }
}

}  // namespace optjit
