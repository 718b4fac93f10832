package sshcheck

import (
	"errors"
	"io"
	"testing"

	"github.com/otpgate/otpgate/internal/helper"
)

// TestUIPrompts: the code prompt is answered once, with sshcheck's own
// text; any other prompt (first-login enrollment) only with a terminal to
// show it on, and at most maxPrompts questions in all.
func TestUIPrompts(t *testing.T) {
	answer := func() (string, error) { return " 123456 ", nil }
	const screen = "otpauth://...\nEnter the 6-digit code the app shows: "

	u := &ui{answer: answer, stderr: io.Discard}
	if a, err := u.Prompt(helper.DefaultPrompt, false); err != nil || a != "123456" {
		t.Fatalf("code prompt: %q %v", a, err)
	}
	if _, err := u.Prompt(helper.DefaultPrompt, false); !errors.Is(err, errSecondPrompt) {
		t.Fatalf("second code prompt: %v", err)
	}
	// No terminal: an enrollment screen is never answered from
	// OTPGATE_CODE.
	u = &ui{answer: answer, stderr: io.Discard}
	if _, err := u.Prompt(screen, false); !errors.Is(err, errSecondPrompt) || !errors.Is(u.noAnswer(), errSecondPrompt) {
		t.Fatalf("enrollment without a terminal: %v", err)
	}

	var shown []string
	prompted := 0
	u = &ui{answer: answer, stderr: io.Discard, prompted: func() { prompted++ },
		show: func(text string) (string, error) { shown = append(shown, text); return "654321\n", nil }}
	for i := 1; i <= maxPrompts; i++ {
		if a, err := u.Prompt(screen, false); err != nil || a != "654321" {
			t.Fatalf("enrollment prompt %d: %q %v", i, a, err)
		}
	}
	if _, err := u.Prompt(screen, false); !errors.Is(err, errSecondPrompt) {
		t.Fatalf("prompt %d: %v", maxPrompts+1, err)
	}
	if len(shown) != maxPrompts || shown[0] != screen || prompted != maxPrompts {
		t.Fatalf("shown %d (%q), prompted %d", len(shown), shown, prompted)
	}
	// The code prompt after an enrollment prompt: refused.
	u = &ui{answer: answer, stderr: io.Discard, show: func(string) (string, error) { return "", nil }}
	u.Prompt(screen, false)
	if _, err := u.Prompt(helper.DefaultPrompt, false); !errors.Is(err, errSecondPrompt) {
		t.Fatalf("code prompt after enrollment: %v", err)
	}
}
