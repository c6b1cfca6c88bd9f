package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the Prometheus text at addr's /metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics of %s: %v", addr, err)
	}
	return mf
}

// value is the value of the series of family name whose labels include want;
// a histogram gives its count.
func value(mf map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := mf[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// The admin listeners: after known traffic the relay's counters say so,
// both sides report their session, health and readiness, and `burrow
// status` tells ready from not ready by its exit code.
func TestAdminListeners(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			host := map[string]string{"host": publicHost}
			before := scrape(t, e.relayAdmin)
			for range 10 {
				if st, _ := e.mustGet("/files/small.bin", nil); st != http.StatusOK {
					t.Fatalf("status %d", st)
				}
			}
			for i := range 3 {
				st, _ := e.mustGet("/files/large.bin", http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", i*1000, i*1000+99)}})
				if st != http.StatusPartialContent {
					t.Fatalf("range: status %d", st)
				}
			}
			after := scrape(t, e.relayAdmin)
			delta := func(name string, labels map[string]string) float64 {
				return value(after, name, labels) - max(0, value(before, name, labels))
			}
			if d := delta("burrow_relay_requests_total", map[string]string{"host": publicHost, "code": "2xx"}); d != 13 {
				t.Errorf("burrow_relay_requests_total{code=2xx} rose by %v, want 13", d)
			}
			if d := delta("burrow_relay_range_requests_total", host); d != 3 {
				t.Errorf("burrow_relay_range_requests_total rose by %v, want 3", d)
			}
			if d := delta("burrow_relay_ttfb_seconds", host); d != 13 {
				t.Errorf("burrow_relay_ttfb_seconds counted %v answers, want 13", d)
			}
			if d := delta("burrow_relay_response_bytes_total", host); d < 10*1024+300 {
				t.Errorf("burrow_relay_response_bytes_total rose by %v", d)
			}
			if v := value(after, "burrow_relay_sessions", map[string]string{"agent": "nas", "transport": tr}); v != 1 {
				t.Errorf("burrow_relay_sessions{transport=%s} = %v, want 1", tr, v)
			}
			if v := value(after, "burrow_relay_refusals_total", map[string]string{"reason": "bad_token"}); v != 0 {
				t.Errorf("burrow_relay_refusals_total{bad_token} = %v", v)
			}
			if v := value(after, "burrow_relay_certificate_expiry_timestamp_seconds", map[string]string{"use": "tunnel"}); v < float64(time.Now().Add(24*time.Hour).Unix()) {
				t.Errorf("burrow_relay_certificate_expiry_timestamp_seconds{use=tunnel} = %v, want a time to come", v)
			}
			var relaySt struct {
				Detail struct {
					Certificates []struct {
						Use      string    `json:"use"`
						NotAfter time.Time `json:"not_after"`
					} `json:"certificates"`
				} `json:"detail"`
			}
			getJSON(t, "http://"+e.relayAdmin+"/status.json", &relaySt)
			if c := relaySt.Detail.Certificates; len(c) != 1 || c[0].Use != "tunnel" || time.Until(c[0].NotAfter) < 24*time.Hour {
				t.Errorf("relay status certificates: %+v, want the tunnel's", c)
			}
			// A route whose service is down: a warning the agent's status shows.
			if st, _ := e.mustGet("/down/", nil); st != http.StatusBadGateway {
				t.Errorf("/down/: status %d, want 502", st)
			}
			var agentSt struct {
				Errors []string `json:"recent_errors"`
			}
			getJSON(t, "http://"+e.agentAdmin+"/status.json", &agentSt)
			if len(agentSt.Errors) == 0 || !strings.Contains(agentSt.Errors[0], "service unreachable") {
				t.Errorf("agent status recent_errors %q, want the unreachable service", agentSt.Errors)
			}
			agentMF := scrape(t, e.agentAdmin)
			if v := value(agentMF, "burrow_agent_sessions", map[string]string{"transport": tr}); v != 1 {
				t.Errorf("burrow_agent_sessions{transport=%s} = %v, want 1", tr, v)
			}
			if v := value(agentMF, "burrow_agent_reconnects_total", nil); v != 0 {
				t.Errorf("burrow_agent_reconnects_total = %v, want 0", v)
			}
			for _, addr := range []string{e.relayAdmin, e.agentAdmin} {
				for _, path := range []string{"/healthz", "/readyz", "/"} {
					resp, err := http.Get("http://" + addr + path)
					if err != nil {
						t.Fatal(err)
					}
					var body bytes.Buffer
					body.ReadFrom(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("%s%s: %d %s", addr, path, resp.StatusCode, body.String())
					}
					if strings.Contains(body.String(), e.token) {
						t.Errorf("%s%s shows the agent's token", addr, path)
					}
				}
			}
			for _, cfg := range []string{e.relayConfig, e.agentConfig} {
				out, code := status(t, cfg)
				if code != 0 || !strings.Contains(out, "ready") || strings.Contains(out, "NOT READY") {
					t.Errorf("burrow status --config %s: exit %d\n%s", cfg, code, out)
				}
			}
			// Without its relay the agent is not ready.
			if err := e.relay.stop(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(15 * time.Second)
			for {
				out, code := status(t, e.agentConfig)
				if code == 1 && strings.Contains(out, "NOT READY") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("agent still ready 15 s after its relay stopped: exit %d\n%s", code, out)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

// status runs `burrow status --config cfg` and returns its output and exit code.
func status(t *testing.T, cfg string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, burrowBin, "status", "--config", cfg)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// With log.access on, the relay logs one line per request, with the API key
// in the query redacted like everywhere else.
func TestAccessLog(t *testing.T) {
	// Appended right under the relay's log.level: part of its log section.
	e := newEnvWith(t, "tcp", "  access: true\n")
	const secret = "0123456789abcdefSECRET"
	if st, _ := e.mustGet("/files/small.bin?apikey="+secret, http.Header{"Range": {"bytes=0-9"}}); st != http.StatusPartialContent {
		t.Fatalf("status %d", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	var line string
	for line == "" {
		for l := range strings.SplitSeq(e.relayLog.String(), "\n") {
			if strings.Contains(l, "msg=access") && strings.Contains(l, "/files/small.bin") {
				line = l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access line in the relay's log:\n%s", e.relayLog)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"status=206", "bytes=10", "client=127.0.0.1", "method=GET", "host=" + publicHost, "agent=nas", "transport=tcp", "ttfb="} {
		if !strings.Contains(line, want) {
			t.Errorf("access line lacks %q: %s", want, line)
		}
	}
	if strings.Contains(e.relayLog.String(), secret) {
		t.Errorf("the relay logged the API key: %s", line)
	}
}
