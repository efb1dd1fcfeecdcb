// In-process task queue: a counting semaphore in front of the handler.
#include "queue/inproc_queue.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <mutex>

namespace el::queue {

struct InprocQueue::Impl {
  net::any_io_executor ex;
  TaskHandler handler;
  std::size_t max_concurrent;
  mutable std::mutex mu;
  std::size_t running = 0;
  // Waiters park on a timer that never expires by itself; release() expires the first one.
  // Callers must run on a strand (sessions do), so the timer is only touched on it.
  std::deque<std::shared_ptr<net::steady_timer>> waiters;

  void release() {
    std::lock_guard lk(mu);
    if (!waiters.empty()) {
      auto t = waiters.front();
      waiters.pop_front();
      // The slot passes to this waiter (running stays the same). Expiring the timer on its own
      // executor works whether or not the waiter has started waiting yet.
      net::post(t->get_executor(), [t] { t->expires_at(net::steady_timer::time_point::min()); });
    } else {
      --running;
    }
  }
};

InprocQueue::InprocQueue(net::any_io_executor ex, TaskHandler handler, std::size_t max_concurrent)
    : impl_(std::make_shared<Impl>()) {
  impl_->ex = std::move(ex);
  impl_->handler = std::move(handler);
  impl_->max_concurrent = max_concurrent == 0 ? 1 : max_concurrent;
}

InprocQueue::~InprocQueue() = default;

net::awaitable<TaskResult> InprocQueue::submit(FetchTask task) {
  auto impl = impl_;
  std::shared_ptr<net::steady_timer> wait;
  {
    std::lock_guard lk(impl->mu);
    if (impl->running < impl->max_concurrent) {
      ++impl->running;
    } else {
      wait = std::make_shared<net::steady_timer>(co_await net::this_coro::executor,
                                                 net::steady_timer::time_point::max());
      impl->waiters.push_back(wait);
    }
  }
  if (wait) co_await wait->async_wait(net::as_tuple(net::use_awaitable));
  struct Release {
    std::shared_ptr<Impl> impl;
    ~Release() { impl->release(); }
  } release{impl};
  co_return co_await impl->handler(task);
}

std::size_t InprocQueue::waiting() const {
  std::lock_guard lk(impl_->mu);
  return impl_->waiters.size();
}

std::size_t InprocQueue::running() const {
  std::lock_guard lk(impl_->mu);
  return impl_->running;
}

}  // namespace el::queue
