package config

import "testing"

// TestDSNSettings: the keys a DSN names itself, in both forms, with
// quotes and escapes; malformed ones refused.
func TestDSNSettings(t *testing.T) {
	for _, bad := range []string{"host='db1", "nonsense", "=x"} {
		if k, err := DSNSettings(bad); err == nil {
			t.Errorf("DSNSettings(%q) = %v", bad, k)
		}
	}
	k, err := DSNSettings(`host = db1 passfile='/etc/otp gate/p\'w' user=x`)
	if err != nil || k["passfile"] != "/etc/otp gate/p'w" || k["host"] != "db1" || k["user"] != "x" || len(k) != 3 {
		t.Errorf("keyword/value with quotes: %v %v", k, err)
	}
	k, err = DSNSettings("postgres://web1@db1.example.org:5433/otpgate?sslmode=verify-full&passfile=/etc/otpgate/pgpass")
	if err != nil || k["host"] != "db1.example.org" || k["user"] != "web1" || k["dbname"] != "otpgate" || k["sslmode"] != "verify-full" || k["passfile"] != "/etc/otpgate/pgpass" {
		t.Errorf("URL: %v %v", k, err)
	}
	if k, err := DSNSettings("service=otpgate"); err != nil || k["service"] != "otpgate" || k["host"] != "" {
		t.Errorf("service: %v %v", k, err)
	}
}
