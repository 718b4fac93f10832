#!/bin/sh
# make fuzz: the module's frame parser and relay loop (fuzz_relay.c) under
# libFuzzer with ASan and UBSan, then every Go fuzz target, FUZZTIME
# seconds each. clang and libFuzzer are installed here when root and
# missing. New inputs that libFuzzer finds go to build/fuzz/corpus (the
# committed seeds in pam/fuzz/corpus stay as they are); a crash stops the
# run and leaves its input in build/fuzz.
set -eu
FUZZTIME=${FUZZTIME:-60}
cd "$(dirname "$0")/../.."
# The go command: $GO when set, else the one make put first on PATH, else
# the same search make does (sudo's PATH has no /usr/local/go/bin).
GO=$(scripts/find-go.sh) || exit 1
PATH=$(dirname "$GO"):$PATH
export PATH

clang=$(command -v clang || true)
if [ -z "$clang" ] || ! "$clang" -print-file-name=libclang_rt.fuzzer-x86_64.a | grep -q /; then
	if [ "$(id -u)" = 0 ]; then
		echo "fuzz: installing clang and libFuzzer" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null
		clang=$(command -v clang)
	else
		echo "fuzz: needs clang and libFuzzer (apt-get install clang libclang-rt-14-dev)" >&2
		exit 1
	fi
fi

mkdir -p build/fuzz/corpus
"$clang" -g -O1 -std=c99 -D_GNU_SOURCE -Wall -Wextra -Werror \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-o build/fuzz/fuzz_relay pam/fuzz/fuzz_relay.c -lpam
echo "fuzz: fuzz_relay for ${FUZZTIME}s" >&2
build/fuzz/fuzz_relay -max_total_time="$FUZZTIME" -max_len=70000 -timeout=10 \
	-artifact_prefix=build/fuzz/ build/fuzz/corpus pam/fuzz/corpus

# Go: one target at a time (go test -fuzz takes one).
for f in $(grep -l '^func Fuzz' $(git ls-files '*_test.go')); do
	pkg=./$(dirname "$f")
	for name in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$f"); do
		echo "fuzz: $pkg $name for ${FUZZTIME}s" >&2
		"$GO" test -run='^$' -fuzz="^$name\$" -fuzztime="${FUZZTIME}s" "$pkg"
	done
done
