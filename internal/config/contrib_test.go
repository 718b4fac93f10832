package config

import (
	"os"
	"reflect"
	"testing"
)

// TestContribExample keeps contrib/config.toml in step with the defaults
// it documents.
func TestContribExample(t *testing.T) {
	data, err := os.ReadFile("../../contrib/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse("contrib/config.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("contrib/config.toml gives\n%+v\nthe defaults are\n%+v", got, want)
	}
}
