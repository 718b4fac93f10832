/*
 * seeds_main: runs fuzz_relay's LLVMFuzzerTestOneInput on each file named
 * on the command line, as libFuzzer would, for a build without libFuzzer
 * (gcc -fsanitize=address,undefined in make test). Exit 0 when every
 * input ran; a sanitizer or abort() ends it otherwise.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	static uint8_t buf[200000];
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		if (f == NULL) {
			perror(argv[i]);
			return 2;
		}
		size_t n = fread(buf, 1, sizeof buf, f);
		fclose(f);
		LLVMFuzzerTestOneInput(buf, n);
	}
	printf("%d inputs\n", argc - 1);
	return 0;
}
