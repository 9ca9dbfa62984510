package integration

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestGrafanaDashboard: deploy/grafana/streamer.json is a dashboard whose
// queries name only metrics the code registers (string literals of the
// node, gateway, puller, Redis backend and build-info packages), with the
// suffixes Prometheus gives histograms; every panel has a query.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "deploy", "grafana", "streamer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) < 10 {
		t.Fatalf("uid %q, title %q, %d panels", dash.UID, dash.Title, len(dash.Panels))
	}

	metric := regexp.MustCompile(`\bstreamer_[a-z0-9_]+\b`)
	known := map[string]bool{}
	for _, dir := range []string{"service", "gateway", "puller", "store/redis", "internal/buildinfo"} {
		files, err := filepath.Glob(filepath.Join("..", dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, lit := range regexp.MustCompile(`"(streamer_[a-z0-9_]+)"`).FindAllSubmatch(src, -1) {
				known[string(lit[1])] = true
			}
		}
	}
	if len(known) < 40 {
		t.Fatalf("found only %d metric names in the code: the scan is broken", len(known))
	}
	used := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range metric.FindAllString(tg.Expr, -1) {
				used++
				base := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, suffix); ok && known[b] {
						base = b
					}
				}
				if !known[base] {
					t.Errorf("panel %q queries %s, which no package registers (known: %s)", p.Title, name, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
				}
			}
		}
	}
	if used == 0 {
		t.Fatal("no metric in any query")
	}
}
