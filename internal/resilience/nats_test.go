package resilience

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	bin := natsServer(t)
	var urls, routes []string
	ports := make([][2]int, n)
	for i := range ports {
		ports[i] = [2]int{freePort(t), freePort(t)}
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i][0]))
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[i][1]))
	}
	procs := map[string]*exec.Cmd{}
	for i, p := range ports {
		name := fmt.Sprintf("n%d", i+1)
		cmd := exec.Command(bin, "-js", "-sd", filepath.Join(t.TempDir(), name), "-a", "127.0.0.1", "-p", fmt.Sprint(p[0]),
			"-n", name, "--cluster_name", "ringmaster-test", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[name] = cmd
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
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
	return urls, procs
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
