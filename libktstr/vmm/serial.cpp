// libktstr/vmm: 16550A UART model (vm-superio semantics, vmm.md section 8).
#include "ktstr/serial.h"

namespace ktstr::vmm {

namespace {
constexpr uint8_t LCR_DLAB = 0x80;
constexpr uint8_t MCR_LOOP = 0x10;
constexpr uint8_t LSR_DR = 0x01;
constexpr uint8_t IIR_NONE = 0x01, IIR_THRE = 0x02, IIR_RX = 0x04;
constexpr uint8_t IIR_FIFO_BITS = 0xC0;
constexpr uint8_t IER_RX = 0x01, IER_THRE = 0x02;
constexpr uint8_t FCR_CLEAR_RX = 0x02;
constexpr size_t RX_FIFO = 64;
} // namespace

void Uart16550::raise(uint8_t bit) {
    if (iir_ & bit) return;   // already pending: one interrupt per condition
    iir_ = uint8_t((iir_ & ~IIR_NONE) | bit);
    if (irq_) irq_();
}

uint8_t Uart16550::read(uint8_t offset) {
    std::lock_guard<std::mutex> lk(mu_);
    switch (offset & 7) {
    case RBR_THR:
        if (lcr_ & LCR_DLAB) return uint8_t(divisor_);
        {
            iir_ = uint8_t(iir_ & ~IIR_RX);
            if (!(iir_ & (IIR_THRE | IIR_RX))) iir_ |= IIR_NONE;
            uint8_t v = 0;
            if (!rx_.empty()) {
                v = rx_.front();
                rx_.pop_front();
            }
            if (rx_.empty()) lsr_ = uint8_t(lsr_ & ~LSR_DR);
            return v;
        }
    case IER: return (lcr_ & LCR_DLAB) ? uint8_t(divisor_ >> 8) : ier_;
    case IIR_FCR: {
        uint8_t v = iir_ | IIR_FIFO_BITS;
        iir_ = IIR_NONE;   // reading IIR acknowledges the THRE interrupt
        return v;
    }
    case LCR: return lcr_;
    case MCR: return mcr_;
    case LSR: return lsr_;
    case MSR:
        if (mcr_ & MCR_LOOP) {
            // Loopback: CTS<-RTS, DSR<-DTR, RI<-OUT1, DCD<-OUT2.
            return uint8_t(((mcr_ & 0x02) << 3) | ((mcr_ & 0x01) << 5) | ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
        }
        return msr_;
    case SCR: return scr_;
    }
    return 0;
}

void Uart16550::write(uint8_t offset, uint8_t v) {
    std::lock_guard<std::mutex> lk(mu_);
    switch (offset & 7) {
    case RBR_THR:
        if (lcr_ & LCR_DLAB) {
            divisor_ = uint16_t((divisor_ & 0xFF00) | v);
        } else if (mcr_ & MCR_LOOP) {
            if (rx_.size() < RX_FIFO) rx_.push_back(v);
            lsr_ |= LSR_DR;
            if (ier_ & IER_RX) raise(IIR_RX);
        } else {
            if (out_) out_(v);
            if (ier_ & IER_THRE) raise(IIR_THRE);
        }
        break;
    case IER:
        if (lcr_ & LCR_DLAB) divisor_ = uint16_t((divisor_ & 0x00FF) | (v << 8));
        else ier_ = v & 0x0F;
        break;
    case IIR_FCR:
        if (v & FCR_CLEAR_RX) {
            rx_.clear();
            lsr_ = uint8_t(lsr_ & ~LSR_DR);
        }
        break;
    case LCR: lcr_ = v; break;
    case MCR: mcr_ = v; break;
    case LSR: break;   // factory test register: ignored
    case MSR: break;
    case SCR: scr_ = v; break;
    }
}

} // namespace ktstr::vmm
