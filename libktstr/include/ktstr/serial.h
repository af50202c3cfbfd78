// libktstr/vmm: the legacy port devices of the KVM machine.
//
//   Uart16550  a 16550A UART with the register behaviour Linux's 8250 driver
//              probes for (vmm.md section 8); COM1 0x3F8 (console, IRQ 4),
//              COM2 0x2F8 (results, IRQ 3).  Output bytes go to a sink, the
//              interrupt line to a callback (an irqfd write under KVM).
//   i8042      only what ends a run: OUT 0x64 <- 0xFE (pulse reset) = reboot.
//
// Both are pure state machines (no KVM), unit-tested register by register.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>

namespace ktstr::vmm {

inline constexpr uint16_t COM1_PORT = 0x3F8, COM2_PORT = 0x2F8;
inline constexpr uint32_t COM1_IRQ = 4, COM2_IRQ = 3;

class Uart16550 {
public:
    using Sink = std::function<void(uint8_t)>;
    using Irq = std::function<void()>;
    Uart16550(Sink out, Irq irq) : out_(std::move(out)), irq_(std::move(irq)) {}

    // offset 0..7 from the base port.  Thread-safe.
    uint8_t read(uint8_t offset);
    void write(uint8_t offset, uint8_t value);

    // Register names (offsets) and bits used by the driver.
    enum : uint8_t { RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

private:
    void raise(uint8_t iir_bit);   // THRE 0x02, RX 0x04
    std::mutex mu_;
    Sink out_;
    Irq irq_;
    uint8_t ier_ = 0, iir_ = 0x01, lcr_ = 0x03, mcr_ = 0x08, lsr_ = 0x60, msr_ = 0xB0, scr_ = 0;
    uint16_t divisor_ = 12;
    std::deque<uint8_t> rx_;
};

// i8042 keyboard controller ports 0x60/0x64: reads 0; the pulse-reset
// command 0xFE written to 0x64 means "reboot" (Linux reboot=k).
inline constexpr uint16_t I8042_DATA_PORT = 0x60, I8042_COMMAND_PORT = 0x64;
inline constexpr uint8_t I8042_RESET_COMMAND = 0xFE;
inline bool i8042_is_reset(uint16_t port, uint8_t value) {
    return port == I8042_COMMAND_PORT && value == I8042_RESET_COMMAND;
}

} // namespace ktstr::vmm
