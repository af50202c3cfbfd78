# An example kernel test loop: rebuild a kernel tree, test it, compare with the
# last good run.  Copy it beside your tree, or run it from the ktstr checkout:
#
#   make -f scripts/kernel-test-loop.mk KTREE=~/linux             # build + test + compare
#   make -f scripts/kernel-test-loop.mk KTREE=~/linux SCHED=scx_simple,eevdf
#   make -f scripts/kernel-test-loop.mk promote                   # accept the current run
#   make -f scripts/kernel-test-loop.mk KERNEL=path/to/bzImage-or-dir   # test a built kernel
#
# Each step is one ktstr tool (or the ktstr porcelain), so it can be changed
# line by line.  ktstr-kbuild caches by source identity and config fragment:
# an unchanged clean git tree is not rebuilt; a dirty tree is rebuilt
# incrementally in its out-of-tree build directory.

KTREE     ?= ../linux
# KERNEL: an already built kernel (bzImage, directory or kernel.json) to test
# instead of building KTREE.
KERNEL    ?=
RESULTS   ?= ktstr-results
TOPOLOGY  ?= 1n2l2c2t
SCHED     ?= eevdf,scx_simple
SCENARIOS ?= steady,cpuset_apply
# The ktstr tools: from $PATH when installed, else this checkout's build.
HERE      := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
KTSTR_BIN ?= $(if $(shell command -v ktstr-vmm),,$(HERE)../build/bin/)
KTSTR     ?= $(if $(KTSTR_BIN),$(HERE)ktstr,ktstr)

.PHONY: all kernel test compare promote clean
all: compare

# Always ask kbuild: it answers from its cache in milliseconds when nothing changed.
kernel:
	mkdir -p $(RESULTS)
	$(KTSTR_BIN)ktstr-kbuild $(if $(KERNEL),resolve $(KERNEL),build --source $(KTREE) --schedulers) \
	    > $(RESULTS)/kernel.json.tmp
	mv $(RESULTS)/kernel.json.tmp $(RESULTS)/kernel.json

# Exit status 1 (a verdict failed) still leaves the run for compare to read; the
# status is kept in current.status and compare fails with it afterwards.
test: kernel
	rm -rf $(RESULTS)/current $(RESULTS)/current.status
	rc=0; $(KTSTR) run --kernel $(RESULTS)/kernel.json --topology $(TOPOLOGY) --scheduler $(SCHED) \
	    --scenario $(SCENARIOS) --out $(RESULTS)/current --junit $(RESULTS)/current.junit.xml \
	    || rc=$$?; echo $$rc > $(RESULTS)/current.status; [ $$rc -le 1 ]

# A/B against the last good run (the first run has nothing to compare with), then
# the run's own verdict: make fails when either failed.
compare: test
	@rc=0; if [ -d $(RESULTS)/last-good ]; then \
	    $(KTSTR_BIN)ktstr-report compare $(RESULTS)/last-good $(RESULTS)/current || rc=$$?; \
	else echo "no $(RESULTS)/last-good yet: 'make -f $(firstword $(MAKEFILE_LIST)) promote' after a good run"; fi; \
	run=$$(cat $(RESULTS)/current.status); \
	[ "$$run" = 0 ] || echo "the run's verdict failed (ktstr run exited $$run)" >&2; \
	[ "$$rc" = 0 ] && [ "$$run" = 0 ]

promote:
	$(KTSTR_BIN)ktstr-report $(RESULTS)/current > /dev/null
	rm -rf $(RESULTS)/last-good && cp -a $(RESULTS)/current $(RESULTS)/last-good

clean:
	rm -rf $(RESULTS)
