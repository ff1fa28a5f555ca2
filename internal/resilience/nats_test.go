package resilience

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/eventlog"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// natsServer returns Debian's nats-server, or skips t loudly without it
// (fails with RINGMASTER_REQUIRE_NATS_SERVER, as in .ci/run).
func natsServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Getenv("RINGMASTER_REQUIRE_NATS_SERVER") != "" {
			t.Fatal("nats-server is required (RINGMASTER_REQUIRE_NATS_SERVER) but not installed: apt-get install nats-server")
		}
		t.Skip("SKIPPED: nats-server (Debian package nats-server) is not installed; .ci/run installs it")
	}
	return bin
}

// natsCluster starts n nats-server processes (Debian's nats-server) as a
// JetStream cluster and returns their client URLs and processes by name,
// once the cluster has elected its meta leader.
func natsCluster(t *testing.T, n int) ([]string, map[string]*exec.Cmd) {
	t.Helper()
	urls, start := natsNodes(t, n)
	procs := map[string]*exec.Cmd{}
	for i := range n {
		name, cmd := start(i)
		procs[name] = cmd
	}
	waitMetaLeader(t, urls)
	return urls, procs
}

// natsNodes configures n nats-server processes as one JetStream cluster
// and returns their client URLs and a function starting node i (killed
// when t ends).
func natsNodes(t *testing.T, n int) ([]string, func(i int) (string, *exec.Cmd)) {
	t.Helper()
	bin := natsServer(t)
	var urls, routes []string
	ports := make([][2]int, n)
	for i := range ports {
		ports[i] = [2]int{freePort(t), freePort(t)}
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i][0]))
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i][1]))
	}
	return urls, func(i int) (string, *exec.Cmd) {
		name := fmt.Sprintf("n%d", i+1)
		cmd := exec.Command(bin, "-js", "-sd", filepath.Join(t.TempDir(), name), "-a", "127.0.0.1", "-p", fmt.Sprint(ports[i][0]),
			"-n", name, "--cluster_name", "ringmaster-test", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return name, cmd
	}
}

// waitMetaLeader waits until the cluster at urls answers JetStream
// requests (it has a meta leader).
func waitMetaLeader(t *testing.T, urls []string) {
	t.Helper()
	nc, err := nats.Connect(strings.Join(urls, ","), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	apptest.WaitFor(t, 2*time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
}

// signalWriter closes seen when a write contains phrase.
type signalWriter struct {
	phrase string
	seen   chan struct{}
	once   sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.phrase) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

// TestEventLogWaitsForFormingCluster: a server started with a NATS
// cluster whose third node is not up yet (so no three peers to place the
// stream's replicas on) waits for it rather than failing to start, and
// then has the stream on all three.
func TestEventLogWaitsForFormingCluster(t *testing.T) {
	urls, start := natsNodes(t, 3)
	start(0)
	start(1)
	waitMetaLeader(t, urls) // two of three elect a leader
	w := &signalWriter{phrase: "waiting for the NATS cluster", seen: make(chan struct{})}
	type opened struct {
		l   *eventlog.Log
		err error
	}
	done := make(chan opened, 1)
	go func() {
		l, err := eventlog.Open(context.Background(), eventlog.Config{URL: strings.Join(urls, ","), Log: slog.New(slog.NewTextHandler(w, nil))})
		done <- opened{l, err}
	}()
	select {
	case o := <-done:
		t.Fatalf("Open with two of three nodes up returned without waiting: %v", o.err)
	case <-w.seen:
	}
	start(2)
	o := <-done
	if o.err != nil {
		t.Fatalf("Open once the third node is up: %v", o.err)
	}
	defer o.l.Close()
	if info := eventStreamInfo(t, urls); info.Config.Replicas != 3 {
		t.Fatalf("the event stream has %d replicas, want 3", info.Config.Replicas)
	}
}

// TestNATSCluster: the event log on a 3-node NATS cluster is a stream
// with three replicas; with its leader killed (SIGKILL) in the middle of
// a stream of device reports, ingestion goes on and every report the
// server accepted is counted, once.
func TestNATSCluster(t *testing.T) {
	ctx := context.Background()
	urls, nodes := natsCluster(t, 3)
	s := apptest.Start(t, "", func(c *config.Config) { c.EventsURL = strings.Join(urls, ",") })

	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(ctx, eventlog.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("the event stream on a 3-node cluster: %+v, %v", info, err)
	}
	leader := info.Cluster.Leader

	apptest.Publish(t, s.Admin, "agent", "2.0", "agent 2.0")
	dep, err := s.Admin.Deploy(ctx, "agent", "2.0")
	if err != nil {
		t.Fatal(err)
	}
	const devices = 40
	report := func(i int) {
		t.Helper()
		id := fmt.Sprintf("dev-%02d", i)
		c, _ := client.New(s.URL, s.DeviceCredential(id))
		r, err := c.CheckIn(ctx, client.CheckInRequest{DeviceID: id, Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
		if err != nil || len(r.Offers) != 1 {
			t.Fatalf("%s check-in: %+v, %v", id, r, err)
		}
		ev := r.Offers[0].Event(id+"-installed", id, "install_succeeded", time.Now().UTC())
		// A device sends again what was not accepted (the server may say
		// unavailable for the moment a new leader takes over).
		apptest.WaitFor(t, time.Minute, func() bool {
			res, err := c.SendEvents(ctx, []client.DeviceEvent{ev})
			return err == nil && res.Accepted == 1
		})
	}
	for i := range devices / 2 {
		report(i)
	}
	if err := nodes[leader].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := devices / 2; i < devices; i++ {
		report(i)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		h, err := s.Admin.DeploymentHealth(ctx, dep.ID)
		if err == nil && h.Health.Overall.Failure.Of >= devices {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted reports counted after 2 minutes (%v)", h.Health.Overall.Failure.Of, devices, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h, _ := s.Admin.DeploymentHealth(ctx, dep.ID); h.Health.Overall.Failure.Of != devices {
		t.Fatalf("%d reports counted; %d were accepted", h.Health.Overall.Failure.Of, devices)
	}
}
