// Package dockertest holds the test of otpgate's Docker image (all in
// _test.go files): it builds the image from contrib/docker/Dockerfile the
// way `make docker` does (contrib/docker/build.sh), starts a container
// with --network none, and inside it logs in over the container's own
// loopback with the real OpenSSH client (run with docker exec) and runs
// sudo: a key and a code let a user in, a wrong code, a replayed code and
// a code without a key do not, five wrong codes lock the account, sudo
// asks for the password and then the code, and every attempt line is in
// `docker logs`. Nothing outside the container is contacted.
//
// It needs the docker command and a Docker daemon. When no daemon
// answers and the test runs as root, it starts one (scripts/debian-base.sh
// --dockerd: dockerd --bridge=none --iptables=false, which outlives the
// test). Without docker it skips and says why, unless OTPGATE_REQUIRE_TOOLS
// is set (scripts/test.sh sets it for root), and then it fails.
//
//	go test -count=1 -v ./internal/dockertest/    # as root
//
// Where no registry answers, the base image is made once with debootstrap
// (otpgate-base:bookworm) and kept; the image's layers are cached by
// Docker, so only the first run on a machine pays for them.
//
// What it leaves: the images otpgate-base:bookworm (when made) and
// otpgate:dockertest, and build/docker/ in the working tree. Its
// containers (otpgate-dockertest-XXXXXX) and their volumes are removed
// when the test ends.
package dockertest
