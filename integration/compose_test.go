package integration

// Static validation of the local dev stack: docker-compose.yml, the Dockerfile
// and deploy/ (nginx.conf, the MongoDB replica-set script). No Docker engine is
// needed: the compose file is parsed, and every streamer command line in it is
// checked against the flags of the binary built from this tree, as printed by
// `streamer CMD --help`, and then parsed by the binary itself.
//
// The checks read values literally: compose's ${VAR} interpolation is not
// evaluated, so the stack should not depend on it.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamerd/streamer/internal/testbin"

	"go.yaml.in/yaml/v3"
)

// Flags whose value is an address a command listens on, by protocol.
var composeListenFlags = map[string]string{"grpc": "grpc", "http": "http", "listen": "http"}

// Flags whose value names a server a command connects to, by protocol.
var composeDialFlags = map[string]string{"addr": "grpc", "redis": "redis", "mongo": "mongodb"}

func TestComposeStack(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cli := composeLoadCLI(t, testbin.Streamer(t))

	t.Run("checked-in stack", func(t *testing.T) {
		for _, p := range composeCheck(t.Context(), root, nil, cli) {
			t.Error(p)
		}
	})

	// Each case breaks one thing the way an edit could, and expects a problem
	// that names it: the checks above are only worth something if they fail.
	t.Run("mistakes are caught", func(t *testing.T) {
		for _, tc := range []struct{ name, file, old, new, want string }{
			{"misspelled flag", "docker-compose.yml", "--grpc=:7070\n      - --http=:7071\n    deploy", "--grcp=:7070\n      - --http=:7071\n    deploy",
				`service node: --grcp is not a flag of "streamer serve"`},
			{"unknown subcommand", "docker-compose.yml", "- serve\n", "- server\n",
				`service node: "server" is not a streamer subcommand`},
			{"flag value the binary rejects", "docker-compose.yml", "--partitions=16\n      - --grpc=:7070", "--partitions=sixteen\n      - --grpc=:7070",
				`invalid value "sixteen" for flag -partitions`},
			{"environment variable of no flag", "docker-compose.yml", "STREAMER_LOG_LEVEL", "STREAMER_LOGLEVEL",
				"STREAMER_LOGLEVEL matches no flag"},
			{"depends_on a missing service", "docker-compose.yml", "      lb:\n        condition: service_healthy", "      balancer:\n        condition: service_healthy",
				`service gateway: depends_on "balancer", which is not a service`},
			{"host port published twice", "docker-compose.yml", `"127.0.0.1:7072:7072"`, `"127.0.0.1:8081:7072"`,
				"host port 8081/tcp is published by both"},
			{"replicas sharing a node id", "docker-compose.yml", "      - --grpc=:7070\n      - --http=:7071\n    deploy", "      - --node-id=n1\n      - --grpc=:7070\n      - --http=:7071\n    deploy",
				"service node: its 2 replicas would share --node-id n1"},
			{"replicas publishing a host port", "docker-compose.yml", "    deploy:\n      replicas: 2\n", "    deploy:\n      replicas: 2\n    ports:\n      - \"127.0.0.1:7071:7071\"\n",
				"service node: its 2 replicas cannot all publish host port 7071"},
			{"gateway dials a port the LB does not serve gRPC on", "docker-compose.yml", "--addr=lb:7070", "--addr=lb:7079",
				"lb serves no gRPC on port 7079"},
			{"partition counts differ", "docker-compose.yml", "--partitions=16\n      - --default-tenant", "--partitions=8\n      - --default-tenant",
				"--partitions differs between services"},
			{"image nobody builds", "docker-compose.yml", "    pull_policy: build\n", "    pull_policy: build\n    image: streamer:other\n",
				"service gateway: image streamer:dev is never pulled, but no service builds it"},
			{"stack without the puller", "docker-compose.yml", "      - puller\n", "      - publish\n",
				"the stack runs streamer puller in 0 containers"},
			{"service without image or build", "docker-compose.yml", "    image: mongo:8.0\n", "",
				"service mongo: neither image nor build"},
			{"gateway left with the image's healthcheck", "docker-compose.yml", "\"http://127.0.0.1:8081/readyz\"", "\"http://127.0.0.1:7071/readyz\"",
				"service gateway: its healthcheck asks port 7071, where streamer gateway serves no HTTP"},
			{"healthcheck flag the binary lacks", "docker-compose.yml", "\"--url\", \"http://127.0.0.1:7072/readyz\"", "\"--uri\", \"http://127.0.0.1:7072/readyz\"",
				`service puller: its healthcheck: --uri is not a flag of "streamer healthcheck"`},
			{"image healthcheck on a port nodes do not serve", "Dockerfile", "http://127.0.0.1:7071/readyz", "http://127.0.0.1:7072/readyz",
				"service node: the image's HEALTHCHECK asks port 7072"},
			{"LB routes to an unknown node", "deploy/nginx.conf", "server node:7070", "server nodes:7070",
				`upstream streamer_grpc: server nodes:7070: nodes is not a compose service`},
			{"node missing from the LB", "deploy/nginx.conf", "        server node:7070 resolve max_fails=1 fail_timeout=5s;\n", "",
				"node runs streamer serve but deploy/nginx.conf passes no gRPC to it"},
			{"LB without HTTP/2", "deploy/nginx.conf", "http2 on;", "",
				"passes gRPC without http2"},
			{"replica set name mismatch", "deploy/mongo-replica-set.js", `_id: "rs0"`, `_id: "rs1"`,
				`initiates replica set "rs1", not "rs0"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				orig, err := os.ReadFile(filepath.Join(root, tc.file))
				if err != nil {
					t.Fatal(err)
				}
				if n := strings.Count(string(orig), tc.old); n != 1 {
					t.Fatalf("%s contains %q %d times, want once: update this case", tc.file, tc.old, n)
				}
				broken := strings.Replace(string(orig), tc.old, tc.new, 1)
				problems := composeCheck(t.Context(), root, map[string][]byte{tc.file: []byte(broken)}, cli)
				if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
					t.Errorf("with %q replaced by %q in %s, no problem mentions %q; problems:\n  %s",
						tc.old, tc.new, tc.file, tc.want, strings.Join(problems, "\n  "))
				}
			})
		}
	})

	// Optional: Docker's own parser, where installed (CI does not need it).
	t.Run("docker compose config", func(t *testing.T) {
		var tool []string
		if exec.Command("docker", "compose", "version").Run() == nil {
			tool = []string{"docker", "compose"}
		} else if p, err := exec.LookPath("docker-compose"); err == nil {
			tool = []string{p}
		} else {
			t.Log("neither `docker compose` nor `docker-compose` is installed: Docker's own parser was not run (optional)")
			return
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, tool[0], append(tool[1:], "config", "-q")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s config -q: %v\n%s", strings.Join(tool, " "), err, out)
		}
	})
}

// composeCLI is what the binary says about itself: its subcommands and their flags.
type composeCLI struct {
	exe      string
	commands map[string]map[string]composeFlag
}

type composeFlag struct {
	takesValue bool   // false for bool flags (--name alone means true)
	def        string // default as printed by --help; "" when it is the zero value
}

// composeLoadCLI runs `streamer help` and `streamer CMD --help` for every command.
func composeLoadCLI(t *testing.T, exe string) *composeCLI {
	t.Helper()
	cli := &composeCLI{exe: exe, commands: map[string]map[string]composeFlag{}}
	out, err := exec.Command(exe, "help").CombinedOutput()
	if err != nil {
		t.Fatalf("streamer help: %v\n%s", err, out)
	}
	inCommands := false
	for line := range strings.Lines(string(out)) {
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "Commands:":
			inCommands = true
		case inCommands && strings.HasPrefix(line, "  ") && strings.TrimSpace(line) != "":
			name := strings.Fields(line)[0]
			help, err := exec.Command(exe, name, "--help").CombinedOutput()
			if err != nil {
				t.Fatalf("streamer %s --help: %v\n%s", name, err, help)
			}
			cli.commands[name] = composeParseUsage(string(help))
		case inCommands && strings.TrimSpace(line) == "" && len(cli.commands) > 0:
			inCommands = false
		}
	}
	if len(cli.commands) == 0 {
		t.Fatalf("found no commands in the output of `streamer help`:\n%s", out)
	}
	return cli
}

// composeParseUsage reads the flags from the Go flag package's PrintDefaults
// output: a line "  -name" (bool) or "  -name value-name", the usage on the
// next line(s) after "    \t", or on the same line after a tab for one-letter
// names. A default other than the zero value ends the usage: (default X).
func composeParseUsage(help string) map[string]composeFlag {
	flags := map[string]composeFlag{}
	lines := strings.Split(help, "\n")
	defaultRE := regexp.MustCompile(`\(default (.*)\)$`)
	for i, line := range lines {
		if !strings.HasPrefix(line, "  -") || strings.HasPrefix(line, "  --") {
			continue
		}
		head, usage, sameLine := strings.Cut(line[3:], "\t")
		if !sameLine && (i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "    \t")) {
			continue // an indented line of prose, not a flag
		}
		name, valueName, _ := strings.Cut(strings.TrimSpace(head), " ")
		for j := i + 1; !sameLine && j < len(lines) && strings.HasPrefix(lines[j], "    \t"); j++ {
			usage = strings.TrimPrefix(lines[j], "    \t")
		}
		f := composeFlag{takesValue: valueName != ""}
		if m := defaultRE.FindStringSubmatch(usage); m != nil {
			f.def = m[1]
			if s, err := strconv.Unquote(m[1]); err == nil {
				f.def = s
			}
		}
		flags[name] = f
	}
	return flags
}

// composeEnvName mirrors cmd/streamer's envName: --auth-token reads STREAMER_AUTH_TOKEN.
func composeEnvName(flag string) string {
	return "STREAMER_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// The subset of the compose file format the checks read.
type composeFile struct {
	Services map[string]*composeService `yaml:"services"`
	Volumes  map[string]any             `yaml:"volumes"`
}

type composeService struct {
	Image       string          `yaml:"image"`
	PullPolicy  string          `yaml:"pull_policy"`
	Build       composeBuild    `yaml:"build"`
	Entrypoint  composeWords    `yaml:"entrypoint"`
	Command     composeWords    `yaml:"command"`
	Environment composeEnv      `yaml:"environment"`
	Ports       []composePort   `yaml:"ports"`
	DependsOn   composeDepends  `yaml:"depends_on"`
	Volumes     []composeMount  `yaml:"volumes"`
	Healthcheck *composeHealthc `yaml:"healthcheck"`
	Deploy      struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`

	// Filled by the checks for services that run the streamer image.
	name    string
	sub     string            // subcommand
	values  map[string]string // every flag's effective value: command line, else STREAMER_*, else default
	listens map[int]string    // port → protocol, from composeListenFlags
}

// replicas is how many containers the service runs by default.
func (svc *composeService) replicas() int {
	if svc.Deploy.Replicas != nil {
		return *svc.Deploy.Replicas
	}
	return 1
}

type composeHealthc struct {
	Test    composeWords `yaml:"test"`
	Disable bool         `yaml:"disable"`
}

// composeBuild is `build: DIR` or `build: {context, dockerfile, target}`.
type composeBuild struct {
	set                         bool
	Context, Dockerfile, Target string
}

func (b *composeBuild) UnmarshalYAML(n *yaml.Node) error {
	b.set = true
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	var m struct{ Context, Dockerfile, Target string }
	err := n.Decode(&m)
	b.Context, b.Dockerfile, b.Target = m.Context, m.Dockerfile, m.Target
	return err
}

// composeWords is a command or entrypoint: a list, or a string that compose
// splits like a shell (read here by spaces only, and refused for streamer services).
type composeWords struct {
	set, str bool
	words    []string
}

func (w *composeWords) UnmarshalYAML(n *yaml.Node) error {
	w.set = true
	if n.Kind == yaml.ScalarNode {
		w.str, w.words = true, strings.Fields(n.Value)
		return nil
	}
	return n.Decode(&w.words)
}

// composeEnv is a mapping or a list of KEY=VALUE.
type composeEnv map[string]string

func (e *composeEnv) UnmarshalYAML(n *yaml.Node) error {
	*e = composeEnv{}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			(*e)[n.Content[i].Value] = n.Content[i+1].Value
		}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		(*e)[k] = v
	}
	return nil
}

// composeDepends is a list of names or a mapping name → {condition}.
type composeDepends map[string]string

func (d *composeDepends) UnmarshalYAML(n *yaml.Node) error {
	*d = composeDepends{}
	if n.Kind == yaml.SequenceNode {
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			(*d)[name] = "service_started"
		}
		return nil
	}
	var m map[string]struct{ Condition string }
	if err := n.Decode(&m); err != nil {
		return err
	}
	for name, v := range m {
		(*d)[name] = cmp.Or(v.Condition, "service_started")
	}
	return nil
}

// composePort is one published port in the short syntax "[IP:]HOST:CONTAINER[/PROTO]"
// or "CONTAINER[/PROTO]" (no fixed host port); the checks refuse other forms.
type composePort struct {
	hostIP, proto   string
	host, container int // host 0: no fixed host port
}

func (p *composePort) UnmarshalYAML(n *yaml.Node) error {
	rest, proto, _ := strings.Cut(n.Value, "/")
	p.proto = cmp.Or(proto, "tcp")
	parts := strings.Split(rest, ":")
	if len(parts) == 3 {
		p.hostIP, parts = parts[0], parts[1:]
	}
	var err1, err2 error
	if len(parts) == 2 {
		p.host, err1 = strconv.Atoi(parts[0])
		parts = parts[1:]
	}
	p.container, err2 = strconv.Atoi(parts[0])
	if n.Kind != yaml.ScalarNode || len(parts) != 1 || err1 != nil || err2 != nil {
		return fmt.Errorf("line %d: ports: the compose checks read \"[IP:]HOST:CONTAINER[/PROTO]\" or \"CONTAINER\" only (no ranges, no long syntax)", n.Line)
	}
	return nil
}

// composeMount is a volume: "SOURCE:TARGET[:MODE]" or the long syntax.
type composeMount struct{ source, target string }

func (m *composeMount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.MappingNode {
		var v struct{ Source, Target string }
		err := n.Decode(&v)
		m.source, m.target = v.Source, v.Target
		return err
	}
	parts := strings.Split(n.Value, ":")
	if len(parts) == 1 { // anonymous volume
		m.target = parts[0]
		return nil
	}
	m.source, m.target = parts[0], parts[1]
	return nil
}

// bind reports whether the mount is a host path (compose's rule: it starts with . / or ~).
func (m composeMount) bind() bool {
	return strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/") || strings.HasPrefix(m.source, "~")
}

// composeStack is one run of the checks over the files of the stack.
type composeStack struct {
	ctx       context.Context // bounds the binary's dry runs
	root      string
	overrides map[string][]byte // repo-relative path → content used instead of the file's
	cli       *composeCLI
	file      composeFile
	names     []string // service names, sorted
	problems  []string

	entrypoint  []string                // the Dockerfile's ENTRYPOINT
	healthcheck []string                // the Dockerfile's HEALTHCHECK CMD, exec form
	stages      []string                // the Dockerfile's stage names
	exposed     map[int]bool            // the Dockerfile's EXPOSE ports
	lbListens   map[string]map[int]bool // LB service → ports nginx listens on
	lbGRPC      map[string]map[int]bool // LB service → ports where nginx passes gRPC
}

func (s *composeStack) problemf(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

func (s *composeStack) read(rel string) ([]byte, error) {
	if b, ok := s.overrides[filepath.ToSlash(filepath.Clean(rel))]; ok {
		return b, nil
	}
	return os.ReadFile(filepath.Join(s.root, rel))
}

// composeCheck returns every problem found in the stack's files under root,
// reading overrides (repo-relative path → content) instead of those files.
func composeCheck(ctx context.Context, root string, overrides map[string][]byte, cli *composeCLI) []string {
	s := &composeStack{ctx: ctx, root: root, overrides: overrides, cli: cli,
		lbListens: map[string]map[int]bool{}, lbGRPC: map[string]map[int]bool{}}
	data, err := s.read("docker-compose.yml")
	if err == nil {
		err = yaml.Unmarshal(data, &s.file)
	}
	if err != nil {
		return []string{fmt.Sprintf("docker-compose.yml: %v", err)}
	}
	for name, svc := range s.file.Services {
		svc.name = name
		s.names = append(s.names, name)
	}
	slices.Sort(s.names)
	s.readDockerfile()
	runs := map[string]int{} // subcommand → services running it
	for _, name := range s.names {
		s.checkService(s.file.Services[name])
		runs[s.file.Services[name].sub] += s.file.Services[name].replicas()
	}
	// Guard against checks that pass because they found nothing to check.
	for sub, want := range map[string]int{"serve": 2, "puller": 1, "gateway": 1} {
		if runs[sub] < want {
			s.problemf("the stack runs streamer %s in %d containers (services × replicas) built from ./Dockerfile, want at least %d", sub, runs[sub], want)
		}
	}
	s.checkDependsOn()
	s.checkPorts()
	s.checkLoadBalancers()
	s.checkDialing()
	return s.problems
}

// readDockerfile reads the stage names, ENTRYPOINT and EXPOSE of ./Dockerfile.
func (s *composeStack) readDockerfile() {
	data, err := s.read("Dockerfile")
	if err != nil {
		s.problemf("Dockerfile: %v", err)
		return
	}
	s.exposed = map[int]bool{}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	for line := range strings.Lines(text) {
		fields := strings.Fields(line)
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			if n := len(fields); n >= 4 && strings.EqualFold(fields[n-2], "AS") {
				s.stages = append(s.stages, fields[n-1])
			}
		case "ENTRYPOINT":
			s.entrypoint = nil
			if err := json.Unmarshal([]byte(strings.TrimSpace(line)[len("ENTRYPOINT"):]), &s.entrypoint); err != nil {
				s.problemf("Dockerfile: ENTRYPOINT must be an exec-form JSON array: %v", err)
			}
		case "HEALTHCHECK":
			_, cmd, ok := strings.Cut(line, " CMD ")
			if !ok || json.Unmarshal([]byte(strings.TrimSpace(cmd)), &s.healthcheck) != nil {
				s.problemf("Dockerfile: HEALTHCHECK must run an exec-form JSON array after CMD: %s", strings.TrimSpace(line))
			}
		case "EXPOSE":
			for _, p := range fields[1:] {
				if n, err := strconv.Atoi(strings.TrimSuffix(p, "/tcp")); err == nil {
					s.exposed[n] = true
				}
			}
		}
	}
	if len(s.entrypoint) != 1 || path.Base(s.entrypoint[0]) != "streamer" {
		s.problemf("Dockerfile: ENTRYPOINT is %q; these checks read each service's command as the streamer binary's arguments, so it must be the binary alone", s.entrypoint)
	}
}

// builtHere reports whether the service's image is built from this repository's Dockerfile.
func (s *composeStack) builtHere(svc *composeService) bool {
	if svc.Build.set {
		return filepath.Clean(filepath.Join(s.root, svc.Build.Context)) == s.root &&
			cmp.Or(svc.Build.Dockerfile, "Dockerfile") == "Dockerfile"
	}
	for _, other := range s.file.Services { // image: streamer:dev without build, built by another service
		if other.Build.set && other.Image == svc.Image && svc.Image != "" && other != svc {
			return s.builtHere(other)
		}
	}
	return false
}

func (s *composeStack) checkService(svc *composeService) {
	if svc.Image == "" && !svc.Build.set {
		s.problemf("service %s: neither image nor build", svc.name)
	}
	for _, m := range svc.Volumes {
		switch {
		case m.bind():
			if _, err := os.Stat(filepath.Join(s.root, m.source)); err != nil {
				s.problemf("service %s: bind mount of %s: %v", svc.name, m.source, err)
			}
		case m.source != "":
			if _, ok := s.file.Volumes[m.source]; !ok {
				s.problemf("service %s: volume %q is not declared under the top-level volumes", svc.name, m.source)
			}
		}
	}
	if !s.builtHere(svc) {
		if svc.PullPolicy == "never" && !svc.Build.set {
			s.problemf("service %s: image %s is never pulled, but no service builds it from ./Dockerfile", svc.name, svc.Image)
		}
		return
	}
	if svc.Build.set && svc.Build.Target != "" && !slices.Contains(s.stages, svc.Build.Target) {
		s.problemf("service %s: build target %q is not a stage of the Dockerfile (stages: %s)", svc.name, svc.Build.Target, strings.Join(s.stages, ", "))
	}
	if svc.Entrypoint.set && !slices.Equal(svc.Entrypoint.words, s.entrypoint) {
		s.problemf("service %s: entrypoint %q overrides the image's %q; the checks cannot read its command", svc.name, svc.Entrypoint.words, s.entrypoint)
		return
	}
	s.checkCommand(svc)
	s.checkHealthcheck(svc)
	if n := svc.replicas(); n > 1 {
		// Replicas (deploy.replicas, or --scale) share everything the
		// service sets.
		for _, p := range svc.Ports {
			if p.host != 0 {
				s.problemf("service %s: its %d replicas cannot all publish host port %d", svc.name, n, p.host)
			}
		}
		if id := svc.values["node-id"]; id != "" {
			s.problemf("service %s: its %d replicas would share --node-id %s; leave it out (each names itself)", svc.name, n, id)
		}
	}
	for _, p := range svc.Ports {
		if svc.listens != nil && svc.listens[p.container] == "" {
			s.problemf("service %s: publishes container port %d, where streamer %s does not listen (it listens on %v)", svc.name, p.container, svc.sub, slices.Sorted(maps.Keys(svc.listens)))
		}
		if !s.exposed[p.container] {
			s.problemf("service %s: publishes container port %d, which the Dockerfile does not EXPOSE (document it there)", svc.name, p.container)
		}
	}
}

// checkHealthcheck checks the healthcheck a streamer service runs: its own,
// else the image's. It must be "streamer healthcheck" with flags the binary
// has, asking /readyz or /healthz on a port where the service serves HTTP.
func (s *composeStack) checkHealthcheck(svc *composeService) {
	if svc.listens == nil {
		return // the command was not readable
	}
	test, from := s.healthcheck, "the image's HEALTHCHECK"
	if h := svc.Healthcheck; h != nil && h.Test.set {
		if h.Test.str || len(h.Test.words) == 0 || h.Test.words[0] != "CMD" {
			s.problemf("service %s: write the healthcheck test as [\"CMD\", \"/streamer\", \"healthcheck\", …]: the image has no shell", svc.name)
			return
		}
		test, from = h.Test.words[1:], "its healthcheck"
	} else if h != nil && h.Disable {
		return
	}
	if len(test) < 2 || path.Base(test[0]) != "streamer" || test[1] != "healthcheck" {
		s.problemf("service %s: %s is %q, want the streamer binary's healthcheck subcommand", svc.name, from, test)
		return
	}
	flags := s.cli.commands["healthcheck"]
	url := flags["url"].def
	args := test[2:]
	for i := 0; i < len(args); i++ {
		name, val, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		f, ok := flags[name]
		if !ok || !strings.HasPrefix(args[i], "-") {
			s.problemf("service %s: %s: --%s is not a flag of \"streamer healthcheck\"", svc.name, from, name)
			return
		}
		if f.takesValue && !hasVal && i+1 < len(args) {
			i++
			val = args[i]
		}
		if name == "url" {
			url = val
		}
	}
	m := regexp.MustCompile(`^http://(127\.0\.0\.1|localhost):(\d+)/(readyz|healthz)$`).FindStringSubmatch(url)
	if m == nil {
		s.problemf("service %s: %s asks %q, want http://127.0.0.1:PORT/readyz (or /healthz) of the container itself", svc.name, from, url)
		return
	}
	if port, _ := strconv.Atoi(m[2]); svc.listens[port] != "http" {
		s.problemf("service %s: %s asks port %d, where streamer %s serves no HTTP; give the service a healthcheck with its --http port", svc.name, from, port, svc.sub)
	}
}

// checkCommand checks a streamer service's command line and STREAMER_*
// variables against the binary's flags, has the binary parse them, and
// records the effective flag values.
func (s *composeStack) checkCommand(svc *composeService) {
	args := svc.Command.words
	if svc.Command.str {
		s.problemf("service %s: write the command as a YAML list, one argument per item, so that these checks read it as compose does", svc.name)
		return
	}
	if len(args) == 0 {
		s.problemf("service %s: no command; name the streamer subcommand it runs", svc.name)
		return
	}
	svc.sub = args[0]
	flags, ok := s.cli.commands[svc.sub]
	if !ok {
		s.problemf("service %s: %q is not a streamer subcommand (the image's entrypoint is the binary; its subcommands: %s)",
			svc.name, svc.sub, strings.Join(slices.Sorted(maps.Keys(s.cli.commands)), ", "))
		return
	}
	known := strings.Join(slices.Sorted(maps.Keys(flags)), ", ")
	given, parsable := map[string]string{}, true
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			s.problemf("service %s: argument %q is not a flag; streamer %s takes flags only", svc.name, a, svc.sub)
			parsable = false
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		f, ok := flags[name]
		switch {
		case !ok && strings.ContainsAny(name, " \t"):
			s.problemf("service %s: %q is one argument, not a flag and its value: write --flag=value or two list items", svc.name, a)
			parsable = false
			continue
		case !ok:
			s.problemf("service %s: --%s is not a flag of \"streamer %s\" (its flags: %s)", svc.name, name, svc.sub, known)
			parsable = false
			continue
		case hasVal:
		case !f.takesValue:
			val = "true"
		case i+1 < len(args):
			i++
			val = args[i]
		default:
			s.problemf("service %s: --%s needs a value", svc.name, name)
			parsable = false
			continue
		}
		given[name] = val
	}

	env := map[string]string{} // flag name → value, from STREAMER_* variables
	for k, v := range svc.Environment {
		if !strings.HasPrefix(k, "STREAMER_") {
			continue
		}
		name := ""
		for f := range flags {
			if composeEnvName(f) == k {
				name = f
			}
		}
		if name == "" {
			s.problemf("service %s: environment variable %s matches no flag of streamer %s (each flag reads STREAMER_<FLAG>: %s)", svc.name, k, svc.sub, known)
			parsable = false
			continue
		}
		env[name] = v
	}

	svc.values, svc.listens = map[string]string{}, map[int]string{}
	for name, f := range flags {
		svc.values[name] = f.def
		if v, ok := env[name]; ok {
			svc.values[name] = v
		}
		if v, ok := given[name]; ok {
			svc.values[name] = v
		}
		if proto := composeListenFlags[name]; proto != "" {
			if _, port, err := net.SplitHostPort(svc.values[name]); err == nil {
				if n, err := strconv.Atoi(port); err == nil {
					svc.listens[n] = proto
				}
			}
		}
	}
	if parsable {
		s.dryRun(svc, env)
	}
}

// dryRun has the binary parse the service's flags (environment variables as
// flags first, as the binary applies them) followed by --help: it exits 0
// once everything before --help parsed, before doing anything else.
func (s *composeStack) dryRun(svc *composeService, env map[string]string) {
	args := []string{svc.sub}
	for _, name := range slices.Sorted(maps.Keys(env)) {
		args = append(args, "--"+name+"="+env[name])
	}
	args = append(append(args, svc.Command.words[1:]...), "--help")
	ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.cli.exe, args...)
	cmd.Env = []string{} // the host's STREAMER_* variables must not count
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	msg, _, _ := strings.Cut(string(out), "Usage:")
	s.problemf("service %s: streamer %s rejects its command line and environment: %v: %s", svc.name, svc.sub, err, strings.TrimSpace(msg))
}

func (s *composeStack) checkDependsOn() {
	for _, name := range s.names {
		for dep, cond := range s.file.Services[name].DependsOn {
			target, ok := s.file.Services[dep]
			switch {
			case !ok:
				s.problemf("service %s: depends_on %q, which is not a service", name, dep)
			case dep == name:
				s.problemf("service %s: depends_on itself", name)
			case !slices.Contains([]string{"service_started", "service_healthy", "service_completed_successfully"}, cond):
				s.problemf("service %s: depends_on %s with unknown condition %q", name, dep, cond)
			case cond == "service_healthy" && (target.Healthcheck == nil || target.Healthcheck.Disable || !target.Healthcheck.Test.set):
				s.problemf("service %s: waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			}
		}
	}
}

// checkPorts reports host ports published twice (on the same or a wildcard address).
func (s *composeStack) checkPorts() {
	type use struct{ svc, ip string }
	seen := map[string]use{}
	wild := func(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
	for _, name := range s.names {
		for _, p := range s.file.Services[name].Ports {
			if p.host == 0 {
				continue
			}
			key := fmt.Sprintf("%d/%s", p.host, p.proto)
			if prev, ok := seen[key]; ok && (prev.ip == p.hostIP || wild(prev.ip) || wild(p.hostIP)) {
				s.problemf("host port %s is published by both %s and %s", key, prev.svc, name)
			}
			seen[key] = use{name, p.hostIP}
		}
	}
}

// checkLoadBalancers parses the nginx.conf mounted into any service and checks
// its upstreams against the compose services.
func (s *composeStack) checkLoadBalancers() {
	var nodes []string // services running streamer serve
	for _, n := range s.names {
		if s.file.Services[n].sub == "serve" {
			nodes = append(nodes, n)
		}
	}
	routed := map[string]bool{}
	found := false
	for _, name := range s.names {
		lb := s.file.Services[name]
		for _, m := range lb.Volumes {
			if !m.bind() || path.Base(m.source) != "nginx.conf" {
				continue
			}
			found = true
			rel := filepath.ToSlash(filepath.Clean(m.source))
			data, err := s.read(rel)
			if err != nil {
				continue // reported with the bind mounts
			}
			conf, err := parseNginxConf(string(data))
			if err != nil {
				s.problemf("%s: %v", rel, err)
				continue
			}
			s.checkNginx(rel, lb, conf, routed)
		}
	}
	if len(nodes) > 1 && !found {
		s.problemf("%d services run streamer serve but no service mounts an nginx.conf to balance them", len(nodes))
	}
	for _, n := range nodes {
		if found && !routed[n] {
			s.problemf("%s runs streamer serve but deploy/nginx.conf passes no gRPC to it", n)
		}
	}
}

func (s *composeStack) checkNginx(file string, lb *composeService, conf []*ngxDirective, routed map[string]bool) {
	listens, grpcPorts := map[int]bool{}, map[int]bool{}
	s.lbListens[lb.name], s.lbGRPC[lb.name] = listens, grpcPorts
	upstreams := map[string][]string{} // name → "host:port" servers
	for _, d := range ngxFind(conf, "upstream") {
		if len(d.args) == 1 {
			for _, srv := range ngxFind(d.block, "server") {
				upstreams[d.args[0]] = append(upstreams[d.args[0]], srv.args[0])
			}
		}
	}
	grpcUpstreams := map[string]bool{}
	for _, server := range ngxFind(conf, "server") {
		if server.block == nil {
			continue // a server of an upstream block
		}
		var ports []int
		http2 := slices.ContainsFunc(ngxFind(server.block, "http2"), func(d *ngxDirective) bool { return slices.Equal(d.args, []string{"on"}) })
		for _, l := range ngxFind(server.block, "listen") {
			addr := l.args[0]
			if i := strings.LastIndex(addr, ":"); i >= 0 {
				addr = addr[i+1:]
			}
			if n, err := strconv.Atoi(addr); err == nil {
				ports = append(ports, n)
				listens[n] = true
			}
			http2 = http2 || slices.Contains(l.args[1:], "http2")
		}
		for _, pass := range append(ngxFind(server.block, "grpc_pass"), ngxFind(server.block, "proxy_pass")...) {
			_, target, _ := strings.Cut(pass.args[0], "://")
			target, _, _ = strings.Cut(target, "/")
			if pass.name == "grpc_pass" {
				for _, p := range ports {
					grpcPorts[p] = true
				}
				if !http2 {
					s.problemf("%s: server on %v passes gRPC without http2 (add \"http2 on;\")", file, ports)
				}
			}
			if _, ok := upstreams[target]; ok {
				grpcUpstreams[target] = grpcUpstreams[target] || pass.name == "grpc_pass"
			} else if !strings.Contains(target, "$") {
				s.problemf("%s: %s %s: %q is not an upstream of this file", file, pass.name, pass.args[0], target)
			}
		}
	}
	for _, up := range slices.Sorted(maps.Keys(upstreams)) {
		for _, addr := range upstreams[up] {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				host, port = addr, "80"
			}
			n, _ := strconv.Atoi(port)
			svc, ok := s.file.Services[host]
			switch {
			case !ok:
				s.problemf("%s: upstream %s: server %s: %s is not a compose service", file, up, addr, host)
			case grpcUpstreams[up] && (svc.sub != "serve" || svc.listens[n] != "grpc"):
				s.problemf("%s: upstream %s passes gRPC to %s, which does not serve gRPC on port %d", file, up, addr, n)
			case svc.listens != nil && svc.listens[n] == "":
				s.problemf("%s: upstream %s: %s does not listen on port %d", file, up, host, n)
			case grpcUpstreams[up]:
				routed[host] = true
			}
		}
	}
	for _, p := range lb.Ports {
		if !listens[p.container] {
			s.problemf("service %s: publishes container port %d, where %s does not listen", lb.name, p.container, file)
		}
	}
}

// checkDialing checks the servers the streamer services connect to: each is a
// compose service the dialer depends on, listening there; and the settings a
// deployment must share (partitions, Redis) agree.
func (s *composeStack) checkDialing() {
	shared := map[string]map[string][]string{"partitions": {}, "redis": {}} // flag → value → services
	for _, name := range s.names {
		svc := s.file.Services[name]
		for flag, proto := range composeDialFlags {
			if v := svc.values[flag]; v != "" {
				s.checkDial(svc, flag, proto, v)
			}
		}
		for flag, byValue := range shared {
			if v, ok := svc.values[flag]; ok && v != "" {
				byValue[v] = append(byValue[v], name)
			}
		}
	}
	for flag, byValue := range shared {
		if len(byValue) > 1 {
			s.problemf("--%s differs between services, which must share it: %v", flag, byValue)
		}
	}
}

func (s *composeStack) checkDial(svc *composeService, flag, proto, value string) {
	hostports, replicaSet := []string{value}, ""
	if proto != "grpc" {
		scheme, rest, ok := strings.Cut(value, "://")
		if !ok || (scheme != proto && scheme != proto+"s") {
			return // unix sockets, mongodb+srv…: nothing to check here
		}
		rest, query, _ := strings.Cut(rest, "?")
		rest, _, _ = strings.Cut(rest, "/")
		if _, after, ok := strings.Cut(rest, "@"); ok {
			rest = after
		}
		hostports = strings.Split(rest, ",")
		if m := regexp.MustCompile(`(?:^|&)replicaSet=([^&]+)`).FindStringSubmatch(query); m != nil {
			replicaSet = m[1]
		}
	}
	for _, hp := range hostports {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			host, port = hp, ""
		}
		n, _ := strconv.Atoi(port)
		target, ok := s.file.Services[host]
		if !ok {
			s.problemf("service %s: --%s %s: %q is not a compose service", svc.name, flag, value, host)
			continue
		}
		if svc.DependsOn[host] == "" {
			s.problemf("service %s: connects to %s (--%s) but does not list it in depends_on", svc.name, host, flag)
		}
		switch {
		case target.listens != nil && target.listens[n] != proto:
			s.problemf("service %s: --%s %s: %s does not serve %s on port %d", svc.name, flag, value, host, proto, n)
		case s.lbListens[host] != nil && proto == "grpc" && !s.lbGRPC[host][n]:
			s.problemf("service %s: --%s %s: %s serves no gRPC on port %d", svc.name, flag, value, host, n)
		case s.lbListens[host] != nil && !s.lbListens[host][n]:
			s.problemf("service %s: --%s %s: %s does not listen on port %d", svc.name, flag, value, host, n)
		}
		if replicaSet != "" {
			s.checkReplicaSet(svc, target, replicaSet, n)
		}
	}
}

// checkReplicaSet checks the MongoDB service a --mongo URI names with
// ?replicaSet=: mongod runs with that --replSet, a healthcheck initiates the
// set, and a mounted script that calls rs.initiate uses that name and host.
func (s *composeStack) checkReplicaSet(dialer, mongo *composeService, name string, port int) {
	words := strings.Join(mongo.Command.words, " ")
	if !strings.Contains(words+" ", "--replSet "+name+" ") && !strings.Contains(words+" ", "--replSet="+name+" ") {
		s.problemf("service %s: --mongo names replica set %q, but service %s does not run mongod --replSet %s", dialer.name, name, mongo.name, name)
	}
	if mongo.Healthcheck == nil {
		s.problemf("service %s: no healthcheck; the replica set is initiated by it", mongo.name)
	}
	for _, m := range mongo.Volumes {
		if !m.bind() || !strings.HasSuffix(m.source, ".js") {
			continue
		}
		data, err := s.read(m.source)
		if err != nil || !strings.Contains(string(data), "rs.initiate") {
			continue // a missing file is reported with the bind mounts
		}
		id := regexp.MustCompile(`_id:\s*["']([^"']+)["']`).FindStringSubmatch(string(data))
		host := regexp.MustCompile(`host:\s*["']([^"']+)["']`).FindStringSubmatch(string(data))
		if id == nil {
			s.problemf("%s: calls rs.initiate without an _id; want %q", m.source, name)
		} else if id[1] != name {
			s.problemf("%s: initiates replica set %q, not %q", m.source, id[1], name)
		}
		if want := fmt.Sprintf("%s:%d", mongo.name, cmp.Or(port, 27017)); host == nil || host[1] != want {
			s.problemf("%s: the replica set member's host must be %s, what the stack's containers resolve", m.source, want)
		}
	}
}

// ngxDirective is one nginx directive; block is nil for "name args;".
type ngxDirective struct {
	name  string
	args  []string
	block []*ngxDirective
}

// ngxFind returns the directives of that name in ds and, recursively, in their blocks.
func ngxFind(ds []*ngxDirective, name string) []*ngxDirective {
	var found []*ngxDirective
	for _, d := range ds {
		if d.name == name && (d.block != nil || len(d.args) > 0) {
			found = append(found, d)
		}
		found = append(found, ngxFind(d.block, name)...)
	}
	return found
}

// parseNginxConf parses nginx's configuration syntax: directives ending in
// ";" or a "{ … }" block, "#" comments, quoted strings.
func parseNginxConf(src string) ([]*ngxDirective, error) {
	var tokens []string
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '{' || c == '}' || c == ';':
			tokens = append(tokens, string(c))
			i++
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return nil, errors.New("unterminated quoted string")
			}
			tokens = append(tokens, "\x00"+src[i+1:j]) // \x00 marks a quoted word, never a ; { }
			i = j + 1
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\r\n;{}#", rune(src[j])) {
				j++
			}
			tokens = append(tokens, src[i:j])
			i = j
		}
	}
	var parse func(depth int) ([]*ngxDirective, error)
	parse = func(depth int) ([]*ngxDirective, error) {
		var ds []*ngxDirective
		var words []string
		for len(tokens) > 0 {
			tok := tokens[0]
			tokens = tokens[1:]
			switch tok {
			case ";", "{":
				if len(words) == 0 {
					return nil, fmt.Errorf("unexpected %q", tok)
				}
				d := &ngxDirective{name: words[0], args: words[1:]}
				words = nil
				if tok == "{" {
					block, err := parse(depth + 1)
					if err != nil {
						return nil, err
					}
					if block == nil {
						block = []*ngxDirective{} // non-nil: "name { }" is a block
					}
					d.block = block
				}
				ds = append(ds, d)
			case "}":
				if depth == 0 || len(words) > 0 {
					return nil, errors.New(`unexpected "}"`)
				}
				return ds, nil
			default:
				words = append(words, strings.TrimPrefix(tok, "\x00"))
			}
		}
		if depth > 0 || len(words) > 0 {
			return nil, errors.New("unexpected end of file (missing ; or })")
		}
		return ds, nil
	}
	return parse(0)
}
