// Unit tests for libktstr/vmm 16550A UART and i8042 (vmm.md sections 8, 16).
#include <doctest/doctest.h>

#include <string>

#include "ktstr/serial.h"

using namespace ktstr::vmm;
using U = Uart16550;

namespace {
struct Rig {
    std::string out;
    int irqs = 0;
    Uart16550 uart{[this](uint8_t b) { out.push_back(char(b)); }, [this] { ++irqs; }};
};
} // namespace

TEST_CASE("16550 reset state") {
    Rig r;
    CHECK(r.uart.read(U::LSR) == 0x60);
    CHECK(r.uart.read(U::IIR_FCR) == 0xC1);   // no interrupt pending, FIFOs "enabled"
    CHECK(r.uart.read(U::LCR) == 0x03);
    CHECK(r.uart.read(U::MCR) == 0x08);
    CHECK(r.uart.read(U::MSR) == 0xB0);
    CHECK(r.uart.read(U::IER) == 0);
    CHECK(r.uart.read(U::SCR) == 0);
}

TEST_CASE("16550 transmit and THRE interrupts") {
    Rig r;
    r.uart.write(U::RBR_THR, 'h');
    r.uart.write(U::RBR_THR, 'i');
    CHECK(r.out == "hi");
    CHECK(r.irqs == 0);                      // IER clear: polled
    r.uart.write(U::IER, 0xFF);
    CHECK(r.uart.read(U::IER) == 0x0F);      // only the four defined bits
    CHECK(r.irqs == 0);                      // writing IER raises nothing
    r.uart.write(U::RBR_THR, 'x');
    CHECK(r.irqs == 1);
    r.uart.write(U::RBR_THR, 'y');
    CHECK(r.irqs == 1);                      // still pending: one IRQ per pending THRE
    CHECK(r.uart.read(U::IIR_FCR) == 0xC2);  // THRE pending; reading acknowledges
    CHECK(r.uart.read(U::IIR_FCR) == 0xC1);
    r.uart.write(U::RBR_THR, 'z');
    CHECK(r.irqs == 2);
    CHECK(r.out == "hixyz");
}

TEST_CASE("16550 divisor latch round trip") {
    Rig r;
    r.uart.write(U::LCR, 0x83);
    r.uart.write(U::RBR_THR, 0x01);
    r.uart.write(U::IER, 0x02);
    CHECK(r.uart.read(U::RBR_THR) == 0x01);
    CHECK(r.uart.read(U::IER) == 0x02);
    r.uart.write(U::LCR, 0x03);
    CHECK(r.uart.read(U::IER) == 0);         // the real IER was not touched
    CHECK(r.out.empty());
    r.uart.write(U::LCR, 0x80);
    CHECK(r.uart.read(U::RBR_THR) == 0x01);  // latch kept
}

TEST_CASE("16550 loopback: MSR mirror and RX FIFO") {
    Rig r;
    r.uart.write(U::MCR, 0x1A);              // LOOP | OUT2 | RTS
    CHECK(r.uart.read(U::MSR) == 0x90);      // DCD | CTS
    r.uart.write(U::MCR, 0x1F);
    CHECK(r.uart.read(U::MSR) == 0xF0);
    r.uart.write(U::IER, 0x01);              // RX interrupt
    r.uart.write(U::RBR_THR, 0x55);
    CHECK(r.out.empty());                    // looped back, not emitted
    CHECK(r.irqs == 1);
    CHECK((r.uart.read(U::LSR) & 1) == 1);
    r.uart.write(U::RBR_THR, 0x66);
    CHECK(r.irqs == 1);
    CHECK(r.uart.read(U::RBR_THR) == 0x55);
    CHECK((r.uart.read(U::LSR) & 1) == 1);
    CHECK(r.uart.read(U::RBR_THR) == 0x66);
    CHECK((r.uart.read(U::LSR) & 1) == 0);
    CHECK(r.uart.read(U::RBR_THR) == 0);     // empty FIFO reads 0
    // FCR bit 1 flushes the receive FIFO.
    r.uart.write(U::RBR_THR, 0x77);
    r.uart.write(U::IIR_FCR, 0x02);
    CHECK((r.uart.read(U::LSR) & 1) == 0);
    // 64-byte FIFO: the 65th byte is dropped.
    for (int i = 0; i < 70; ++i) r.uart.write(U::RBR_THR, uint8_t(i));
    for (int i = 0; i < 64; ++i) CHECK(r.uart.read(U::RBR_THR) == i);
    CHECK((r.uart.read(U::LSR) & 1) == 0);
}

TEST_CASE("16550 scratch register") {
    Rig r;
    r.uart.write(U::SCR, 0xA5);
    CHECK(r.uart.read(U::SCR) == 0xA5);
}

TEST_CASE("i8042 reset") {
    CHECK(i8042_is_reset(0x64, 0xFE));
    CHECK_FALSE(i8042_is_reset(0x64, 0xFF));
    CHECK_FALSE(i8042_is_reset(0x60, 0xFE));
}
