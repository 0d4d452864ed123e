// ThreadSanitizer annotations for the system's (uninstrumented) Abseil synchronization library.
// Linked into every target of a FEDKIT_SANITIZE=thread build only; see the top-level CMakeLists.
//
// Why: Debian's libabsl_synchronization is not built with -fsanitize=thread, so absl::Mutex,
// absl::CondVar and absl::Notification lock, wait and signal in code TSan never sees, and every
// variable guarded by an absl::Mutex would be reported as a data race. Abseil built with TSan
// annotates those operations itself (ABSL_TSAN_MUTEX_* in mutex.cc); this file adds the same
// annotations from outside: it defines the exported member functions, so the dynamic linker binds
// every caller (FedKit, gRPC and Abseil's own calls through the PLT) to them, and each one tells
// TSan what happens and then calls the real function found with dlsym(RTLD_NEXT).
//
// __tsan_mutex_pre_* also make TSan ignore memory accesses until the matching __tsan_mutex_post_*,
// as in Abseil's own annotations, so the real implementation's internals (including conditions
// that Abseil evaluates while the mutex is held on behalf of waiters) are not checked. A wait
// (Await, CondVar::Wait) is described as unlock + lock, which is what it does.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

#define FEDKIT_STRINGIFY_INNER(x) #x
#define FEDKIT_STRINGIFY(x) FEDKIT_STRINGIFY_INNER(x)

// The real function `name` (the Itanium-mangled suffix after the absl namespaces, e.g.
// "5Mutex4LockEv"), looked up once in the libraries loaded after this one.
template <typename Fn>
Fn Real(const char* name, bool is_const = false) {
  const char* ns = FEDKIT_STRINGIFY(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string mangled = std::string(is_const ? "_ZNK4absl" : "_ZN4absl") +
                              std::to_string(std::strlen(ns)) + ns + name;
  void* fn = dlsym(RTLD_NEXT, mangled.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_tsan_annotations: %s not found\n", mangled.c_str());
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

void* Addr(const void* p) { return const_cast<void*>(p); }

// Abseil's functions call each other through the PLT too (LockWhenWithTimeout calls
// LockWhenWithDeadline, Notification calls its mutex, ...). Only the outermost call on a thread is
// annotated; nested ones go straight to the real function.
thread_local int depth = 0;
struct Nested {
  Nested() { ++depth; }
  ~Nested() { --depth; }
};

// Annotated lock: the real call runs inside the ignore region opened by pre_lock. `real` returns
// false for a try-lock that did not acquire.
template <typename F>
bool AnnotatedLock(const absl::Mutex* mu, unsigned flags, F real) {
  if (depth > 0) return real();
  Nested nested;
  __tsan_mutex_pre_lock(Addr(mu), flags);
  const bool locked = real();
  __tsan_mutex_post_lock(Addr(mu), locked ? flags : flags | __tsan_mutex_try_lock_failed, 0);
  return locked;
}

template <typename F>
void AnnotatedUnlock(const absl::Mutex* mu, unsigned flags, F real) {
  if (depth > 0) return real();
  Nested nested;
  __tsan_mutex_pre_unlock(Addr(mu), flags);
  real();
  __tsan_mutex_post_unlock(Addr(mu), flags);
}

// Await and CondVar::Wait release the mutex and hold it again when they return (also on timeout).
template <typename F>
auto AnnotatedWait(const absl::Mutex* mu, F real) {
  if (depth > 0) return real();
  Nested nested;
  __tsan_mutex_pre_unlock(Addr(mu), 0);
  __tsan_mutex_post_unlock(Addr(mu), 0);
  __tsan_mutex_pre_lock(Addr(mu), 0);
  auto result = real();
  __tsan_mutex_post_lock(Addr(mu), 0, 0);
  return result;
}

// Runs a Notification function with the nested calls to its own mutex unannotated.
template <typename F>
auto Unannotated(F real) {
  Nested nested;
  return real();
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

Mutex::~Mutex() {
  static const auto real = Real<void (*)(Mutex*)>("5MutexD2Ev");
  __tsan_mutex_destroy(this, __tsan_mutex_not_static);
  real(this);
}

void Mutex::Lock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex4LockEv");
  AnnotatedLock(this, 0, [&] { return real(this), true; });
}

void Mutex::ReaderLock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex10ReaderLockEv");
  AnnotatedLock(this, __tsan_mutex_read_lock, [&] { return real(this), true; });
}

bool Mutex::TryLock() {
  static const auto real = Real<bool (*)(Mutex*)>("5Mutex7TryLockEv");
  return AnnotatedLock(this, __tsan_mutex_try_lock, [&] { return real(this); });
}

bool Mutex::ReaderTryLock() {
  static const auto real = Real<bool (*)(Mutex*)>("5Mutex13ReaderTryLockEv");
  return AnnotatedLock(this, __tsan_mutex_try_read_lock, [&] { return real(this); });
}

void Mutex::Unlock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex6UnlockEv");
  AnnotatedUnlock(this, 0, [&] { real(this); });
}

void Mutex::ReaderUnlock() {
  static const auto real = Real<void (*)(Mutex*)>("5Mutex12ReaderUnlockEv");
  AnnotatedUnlock(this, __tsan_mutex_read_lock, [&] { real(this); });
}

void Mutex::LockWhen(const Condition& cond) {
  static const auto real = Real<void (*)(Mutex*, const Condition&)>("5Mutex8LockWhenERKNS0_9ConditionE");
  AnnotatedLock(this, 0, [&] { return real(this, cond), true; });
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  static const auto real =
      Real<void (*)(Mutex*, const Condition&)>("5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  AnnotatedLock(this, __tsan_mutex_read_lock, [&] { return real(this, cond), true; });
}

// The *WithTimeout/*WithDeadline forms hold the mutex on return whatever the condition's value.
bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  bool result = false;
  AnnotatedLock(this, 0, [&] { return result = real(this, cond, timeout), true; });
  return result;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  bool result = false;
  AnnotatedLock(this, 0, [&] { return result = real(this, cond, deadline), true; });
  return result;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  bool result = false;
  AnnotatedLock(this, __tsan_mutex_read_lock,
                [&] { return result = real(this, cond, timeout), true; });
  return result;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  bool result = false;
  AnnotatedLock(this, __tsan_mutex_read_lock,
                [&] { return result = real(this, cond, deadline), true; });
  return result;
}

void Mutex::Await(const Condition& cond) {
  static const auto real = Real<void (*)(Mutex*, const Condition&)>("5Mutex5AwaitERKNS0_9ConditionE");
  AnnotatedWait(this, [&] { return real(this, cond), 0; });
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Duration)>(
      "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  return AnnotatedWait(this, [&] { return real(this, cond, timeout); });
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  static const auto real = Real<bool (*)(Mutex*, const Condition&, absl::Time)>(
      "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  return AnnotatedWait(this, [&] { return real(this, cond, deadline); });
}

void CondVar::Wait(Mutex* mu) {
  static const auto real = Real<void (*)(CondVar*, Mutex*)>("7CondVar4WaitEPNS0_5MutexE");
  AnnotatedWait(mu, [&] { return real(this, mu), 0; });
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  static const auto real = Real<bool (*)(CondVar*, Mutex*, absl::Duration)>(
      "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  return AnnotatedWait(mu, [&] { return real(this, mu, timeout); });
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  static const auto real = Real<bool (*)(CondVar*, Mutex*, absl::Time)>(
      "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  return AnnotatedWait(mu, [&] { return real(this, mu, deadline); });
}

// Notification: Notify() releases on the flag's address; observing the flag set acquires it
// (HasBeenNotified() is an inline, instrumented acquire load of the flag; the waits are annotated
// here).
void Notification::Notify() {
  static const auto real = Real<void (*)(Notification*)>("12Notification6NotifyEv");
  __tsan_release(Addr(&notified_yet_));
  Unannotated([&] { return real(this), 0; });
}

void Notification::WaitForNotification() const {
  static const auto real =
      Real<void (*)(const Notification*)>("12Notification19WaitForNotificationEv", true);
  Unannotated([&] { return real(this), 0; });
  __tsan_acquire(Addr(&notified_yet_));
}

bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  static const auto real = Real<bool (*)(const Notification*, absl::Duration)>(
      "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE", true);
  const bool notified = Unannotated([&] { return real(this, timeout); });
  if (notified) __tsan_acquire(Addr(&notified_yet_));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  static const auto real = Real<bool (*)(const Notification*, absl::Time)>(
      "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE", true);
  const bool notified = Unannotated([&] { return real(this, deadline); });
  if (notified) __tsan_acquire(Addr(&notified_yet_));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
