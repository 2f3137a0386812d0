package webhook_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/cli"
	"github.com/ferry-dev/ferry/internal/enginetest"
	"github.com/ferry-dev/ferry/internal/source/webhook/webhooktest"
)

func ferry(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := cli.Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestReplayAfterConnectorChange: events no stream took are kept; after
// the connector gains a stream for them, ferry webhooks replay routes
// them again and the next run applies them, while the events already
// applied are applied again without doubling (dedup mode); ferry webhooks
// list shows each kept delivery and whether it is applied.
func TestReplayAfterConnectorChange(t *testing.T) {
	conn := func(streams string) string {
		return connector("shop", "verify: {preset: stripe, secrets: [\"{{ config.secret }}\"]}\nstreams:\n"+streams)
	}
	env := map[string]string{"S": secret}
	p := enginetest.New(t, enginetest.Config{Connector: conn("  customers: {events: [\"customer.*\"]}\n"),
		Pipeline: "connector: connector.yaml\nconfig: {secret: \"${S}\", old_secret: \"${S}\"}\nsync: {checkpoint_interval: 20ms}\n", Env: env})
	rc := start(t, p, enginetest.Options{})
	now := time.Now()
	for i, ev := range []struct{ typ, obj string }{
		{"customer.created", `{"id":"cus_1","name":"Ada"}`},
		{"invoice.paid", `{"id":"in_1","total":990}`},
		{"customer.updated", `{"id":"cus_1","name":"Ada L."}`},
		{"invoice.paid", `{"id":"in_2","total":120}`},
	} {
		b := []byte(fmt.Sprintf(`{"id":"evt_%d","type":%q,"data":{"object":%s}}`, i, ev.typ, ev.obj))
		if code, body := rc.post("/hooks/shop", webhooktest.Stripe(now, b, secret), b); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	rc.applied(2)
	rc.stop()
	pipeline := filepath.Join(p.Dir(), "pipeline.yaml")
	code, out, errs := ferry(t, env, "webhooks", "list", pipeline)
	if code != 0 || strings.Count(out, "applied") != 2 || strings.Count(out, "unrouted") != 2 {
		t.Fatalf("list: %d\n%s%s", code, out, errs)
	}
	p.Write("connector.yaml", conn("  customers: {events: [\"customer.*\"]}\n  invoices: {events: [\"invoice.*\"]}\n"))
	code, out, errs = ferry(t, env, "webhooks", "replay", pipeline, "--since", "1h")
	if code != 0 || !strings.HasPrefix(out, "4 events of every stream queued again") {
		t.Fatalf("replay: %d\n%s%s", code, out, errs)
	}
	rc = start(t, p, enginetest.Options{})
	rc.applied(4)
	rc.stop()
	if got := p.Rows("invoices", "id", "total"); fmt.Sprint(got) != "[in_1|990 in_2|120]" {
		t.Fatalf("invoices %v", got)
	}
	if got := p.Rows("customers", "id", "name"); fmt.Sprint(got) != "[cus_1|Ada L.]" {
		t.Fatalf("customers %v", got)
	}
	code, _, errs = ferry(t, env, "webhooks", "replay", pipeline, "--since", "yesterday-ish")
	if code != 2 || !strings.Contains(errs, "--since") {
		t.Fatalf("a bad --since: %d %s", code, errs)
	}
}
