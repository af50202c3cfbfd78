// libktstr/util: integer arithmetic that clamps instead of overflowing.
// Counters read from a guest or an input file are untrusted: summing or
// differencing them must not be undefined behaviour (UBSan aborts on it).
#pragma once

#include <limits>

namespace ktstr {

template <typename T> T saturating_add(T a, T b) {
    T r;
    if (!__builtin_add_overflow(a, b, &r)) return r;
    return b > T(0) ? std::numeric_limits<T>::max() : std::numeric_limits<T>::min();
}

// For unsigned T this clamps at 0.
template <typename T> T saturating_sub(T a, T b) {
    T r;
    if (!__builtin_sub_overflow(a, b, &r)) return r;
    return b < T(0) ? std::numeric_limits<T>::max() : std::numeric_limits<T>::min();
}

} // namespace ktstr
