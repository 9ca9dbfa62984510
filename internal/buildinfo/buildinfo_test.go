package buildinfo

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestReadAndCollector(t *testing.T) {
	i := Read()
	if i.GoVersion != runtime.Version() || i.Version == "" || i.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("Read() = %+v", i)
	}
	if s := i.String(); !strings.HasPrefix(s, "streamer "+i.Version) || !strings.HasSuffix(s, runtime.Version()+" "+i.Platform) {
		t.Fatalf("String() = %q", s)
	}

	old := Version
	Version = "v9.9.9"
	t.Cleanup(func() { Version = old })
	if got := Read().Version; got != "v9.9.9" {
		t.Fatalf("the link-time version is not used: %q", got)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	families, err := reg.Gather()
	if err != nil || len(families) != 1 || families[0].GetName() != "streamer_build_info" {
		t.Fatalf("gathered %v, %v", families, err)
	}
	m := families[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if m.GetGauge().GetValue() != 1 || labels["version"] != "v9.9.9" || labels["goversion"] != runtime.Version() {
		t.Fatalf("streamer_build_info = %v %v", m.GetGauge().GetValue(), labels)
	}
	if _, ok := labels["commit"]; !ok {
		t.Fatal("no commit label")
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		i    Info
		want string
	}{
		{Info{Version: "v1.0.0", GoVersion: "go1.26.8", Platform: "linux/amd64"}, "streamer v1.0.0 go1.26.8 linux/amd64"},
		{Info{Version: "(devel)", Commit: "abc", GoVersion: "go1.26.8", Platform: "linux/arm64"}, "streamer (devel) (commit abc) go1.26.8 linux/arm64"},
		{Info{Version: "(devel)", Commit: "abc", Modified: true, GoVersion: "go1", Platform: "p"}, "streamer (devel) (commit abc, modified) go1 p"},
	} {
		if got := tc.i.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.i, got, tc.want)
		}
	}
}
