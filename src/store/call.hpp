// Calls into the registry from a coroutine without blocking an I/O thread: on the adapter's
// blocking pool when it has one (Redis), inline when every call is in memory.
#pragma once
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <type_traits>

#include "store/registry.hpp"

namespace el::store {

template <class F>
boost::asio::awaitable<std::invoke_result_t<F&>> call(Registry& registry, F f) {
  namespace net = boost::asio;
  using R = std::invoke_result_t<F&>;
  auto* pool = registry.blocking_pool();
  if (!pool) co_return f();
  // GCC 12 destroys temporaries of a co_await expression twice: the closure and the operation
  // are named locals.
  if constexpr (std::is_void_v<R>) {
    auto fn = [f = std::move(f)]() mutable -> net::awaitable<void> {
      f();
      co_return;
    };
    auto op = net::co_spawn(*pool, std::move(fn), net::use_awaitable);
    co_await std::move(op);
  } else {
    auto fn = [f = std::move(f)]() mutable -> net::awaitable<R> { co_return f(); };
    auto op = net::co_spawn(*pool, std::move(fn), net::use_awaitable);
    R r = co_await std::move(op);
    co_return r;
  }
}

}  // namespace el::store
