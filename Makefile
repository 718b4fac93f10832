# otpgate build, test and install. See README.md.

GO      ?= go
CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
CFLAGS  ?= -O2 -g
# Where make install puts the helper (root runs it: not setuid) and the
# setuid-root launcher next to it, through which a normal user reaches it.
# HELPER is compiled into the module and the launcher, LAUNCHER into
# otpgate, so that none takes a path from anywhere at run time. The module
# finds the launcher in the helper's directory.
HELPER   = $(PREFIX)/libexec/otpgate/otpgate-helper
LAUNCHER = $(dir $(HELPER))otpgate-launch-helper
# The daemon's socket (otpgate-helper --serve), tried before exec by the
# module and otpgate; compiled in like the paths above.
SOCKET   = /run/otpgate/helper.sock
# Where make install puts the systemd units (when systemd is there).
UNITDIR ?= $(shell [ -d /lib/systemd/system ] && echo /lib/systemd/system)
WARN_CFLAGS = -Wall -Wextra -Werror -std=c99 -D_GNU_SOURCE -DOTPGATE_HELPER='"$(HELPER)"' -DOTPGATE_SOCKET='"$(SOCKET)"'
PAM_CFLAGS = -fPIC $(WARN_CFLAGS) $(CFLAGS)
# internal/pamtest/build.go builds the launcher with these flags too.
LAUNCH_CFLAGS = -fPIE -fstack-protector-strong $(WARN_CFLAGS) $(CFLAGS)
LAUNCH_LDFLAGS = -pie -Wl,-z,relro,-z,now
# make fuzz: seconds per fuzz target.
FUZZTIME ?= 60
# The system's PAM module directory, multiarch-aware (Debian:
# /usr/lib/x86_64-linux-gnu/security; elsewhere /usr/lib/security or
# /lib/security). Override with PAMDIR=.
PAMDIR  ?= $(shell for d in /usr/lib/$$(gcc -print-multiarch 2>/dev/null)/security /lib/$$(gcc -print-multiarch 2>/dev/null)/security /usr/lib64/security /usr/lib/security /lib/security; do [ -d "$$d" ] && { echo $$d; break; }; done)
GOFLAGS_BUILD = -trimpath -ldflags='-s -w -X github.com/otpgate/otpgate/internal/helper.InstalledPath=$(LAUNCHER) -X github.com/otpgate/otpgate/internal/helper.SocketPath=$(SOCKET)'
# root:root when installing as root; a packager's unprivileged DESTDIR
# install leaves ownership to the packaging tool (fakeroot).
OWNER   = $(shell [ "$$(id -u)" = 0 ] && echo "-o root -g root")

FORCE:

.PHONY: FORCE demo all go pam test test-go test-deps bench fuzz install uninstall clean fmt vet

all: go $(if $(wildcard pam/pam_otpgate.c),pam)

go:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/ ./cmd/...

pam: build/pam_otpgate.so build/otpgate-launch-helper

# The module is rebuilt when HELPER (PREFIX) or SOCKET changes, not only
# its sources.
build/helper-path: FORCE
	@mkdir -p build
	@echo '$(HELPER) $(SOCKET)' | cmp -s - $@ || echo '$(HELPER) $(SOCKET)' > $@

build/pam_otpgate.so: pam/pam_otpgate.c $(wildcard pam/*.h) pam/exports.map build/helper-path
	$(CC) $(PAM_CFLAGS) -shared -Wl,--version-script=pam/exports.map -o $@ pam/pam_otpgate.c -lpam

build/otpgate-launch-helper: pam/otpgate-launch-helper.c pam/harden.h pam/safepath.h build/helper-path
	$(CC) $(LAUNCH_CFLAGS) $(LAUNCH_LDFLAGS) -o $@ pam/otpgate-launch-helper.c

# Installs what the tests need when run as root, then runs every test.
test: test-deps all
	scripts/test.sh

test-deps:
	scripts/test-deps.sh

bench: test-deps all
	scripts/bench.sh

# The module's frame parser under libFuzzer (clang; installed here when
# root and missing), then each Go fuzz target, FUZZTIME seconds each.
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) pam/fuzz/run.sh

vet:
	$(GO) vet ./...

fmt:
	gofmt -w .

# The module, otpgate, the helper (root only runs it) and the launcher
# setuid root (self-service for normal users, PAM hosts that run as the
# user). The module runs either only if it and every directory above it
# are root-owned and not group- or world-writable.
install: all
	install -d $(OWNER) -m 0755 $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(dir $(HELPER)) $(DESTDIR)$(PAMDIR)
	install $(OWNER) -m 0755 bin/otpgate $(DESTDIR)$(PREFIX)/bin/otpgate
	install $(OWNER) -m 0755 bin/otpgate-helper $(DESTDIR)$(HELPER)
	install $(OWNER) -m 4755 build/otpgate-launch-helper $(DESTDIR)$(LAUNCHER)
	install $(OWNER) -m 0644 build/pam_otpgate.so $(DESTDIR)$(PAMDIR)/pam_otpgate.so
	if [ -n "$(UNITDIR)" ]; then \
		install -d $(OWNER) -m 0755 $(DESTDIR)$(UNITDIR) && \
		install $(OWNER) -m 0644 contrib/systemd/otpgate-helper.socket $(DESTDIR)$(UNITDIR)/ && \
		sed 's|/usr/local/libexec/otpgate/otpgate-helper|$(HELPER)|' contrib/systemd/otpgate-helper.service > $(DESTDIR)$(UNITDIR)/otpgate-helper.service && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/otpgate-helper.service; \
	fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/otpgate $(DESTDIR)$(HELPER) $(DESTDIR)$(LAUNCHER) $(DESTDIR)$(PAMDIR)/pam_otpgate.so
	[ -z "$(UNITDIR)" ] || rm -f $(DESTDIR)$(UNITDIR)/otpgate-helper.socket $(DESTDIR)$(UNITDIR)/otpgate-helper.service
	-rmdir $(DESTDIR)$(dir $(HELPER)) 2>/dev/null

clean:
	rm -rf bin build

# A throwaway sshd on 127.0.0.1:2222 with otpgate in front and a demo user (root).
demo:
	scripts/demo.sh
