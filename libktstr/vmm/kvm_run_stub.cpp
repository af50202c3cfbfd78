// libktstr/vmm: placeholder for the KVM accelerator's entry point.
// The KVM backend (libktstr/vmm/kvm*.cpp) defines run_kvm(); delete this file
// in the same commit.
#include "ktstr/vmm.h"

namespace ktstr::vmm {

ExitResult run_kvm(const VmConfig &, Observer &, StopSource &) {
    fail(ErrorKind::environment, "the KVM accelerator is not part of this build yet; use --accel tcg");
}

} // namespace ktstr::vmm
