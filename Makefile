# otpgate build, test and install. See README.md.

GO      ?= go
CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
CFLAGS  ?= -O2 -g
PAM_CFLAGS = -fPIC -Wall -Wextra -Werror -std=c99 -D_GNU_SOURCE $(CFLAGS)
# The system's PAM module directory, multiarch-aware (Debian:
# /usr/lib/x86_64-linux-gnu/security; elsewhere /usr/lib/security or
# /lib/security). Override with PAMDIR=.
PAMDIR  ?= $(shell for d in /usr/lib/$$(gcc -print-multiarch 2>/dev/null)/security /lib/$$(gcc -print-multiarch 2>/dev/null)/security /usr/lib64/security /usr/lib/security /lib/security; do [ -d "$$d" ] && { echo $$d; break; }; done)
GOFLAGS_BUILD = -trimpath -ldflags='-s -w'

.PHONY: demo all go pam test test-go test-deps bench install uninstall clean fmt vet

all: go $(if $(wildcard pam/pam_otpgate.c),pam)

go:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/ ./cmd/...

pam: build/pam_otpgate.so

build/pam_otpgate.so: $(wildcard pam/*.c pam/*.h pam/*.map)
	@mkdir -p build
	$(CC) $(PAM_CFLAGS) -shared -Wl,--version-script=pam/exports.map -o $@ pam/pam_otpgate.c -lpam

# Installs what the tests need when run as root, then runs every test.
test: test-deps all
	scripts/test.sh

test-deps:
	scripts/test-deps.sh

bench: test-deps all
	scripts/bench.sh

vet:
	$(GO) vet ./...

fmt:
	gofmt -w .

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 bin/otpgate $(DESTDIR)$(PREFIX)/bin/otpgate

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/otpgate

clean:
	rm -rf bin build

# Enroll a demo user in a throwaway store and check codes interactively.
demo:
	scripts/demo.sh
