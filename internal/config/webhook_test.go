package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const hookSecret = "whsec-0123456789abcdef0123456789abcdef"

// TestLoadWebhook: the webhook's settings from flags and variables, and
// their refusals, each naming its flag; the secret shows in none.
func TestLoadWebhook(t *testing.T) {
	c, err := load(t, []string{"-webhook-url", "https://portal.example/hooks/mfa", "-webhook-timeout", "5s"},
		map[string]string{"SECONDFACTOR_WEBHOOK_SECRET": hookSecret})
	if err != nil {
		t.Fatal(err)
	}
	if c.WebhookURL != "https://portal.example/hooks/mfa" || c.WebhookSecret.Reveal() != hookSecret || c.WebhookTimeout != 5*time.Second {
		t.Errorf("webhook settings %q, %q, %s", c.WebhookURL, c.WebhookSecret.Reveal(), c.WebhookTimeout)
	}
	if out := fmt.Sprintf("%+v", c); strings.Contains(out, hookSecret) {
		t.Errorf("the webhook secret shows in %s", out)
	}
	d, err := load(t, nil, nil)
	if err != nil || d.WebhookURL != "" || d.WebhookTimeout != 10*time.Second {
		t.Errorf("defaults: %q, %s, %v; want no webhook, a 10s timeout", d.WebhookURL, d.WebhookTimeout, err)
	}

	for _, tt := range []struct {
		name string
		args []string
		want []string
	}{
		{"secret without url", []string{"-webhook-secret", hookSecret}, []string{
			"-webhook-secret: needs -webhook-url (the secret signs what is sent there)",
		}},
		{"url without secret", []string{"-webhook-url", "https://portal.example/hook"}, []string{
			"-webhook-secret of 0 bytes: want at least 32",
		}},
		{"short secret, plain http, long timeout", []string{"-webhook-url", "http://portal.example/hook", "-webhook-secret", "short", "-webhook-timeout", "2m"}, []string{
			"-webhook-url is http to a host that is not loopback: want https",
			"-webhook-secret of 5 bytes: want at least 32",
			"-webhook-timeout 2m0s: want 1s to 1m",
		}},
		{"relative url", []string{"-webhook-url", "portal.example/hook", "-webhook-secret", hookSecret}, []string{
			"-webhook-url is not an absolute https URL",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(t, tt.args, nil)
			if err == nil {
				t.Fatal("Load accepted it")
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("Load error:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	if _, err := load(t, []string{"-webhook-url", "http://127.0.0.1:9000/hook", "-webhook-secret", hookSecret}, nil); err != nil {
		t.Errorf("http to loopback: %v", err)
	}
}
