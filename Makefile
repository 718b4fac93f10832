# otpgate build, test and install. See README.md; make help lists the
# targets.

# The go command. scripts/find-go.sh finds one new enough for go.mod even
# under sudo, whose secure_path drops /usr/local/go/bin (go on PATH,
# $GOROOT, /usr/local/go/bin, the sudo user's, /usr/lib/go*, snap); the
# targets that need Go depend on go-found, which stops with what to
# install when there is none. GO=/path/to/go overrides. Its directory goes
# first on PATH for every recipe, so that the scripts, go test, the tests'
# own go build and gofmt all use this Go.
ifeq ($(origin GO),undefined)
GO := $(shell scripts/find-go.sh 2>/dev/null)
endif
GODIR := $(patsubst %/,%,$(dir $(filter /%,$(GO))))
export PATH := $(if $(GODIR),$(GODIR):)$(PATH)
# The version otpgate --version prints, linked in with -X: git describe
# of this tree, else the first line of a VERSION file (a release
# tarball), else "devel". A package build passes its own: make
# VERSION=1.0.0-1.
ifeq ($(origin VERSION),undefined)
VERSION := $(shell { [ -e .git ] && git -c safe.directory='*' describe --tags --always --dirty 2>/dev/null; } || head -n1 VERSION 2>/dev/null || echo devel)
endif
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
# otpgate-db, the otpgate command with the PostgreSQL client: otpgate runs
# it for db, --dsn and doctor on a postgres host (docs/postgres.md), so
# that otpgate itself starts without the client. Compiled into otpgate.
DBPROG   = $(dir $(HELPER))otpgate-db
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
GOFLAGS_BUILD = -trimpath -ldflags='-s -w -X github.com/otpgate/otpgate/internal/helper.InstalledPath=$(LAUNCHER) -X github.com/otpgate/otpgate/internal/helper.SocketPath=$(SOCKET) -X github.com/otpgate/otpgate/internal/cli.DBProgram=$(DBPROG) -X github.com/otpgate/otpgate/internal/version.Version=$(VERSION)'
# root:root when installing as root; a packager's unprivileged DESTDIR
# install leaves ownership to the packaging tool (fakeroot).
OWNER   = $(shell [ "$$(id -u)" = 0 ] && echo "-o root -g root")

# Plain make builds everything: bin/otpgate, bin/otpgate-db, bin/otpgate-helper,
# build/pam_otpgate.so and build/otpgate-launch-helper.
.DEFAULT_GOAL := all

FORCE:

.PHONY: deb man
.PHONY: FORCE demo all go pam test test-go test-deps bench fuzz install uninstall clean fmt vet help go-found pam-found version

all: go $(if $(wildcard pam/pam_otpgate.c),pam)

go: go-found
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/ ./cmd/...
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -tags postgres -o bin/otpgate-helper-pg ./cmd/otpgate-helper

# Stops, saying what to install, when no go command was found.
go-found:
	@[ -n "$(GO)" ] || scripts/find-go.sh >/dev/null

version:
	@echo $(VERSION)

# Stops, saying what to install, when there is no C compiler or no PAM
# headers.
pam-found:
	@command -v $(firstword $(CC)) >/dev/null || { echo "otpgate: error: no C compiler ($(CC)); install gcc (apt install gcc)" >&2; exit 1; }
	@echo '#include <security/pam_modules.h>' | $(CC) -E - >/dev/null 2>&1 || { echo "otpgate: error: no PAM headers (security/pam_modules.h); install libpam0g-dev (apt install libpam0g-dev)" >&2; exit 1; }

help:
	@echo 'make [TARGET] [VARIABLE=value ...]   (as root where it says so)'
	@echo ''
	@echo '  all (default) build bin/otpgate, bin/otpgate-db, bin/otpgate-helper, build/pam_otpgate.so, build/otpgate-launch-helper'
	@echo '  go            build bin/otpgate, bin/otpgate-db and bin/otpgate-helper only'
	@echo '  pam           build build/pam_otpgate.so and build/otpgate-launch-helper only'
	@echo '  test          every test: go vet, gofmt, go test -race (as root: apt-get installs what they need)'
	@echo '  test-deps     as root, apt-get install the packages the tests use'
	@echo '  demo          root: a throwaway sshd on 127.0.0.1:2222 with otpgate in front and a demo user'
	@echo '  docker        build the Docker image otpgate:latest (sshd + sudo + otpgate; contrib/docker/README.md)'
	@echo '  install       root: install into PREFIX (/usr/local) and the PAM directory; DESTDIR for staging'
	@echo '  uninstall     root: remove what install put in place'
	@echo '  man           the manual pages, docs/man/*.md through go-md2man into build/man/'
	@echo '  deb           the Debian package dist/otpgate_<version>_<arch>.deb (nfpm; docs/packaging.md)'
	@echo '  bench         benchmarks (as root also pamtester against google-authenticator-libpam)'
	@echo '  fuzz          the module under libFuzzer, then every Go fuzz target, FUZZTIME=$(FUZZTIME) seconds each'
	@echo '  vet           go vet ./...'
	@echo '  fmt           gofmt -w .'
	@echo '  clean         remove bin/ and build/'
	@echo '  version       print the version built in (VERSION=$(VERSION))'
	@echo '  help          this list'
	@echo ''
	@echo 'Variables: GO=$(or $(GO),(none found)) VERSION PREFIX=$(PREFIX) DESTDIR PAMDIR=$(PAMDIR) CC=$(CC) CFLAGS FUZZTIME'

pam: build/pam_otpgate.so build/otpgate-launch-helper

# The module is rebuilt when HELPER (PREFIX) or SOCKET changes, not only
# its sources.
build/helper-path: FORCE
	@mkdir -p build
	@echo '$(HELPER) $(SOCKET)' | cmp -s - $@ || echo '$(HELPER) $(SOCKET)' > $@

build/pam_otpgate.so: pam/pam_otpgate.c $(wildcard pam/*.h) pam/exports.map build/helper-path | pam-found
	$(CC) $(PAM_CFLAGS) -shared -Wl,--version-script=pam/exports.map -o $@ pam/pam_otpgate.c -lpam

build/otpgate-launch-helper: pam/otpgate-launch-helper.c pam/harden.h pam/safepath.h build/helper-path | pam-found
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
fuzz: go-found
	FUZZTIME=$(FUZZTIME) GO=$(GO) pam/fuzz/run.sh

vet: go-found
	$(GO) vet ./...

fmt: go-found
	gofmt -w .

# The module, otpgate, the helper (root only runs it) and the launcher
# setuid root (self-service for normal users, PAM hosts that run as the
# user). The module runs either only if it and every directory above it
# are root-owned and not group- or world-writable.
install: all man
	install -d $(OWNER) -m 0755 $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(dir $(HELPER)) $(DESTDIR)$(PAMDIR)
	install -d $(OWNER) -m 0755 $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install $(OWNER) -m 0644 build/man/otpgate.1 $(DESTDIR)$(MANDIR)/man1/
	install $(OWNER) -m 0644 build/man/otpgate.toml.5 $(DESTDIR)$(MANDIR)/man5/
	install $(OWNER) -m 0644 build/man/pam_otpgate.8 build/man/otpgate-helper.8 $(DESTDIR)$(MANDIR)/man8/
	install $(OWNER) -m 0755 bin/otpgate $(DESTDIR)$(PREFIX)/bin/otpgate
	install $(OWNER) -m 0755 bin/otpgate-helper $(DESTDIR)$(HELPER)
	install $(OWNER) -m 0755 bin/otpgate-helper-pg $(DESTDIR)$(dir $(HELPER))otpgate-helper-pg
	install $(OWNER) -m 0755 bin/otpgate-db $(DESTDIR)$(DBPROG)
	install $(OWNER) -m 4755 build/otpgate-launch-helper $(DESTDIR)$(LAUNCHER)
	install $(OWNER) -m 0644 build/pam_otpgate.so $(DESTDIR)$(PAMDIR)/pam_otpgate.so
	if [ -n "$(UNITDIR)" ]; then \
		install -d $(OWNER) -m 0755 $(DESTDIR)$(UNITDIR) && \
		install $(OWNER) -m 0644 contrib/systemd/otpgate-helper.socket $(DESTDIR)$(UNITDIR)/ && \
		sed 's|/usr/local/libexec/otpgate/otpgate-helper|$(HELPER)|' contrib/systemd/otpgate-helper.service > $(DESTDIR)$(UNITDIR)/otpgate-helper.service && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/otpgate-helper.service; \
	fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/otpgate $(DESTDIR)$(HELPER) $(DESTDIR)$(dir $(HELPER))otpgate-helper-pg $(DESTDIR)$(LAUNCHER) $(DESTDIR)$(DBPROG) $(DESTDIR)$(PAMDIR)/pam_otpgate.so
	[ -z "$(UNITDIR)" ] || rm -f $(DESTDIR)$(UNITDIR)/otpgate-helper.socket $(DESTDIR)$(UNITDIR)/otpgate-helper.service
	-rmdir $(DESTDIR)$(dir $(HELPER)) 2>/dev/null
	rm -f $(DESTDIR)$(MANDIR)/man1/otpgate.1 $(DESTDIR)$(MANDIR)/man5/otpgate.toml.5 $(DESTDIR)$(MANDIR)/man8/pam_otpgate.8 $(DESTDIR)$(MANDIR)/man8/otpgate-helper.8

clean:
	rm -rf bin build

# The manual pages: docs/man/*.md through go-md2man (go tool) into
# build/man/; make install puts them under MANDIR.
MANDIR ?= $(PREFIX)/share/man
MAN_PAGES = build/man/otpgate.1 build/man/otpgate.toml.5 build/man/pam_otpgate.8 build/man/otpgate-helper.8

man: $(MAN_PAGES)

build/man/%: docs/man/%.md | go-found
	@mkdir -p build/man
	sed 's/@VERSION@/$(VERSION)/g' $< | $(GO) tool go-md2man > $@.tmp && mv $@.tmp $@

# The Debian package, dist/otpgate_<version>_<arch>.deb, built with nfpm
# (go tool nfpm) from contrib/debian/nfpm.yaml: make install stages the
# files with the package's paths (PREFIX=/usr, the multiarch PAM
# directory), then nfpm packs them. See docs/packaging.md. A Debian
# version starts with a digit: v1.2-3-gabc becomes 1.2+3+gabc, a bare
# commit abc (no tag yet) 0~abc.
DEB_ARCH      ?= $(shell dpkg --print-architecture 2>/dev/null || $(GO) env GOARCH)
DEB_MULTIARCH ?= $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
DEB_VERSION   ?= $(shell v='$(patsubst v%,%,$(VERSION))'; case "$$v" in ([0-9]*.*) ;; (*) v="0~$$v" ;; esac; echo "$$v" | tr -- - +)
DEB_MAINTAINER ?= $(shell git log -1 --format='%an <%ae>' 2>/dev/null)
DEB_FILE       = dist/otpgate_$(DEB_VERSION)_$(DEB_ARCH).deb

deb: go-found build/deb/config.toml
	rm -rf build/deb/root
	@# The C programs are rebuilt with the package's paths and flags.
	rm -f build/pam_otpgate.so build/otpgate-launch-helper
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/build/deb/root PREFIX=/usr MANDIR=/usr/share/man \
		PAMDIR=/usr/lib/$(DEB_MULTIARCH)/security UNITDIR=/lib/systemd/system VERSION=$(DEB_VERSION) \
		CFLAGS='$(CFLAGS) -D_FORTIFY_SOURCE=2'
	strip --strip-unneeded --remove-section=.comment --remove-section=.note build/deb/root/usr/lib/$(DEB_MULTIARCH)/security/pam_otpgate.so
	strip --remove-section=.comment --remove-section=.note build/deb/root/usr/libexec/otpgate/otpgate-launch-helper
	gzip -9nf build/deb/root/usr/share/man/man*/*
	{ echo 'otpgate ($(DEB_VERSION)) unstable; urgency=medium'; echo; \
	  echo '  * Built by make deb from $(VERSION).'; echo; \
	  echo ' -- $(DEB_MAINTAINER)  '"$$(git log -1 --format=%aD 2>/dev/null || date -R)"; } | gzip -9n > build/deb/changelog.gz
	@mkdir -p dist
	DEB_VERSION='$(DEB_VERSION)' DEB_ARCH='$(DEB_ARCH)' DEB_MULTIARCH='$(DEB_MULTIARCH)' DEB_MAINTAINER='$(DEB_MAINTAINER)' \
		DEB_HOMEPAGE='' DEB_LICENSE='not yet stated' \
		$(GO) tool nfpm package --config contrib/debian/nfpm.yaml --packager deb --target $(DEB_FILE)
	@echo "make deb: $(DEB_FILE)"

# The package's /etc/otpgate/config.toml: contrib/config.toml with every
# key commented out, so each shows its default and a later default still
# applies where the administrator changed nothing.
build/deb/config.toml: contrib/config.toml
	@mkdir -p build/deb
	sed 's/^\([a-z_]* *=\)/#\1/' contrib/config.toml > $@

# The image otpgate:latest (contrib/docker/Dockerfile, from make deb's
# package); a Docker daemon is started and a Debian base made with
# debootstrap when needed (root). See contrib/docker/README.md.
.PHONY: docker
docker:
	contrib/docker/build.sh

# A throwaway sshd on 127.0.0.1:2222 with otpgate in front and a demo user (root):
# in a container of the image above when a Docker daemon answers
# (scripts/demo-docker.sh), else on this machine (scripts/demo.sh).
# DEMO=docker or DEMO=local chooses.
demo:
	@if [ "$(DEMO)" = docker ] || { [ "$(DEMO)" != local ] && docker info >/dev/null 2>&1; }; then \
		scripts/demo-docker.sh; else scripts/demo.sh; fi
