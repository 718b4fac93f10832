#!/bin/sh
# A program the user put first in PATH (internal/pamtest/hostile_test.go):
# it leaves a marker named for who ran it and under what name.
: >"MARK_DIR/path-$(id -u)-$(basename "$0")-$$"
exit 0
