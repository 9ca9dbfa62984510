// Package buildinfo says which build of streamer is running: for the
// version command, the streamer_build_info metric and the start-up log.
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version, when set at link time (-ldflags "-X
// github.com/streamerd/streamer/internal/buildinfo.Version=v1.2.3"), is the
// release version. Otherwise it is the module version Go recorded, which is
// "(devel)" for a build from a checkout.
var Version = ""

// Info describes the running build.
type Info struct {
	Version   string // release or module version; "(devel)" from a checkout
	Commit    string // VCS revision the binary was built from; "" when unknown
	Modified  bool   // built from a working tree with changes
	GoVersion string // the Go toolchain
	Platform  string // GOOS/GOARCH
}

// Read returns the running build's information.
func Read() Info {
	info := Info{Version: Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if info.Version == "" {
			info.Version = "unknown"
		}
		return info
	}
	if info.Version == "" {
		info.Version = bi.Main.Version
	}
	if info.Version == "" {
		info.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the one line the version command prints, e.g.
// "streamer v1.2.0 (commit 4b95fac…, modified) go1.26.8 linux/amd64".
func (i Info) String() string {
	s := "streamer " + i.Version
	switch {
	case i.Commit != "" && i.Modified:
		s += " (commit " + i.Commit + ", modified)"
	case i.Commit != "":
		s += " (commit " + i.Commit + ")"
	}
	return s + " " + i.GoVersion + " " + i.Platform
}

// Collector returns the streamer_build_info gauge: always 1, labelled with
// the version, the commit and the Go version, as Prometheus exporters do.
func Collector() prometheus.Collector {
	i := Read()
	commit := i.Commit
	if i.Modified && commit != "" {
		commit += "-modified"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "streamer_build_info",
		Help:        "The running build: always 1, labelled with its version, VCS commit and Go version.",
		ConstLabels: prometheus.Labels{"version": i.Version, "commit": commit, "goversion": i.GoVersion},
	})
	g.Set(1)
	return g
}
