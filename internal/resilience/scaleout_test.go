package resilience

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	omahaclient "github.com/flatcar/go-omaha/omaha/client"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/cli"
	"github.com/ringmaster/ringmaster/internal/dbtest"
	"github.com/ringmaster/ringmaster/internal/eventlog"
	"github.com/ringmaster/ringmaster/internal/s3test"
)

func TestMain(m *testing.M) {
	// The scale-out test runs this binary as Ringmaster replicas.
	if os.Getenv("RINGMASTER_TEST_CHILD") == "serve" {
		ctx, _ := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		os.Exit(cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(dbtest.Main(m))
}

// process is a Ringmaster replica in a process of its own, so it can be
// killed with SIGKILL.
type process struct {
	name, data string
	env        []string
	cmd        *exec.Cmd
	url        string
	done       chan struct{}
}

var servingRE = regexp.MustCompile(`msg="ringmaster serving" addr=(\S+)`)

func startProcess(t *testing.T, name, data string, env []string) *process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{name: name, data: data, env: env, done: make(chan struct{})}
	p.cmd = exec.Command(exe, "serve", "--data", data, "--listen", "127.0.0.1:0")
	p.cmd.Env = append(os.Environ(), append([]string{"RINGMASTER_TEST_CHILD=serve"}, env...)...)
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if m := servingRE.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
			if !strings.Contains(line, "level=INFO") && !strings.Contains(line, "level=DEBUG") {
				t.Log(name+":", line)
			}
		}
		p.cmd.Wait()
		close(p.done)
	}()
	select {
	case p.url = <-addr:
	case <-p.done:
		t.Fatalf("replica %s exited before serving", name)
	case <-time.After(90 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("replica %s did not start", name)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	return p
}

func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// restart starts a killed replica again on its data directory.
func (p *process) restart(t *testing.T) *process {
	return startProcess(t, p.name, p.data, p.env)
}

func (p *process) admin(t *testing.T, token string) *client.Client {
	c, err := client.New(p.url, token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestScaleOut runs Ringmaster as it runs at scale: three replicas in
// processes of their own, on one PostgreSQL server, a 3-node NATS cluster
// and an S3 server (versitygw), and takes each piece away in turn.
//
//   - A 50 MB upload starts on replica A, A is killed mid-upload, and the
//     upload resumes and completes on B; C offers the release at once
//     (LISTEN/NOTIFY), and the SDK updater verifies what it downloads
//     through C's presigned redirect.
//   - A gated rollout to enrolled devices spread over the replicas loses
//     the controller's leader (the River leader) and a NATS node
//     mid-rollout; it still pauses on the regression, and the counted
//     reports equal exactly the reports sent.
//   - PostgreSQL is stopped, and then frozen with SIGSTOP: every replica
//     keeps offering (to native and Omaha clients), the SDK updater
//     installs, events are accepted, and
//     admin writes fail fast as unavailable; when it is back the counts
//     catch up exactly.
func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("scale-out test: skipped with -short")
	}
	ctx := context.Background()
	pg := dbtest.OwnPostgres(t)
	natsURLs, nodes := natsCluster(t, 3)
	s3 := s3test.Start(t)
	cfgFile := filepath.Join(t.TempDir(), "ringmaster.yaml")
	// One test process plays the whole fleet from 127.0.0.1.
	if err := os.WriteFile(cfgFile, []byte(`device_rate: {rate: 0}
source_rate: {rate: 0}
enroll_rate: {rate: 0}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(s3.Env(), "RINGMASTER_CONFIG="+cfgFile, "RINGMASTER_DATABASE="+pg.URL,
		"RINGMASTER_EVENTS_URL="+strings.Join(natsURLs, ","), "RINGMASTER_KEY_PASSPHRASE=one passphrase for every replica",
		"RINGMASTER_CONTENT_S3_PRESIGN=10m", "RINGMASTER_ADMIN_TIMEOUT=3s", "RINGMASTER_ROLLOUT_TICK=1s",
		"RINGMASTER_JOB_POLL=100ms", "RINGMASTER_JOB_RESCUE_AFTER=3s", "RINGMASTER_INGEST_TIMEOUT=5s",
		"RINGMASTER_REGISTRY_FLUSH=100ms", "RINGMASTER_SNAPSHOT_POLL=1h") // changes arrive by LISTEN/NOTIFY
	a := startProcess(t, "A", t.TempDir(), env)
	token, err := os.ReadFile(filepath.Join(a.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(token))
	b := startProcess(t, "B", t.TempDir(), env)
	c := startProcess(t, "C", t.TempDir(), env)
	adminB := b.admin(t, tok)
	_, secret, err := adminB.CreateEnrollmentKey(ctx, "fleet", "")
	if err != nil {
		t.Fatal(err)
	}
	// enroll returns a device's credential, enrolled at replica p.
	enroll := func(p *process, id string) string {
		t.Helper()
		anon, _ := client.New(p.url, "")
		e, err := anon.Enroll(ctx, secret, id)
		if err != nil {
			t.Fatalf("enroll %s at %s: %v", id, p.name, err)
		}
		return e.Credential
	}
	at := func(p *process, credential string) *client.Client {
		d, _ := client.New(p.url, credential)
		return d
	}

	// 1. An upload outlives the replica it began on.
	payload := filepath.Join(t.TempDir(), "os.img")
	data := make([]byte, 50<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(payload, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	sha, size := hex.EncodeToString(sum[:]), int64(len(data))
	adminA := a.admin(t, tok)
	if _, err := adminA.PutProduct(ctx, client.Product{Name: "os"}); err != nil {
		t.Fatal(err)
	}
	u, err := adminA.CreateUpdate(ctx, client.NewUpdate{Product: "os", Version: "5.0",
		Payloads: []client.NewPayload{{Name: "os.img", SHA256: sha, Size: size}}})
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/updates/" + u.ID + "/payloads/" + sha
	offsetAt := func(p *process) int64 {
		req, _ := http.NewRequest(http.MethodHead, p.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		n, _ := strconv.ParseInt(res.Header.Get("Upload-Offset"), 10, 64)
		return n
	}
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPut, a.url+path, pr)
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", size-1, size))
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
	}()
	if _, err := pw.Write(data[:20<<20]); err != nil {
		t.Fatal(err)
	}
	// Two whole parts are in the bucket: B sees them.
	apptest.WaitFor(t, time.Minute, func() bool { return offsetAt(b) >= 16<<20 })
	a.kill(t)
	pw.CloseWithError(io.ErrClosedPipe)
	kept := offsetAt(b)
	if kept < 16<<20 || kept >= size {
		t.Fatalf("after A died mid-upload, B reports %d of %d bytes", kept, size)
	}
	t.Logf("A killed mid-upload: %d of %d bytes kept in the bucket; the rest goes to B", kept, size)
	if err := adminB.Upload(ctx, u.ID, u.Payloads[0], bytes.NewReader(data), client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := adminB.Publish(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	apptest.WaitFor(t, 2*time.Minute, func() bool {
		got, err := adminB.Update(ctx, u.ID)
		if err == nil && got.State == "failed" {
			t.Fatalf("publish failed: %s", got.FailureReason)
		}
		return err == nil && got.State == "published"
	})
	devC := at(c, enroll(c, "dev-c"))
	if _, err := adminB.Deploy(ctx, "os", "5.0"); err != nil {
		t.Fatal(err)
	}
	deployed := time.Now()
	var offer client.Offer
	apptest.WaitFor(t, 30*time.Second, func() bool {
		r, err := devC.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-c", Installed: []client.Installed{{Product: "os", Version: "4.0"}}})
		if err == nil && len(r.Offers) == 1 {
			offer = r.Offers[0]
		}
		return offer.UpdateID != ""
	})
	t.Logf("deployed through B, offered at C %v later (its own poll is an hour: LISTEN/NOTIFY told it)", time.Since(deployed).Round(time.Millisecond))
	root := get(t, c.url+"/v1/tuf/1.root.json")
	up, err := devC.NewUpdater(client.UpdaterConfig{TrustedRoot: root, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	files, err := up.Fetch(ctx, offer, t.TempDir())
	if err != nil || len(files) != 1 {
		t.Fatalf("the SDK updater at C: %v", err)
	}
	if got, _, _ := client.HashFile(files[0]); got != sha {
		t.Fatalf("installed bytes hash to %s, not %s", got, sha)
	}
	res, err := http.Get(c.url + "/v1/content/" + sha)
	if err == nil {
		res.Body.Close()
	}
	if err != nil || res.Request.URL.Host != strings.TrimPrefix(s3.Endpoint, "http://") {
		t.Fatalf("a download at C should end at the bucket through a presigned URL: %v", err)
	}

	// 2. A gated rollout survives losing its leader and a NATS node.
	a = a.restart(t)
	replicas := []*process{a, b, c}
	agent := filepath.Join(t.TempDir(), "agent.bin")
	os.WriteFile(agent, []byte("agent 2.0"), 0o600)
	if _, err := adminB.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "2.0"}, []string{agent}, client.PublishOptions{Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	const fleet = 120
	creds := make([]string, fleet)
	for i := range creds {
		creds[i] = enroll(replicas[i%3], fmt.Sprintf("dev-%03d", i))
	}
	dep, err := adminB.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 50}, {Percent: 100}}, Bake: "1h",
		Gate: &client.Gate{BaselineFailure: 0.02}})
	if err != nil {
		t.Fatal(err)
	}
	gen := generation(t, b)
	for _, p := range replicas {
		apptest.WaitFor(t, 30*time.Second, func() bool { return generation(t, p) >= gen })
	}
	var reports []client.DeviceEvent
	var senders []int
	for i, cred := range creds {
		id := fmt.Sprintf("dev-%03d", i)
		r, err := at(replicas[i%3], cred).CheckIn(ctx, client.CheckInRequest{DeviceID: id, Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Offers) == 1 {
			typ := "install_succeeded"
			if len(reports)%2 == 0 {
				typ = "install_failed" // half fail, against a baseline of 2%
			}
			reports = append(reports, r.Offers[0].Event(id+"-report", id, typ, time.Now().UTC()))
			senders = append(senders, i)
		}
	}
	if len(reports) < 30 || len(reports) > 90 {
		t.Fatalf("%d of %d devices offered a first wave of 50%%", len(reports), fleet)
	}
	failed := (len(reports) + 1) / 2
	send := func(k int, alive []*process) {
		t.Helper()
		i := senders[k]
		d := at(alive[i%len(alive)], creds[i])
		// A device sends again what was not accepted (a NATS node's
		// death may answer unavailable for a moment).
		apptest.WaitFor(t, time.Minute, func() bool {
			res, err := d.SendEvents(ctx, []client.DeviceEvent{reports[k]})
			return err == nil && res.Accepted == 1
		})
	}
	half := len(reports) / 2
	for k := range half {
		send(k, replicas)
	}
	// The first A's lease lapses before a live replica leads.
	var leader int
	apptest.WaitFor(t, time.Minute, func() bool {
		leader = riverLeader(t, pg.URL)
		return slices.ContainsFunc(replicas, func(p *process) bool { return p.cmd.Process.Pid == leader })
	})
	var alive []*process
	for _, p := range replicas {
		if p.cmd.Process.Pid == leader {
			p.kill(t)
			t.Logf("killed replica %s, the controller's leader", p.name)
			continue
		}
		alive = append(alive, p)
	}
	if len(alive) != 2 {
		t.Fatalf("the River leader (pid %d) is none of the replicas", leader)
	}
	streamLeader := natsStreamLeader(t, natsURLs)
	if err := nodes[streamLeader].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for k := half; k < len(reports); k++ {
		send(k, alive)
	}
	adminAlive := alive[0].admin(t, tok)
	apptest.WaitFor(t, 2*time.Minute, func() bool {
		d, err := adminAlive.Deployment(ctx, dep.ID)
		return err == nil && d.State == "paused"
	})
	if d, _ := adminAlive.Deployment(ctx, dep.ID); d.By != "health-gate" || !strings.Contains(d.Reason, "regressed") {
		t.Fatalf("paused by %q: %q", d.By, d.Reason)
	}
	counted := func(depID string, succeeded, failed int64) {
		t.Helper()
		var h client.Health
		apptest.WaitFor(t, 2*time.Minute, func() bool {
			h, err = adminAlive.DeploymentHealth(ctx, depID)
			return err == nil && h.Health.Overall.Devices["install_succeeded"]+h.Health.Overall.Devices["install_failed"] >= succeeded+failed
		})
		time.Sleep(2 * time.Second) // a double count would show by now
		h, _ = adminAlive.DeploymentHealth(ctx, depID)
		if h.Health.Overall.Devices["install_succeeded"] != succeeded || h.Health.Overall.Devices["install_failed"] != failed {
			t.Fatalf("counted %v; sent %d succeeded and %d failed", h.Health.Overall.Devices, succeeded, failed)
		}
	}
	counted(dep.ID, int64(len(reports)-failed), int64(failed))

	// 3. PostgreSQL stops, then hangs; devices do not notice.
	for i, p := range replicas {
		if p.cmd.ProcessState != nil {
			replicas[i] = p.restart(t)
		}
	}
	tool := filepath.Join(t.TempDir(), "tool.bin")
	os.WriteFile(tool, []byte("tool 1.0"), 0o600)
	adminB = replicas[1].admin(t, tok)
	if _, err := adminB.PublishFiles(ctx, client.NewUpdate{Product: "tool", Version: "1.0"}, []string{tool}, client.PublishOptions{Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	toolDep, err := adminB.Deploy(ctx, "tool", "1.0")
	if err != nil {
		t.Fatal(err)
	}
	gen = generation(t, replicas[1])
	for _, p := range replicas {
		apptest.WaitFor(t, 30*time.Second, func() bool { return generation(t, p) >= gen })
	}
	outage := func(round string, n int) {
		t.Helper()
		for i, p := range replicas {
			device := fmt.Sprintf("dev-%03d", n*3+i)
			d := at(p, creds[n*3+i])
			r, err := d.CheckIn(ctx, client.CheckInRequest{DeviceID: device, Installed: []client.Installed{{Product: "tool", Version: "0.9"}}})
			if err != nil || len(r.Offers) != 1 {
				t.Fatalf("%s: check-in at %s: %+v, %v", round, p.name, r, err)
			}
			up, err := d.NewUpdater(client.UpdaterConfig{TrustedRoot: root, CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if files, err := up.Fetch(ctx, r.Offers[0], t.TempDir()); err != nil || len(files) != 1 {
				t.Fatalf("%s: the SDK updater at %s: %v", round, p.name, err)
			}
			// An Omaha client (update_engine's protocol) is answered too.
			oc, err := omahaclient.NewAppClient(p.url+"/v1/update/", fmt.Sprintf("omaha-%s-%d", round, i), "tool", "0.9")
			if err != nil {
				t.Fatal(err)
			}
			if up, err := oc.UpdateCheck(); err != nil || len(up.Manifests) != 1 || up.Manifests[0].Version != "1.0" {
				t.Fatalf("%s: an Omaha update check at %s: %+v, %v", round, p.name, up, err)
			}
			// So is a hawkBit DDI controller (SWUpdate's protocol): its
			// configData and poll are served from memory.
			ddiPoll(t, p.url+"/default/controller/v1/"+device, "TargetToken "+creds[n*3+i], round)
			ev := r.Offers[0].Event(device+"-tool-"+round, device, "install_succeeded", time.Now().UTC())
			if res, err := d.SendEvents(ctx, []client.DeviceEvent{ev}); err != nil || res.Accepted != 1 {
				t.Fatalf("%s: an event at %s: %+v, %v", round, p.name, res, err)
			}
			_, err = p.admin(t, tok).PutProduct(ctx, client.Product{Name: "tool", Title: "changed while the database is " + round})
			if !client.IsKind(err, "unavailable") {
				t.Fatalf("%s: an admin write at %s: %v", round, p.name, err)
			}
		}
	}
	adminAlive = adminB
	pg.Stop(t)
	outage("stopped", 0)
	pg.Start(t)
	counted(toolDep.ID, 3, 0)
	pg.Freeze(t)
	outage("frozen", 1)
	pg.Thaw(t)
	counted(toolDep.ID, 6, 0)
}

// ddiPoll sends a DDI controller's configData (product tool at 0.9) and
// polls, expecting an offer.
func ddiPoll(t *testing.T, base, auth, round string) {
	t.Helper()
	do := func(method, url, body string) string {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", auth)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: DDI %s %s: %v", round, method, url, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: DDI %s %s: %s %s", round, method, url, res.Status, b)
		}
		return string(b)
	}
	do("PUT", base+"/configData", `{"data": {"product": "tool", "version": "0.9"}}`)
	if b := do("GET", base, ""); !strings.Contains(b, "deploymentBase") {
		t.Fatalf("%s: a DDI poll at %s: %s", round, base, b)
	}
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", url, res.Status, b)
	}
	return b
}

var generationRE = regexp.MustCompile(`(?m)^ringmaster_snapshot_generation (\S+)$`)

// generation is the catalog generation a replica's device snapshot serves.
func generation(t *testing.T, p *process) float64 {
	m := generationRE.FindSubmatch(get(t, p.url+"/metrics"))
	if m == nil {
		t.Fatalf("no snapshot generation in %s's metrics", p.name)
	}
	g, _ := strconv.ParseFloat(string(m[1]), 64)
	return g
}

// riverLeader returns the pid of the replica River elected leader (its
// client id is host-pid).
func riverLeader(t *testing.T, dsn string) int {
	t.Helper()
	ctx := context.Background()
	var id string
	apptest.WaitFor(t, time.Minute, func() bool {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return false
		}
		defer conn.Close(ctx)
		return conn.QueryRow(ctx, `SELECT leader_id FROM river_leader`).Scan(&id) == nil
	})
	pid, err := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:])
	if err != nil {
		t.Fatalf("river leader id %q", id)
	}
	return pid
}

// natsStreamLeader names the node leading the event stream.
func natsStreamLeader(t *testing.T, urls []string) string {
	t.Helper()
	info := eventStreamInfo(t, urls)
	if info.Cluster == nil {
		t.Fatalf("event stream %+v has no cluster", info)
	}
	return info.Cluster.Leader
}

// eventStreamInfo reads the event stream's info from the servers at urls.
func eventStreamInfo(t *testing.T, urls []string) *jetstream.StreamInfo {
	t.Helper()
	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(context.Background(), eventlog.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatalf("event stream: %v", err)
	}
	return info
}
