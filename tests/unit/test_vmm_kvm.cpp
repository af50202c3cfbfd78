// Unit tests for libktstr/vmm KVM wrappers and the speed probe.
#include <doctest/doctest.h>

#include <cstring>
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

TEST_CASE("flexible-array ioctls: the C layout and numbers, whatever the headers do in C++") {
    // The numbers the kernel dispatches on (computed with an 8-byte header, as C does).
    CHECK(IOCTL_GET_SUPPORTED_CPUID == 0xC008AE05ul);
    CHECK(IOCTL_SET_CPUID2 == 0x4008AE90ul);
    CHECK(IOCTL_SET_MSRS == 0x4008AE89ul);
    std::vector<kvm_cpuid_entry2> cpuid(2);
    cpuid[1].function = 0xB;
    cpuid[1].index = 1;
    cpuid[1].ebx = 0x12345678;
    std::vector<uint8_t> c = cpuid2_buffer(cpuid);
    REQUIRE(c.size() == 8 + 2 * sizeof(kvm_cpuid_entry2));
    CHECK(c[0] == 2);                                 // nent
    CHECK((c[1] | c[2] | c[3] | c[4] | c[5] | c[6] | c[7]) == 0);   // padding
    kvm_cpuid_entry2 e1{};
    std::memcpy(&e1, c.data() + 8 + sizeof(kvm_cpuid_entry2), sizeof e1);
    CHECK(e1.function == 0xB);
    CHECK(e1.ebx == 0x12345678);
    std::vector<kvm_msr_entry> msrs(1);
    msrs[0].index = 0xC0000080;
    msrs[0].data = 0x500;
    std::vector<uint8_t> m = msrs_buffer(msrs);
    REQUIRE(m.size() == 8 + sizeof(kvm_msr_entry));
    CHECK(m[0] == 1);
    kvm_msr_entry m0{};
    std::memcpy(&m0, m.data() + 8, sizeof m0);
    CHECK(m0.index == 0xC0000080);
    CHECK(m0.data == 0x500);
    CHECK(cpuid2_buffer({}).size() == 8);
}
