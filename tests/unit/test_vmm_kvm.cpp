// Unit tests for libktstr/vmm KVM wrappers and the speed probe.
#include <doctest/doctest.h>

#include <unistd.h>

#include "ktstr/kvm.h"

using namespace ktstr;
using namespace ktstr::vmm;

TEST_CASE("kvm speed probe measures or explains") {
    KvmSpeed s = kvm_speed_probe(10);
    CHECK(s.threshold == KVM_HARDWARE_SPEED_THRESHOLD);
    CHECK_FALSE(s.reason.empty());
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        CHECK_FALSE(s.available);
        CHECK_FALSE(s.hardware_speed);
        CHECK(s.reason.find("KVM unusable") == 0);
        return;
    }
    REQUIRE(s.available);
    // The loop ran for at least the requested time and executed something.
    CHECK(s.measured_ms >= 10.0);
    CHECK(s.instructions_per_second > 0);
    CHECK(s.hardware_speed == (s.instructions_per_second >= s.threshold));
    CHECK(s.reason.find("guest instructions/s") != std::string::npos);
}
