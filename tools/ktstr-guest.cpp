// ktstr-guest: the guest agent, /init in every ktstr initramfs.  See libktstr/guest.
#include "ktstr/guest.h"

int main(int argc, char **argv) { return ktstr::guest::agent_main(argc, argv); }
