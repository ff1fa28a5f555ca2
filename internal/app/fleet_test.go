package app_test

import (
	"context"
	"sync"
	"testing"

	"github.com/ringmaster/ringmaster/client"
)

// enrolledFleet sends events the way enrolled devices do: each device enrolls once
// with a real enrollment key and sends only its own events, with its own
// credential.
type enrolledFleet struct {
	t     *testing.T
	url   string
	key   string
	base  *client.Client
	mu    sync.Mutex
	creds map[string]string
}

func newFleet(t *testing.T, url string, admin *client.Client) *enrolledFleet {
	t.Helper()
	_, secret, err := admin.CreateEnrollmentKey(context.Background(), "test-fleet", "")
	if err != nil {
		t.Fatal(err)
	}
	base, _ := client.New(url, "")
	return &enrolledFleet{t: t, url: url, key: secret, base: base, creds: map[string]string{}}
}

// device returns the client of an enrolled device.
func (f *enrolledFleet) device(id string) *client.Client {
	f.t.Helper()
	return f.base.WithToken(f.credential(id))
}

// credential enrolls a device (once) and returns its credential.
func (f *enrolledFleet) credential(id string) string {
	f.t.Helper()
	f.mu.Lock()
	c, ok := f.creds[id]
	f.mu.Unlock()
	if ok {
		return c
	}
	e, err := f.base.Enroll(context.Background(), f.key, id)
	if err != nil {
		f.t.Fatalf("enroll %s: %v", id, err)
	}
	f.mu.Lock()
	f.creds[id] = e.Credential
	f.mu.Unlock()
	return e.Credential
}

// send groups events by device and sends each group with its device's
// credential, a few devices at a time; the answers are summed.
func (f *enrolledFleet) send(ctx context.Context, events []client.DeviceEvent) (client.EventsResponse, error) {
	var order []string
	byDevice := map[string][]client.DeviceEvent{}
	for _, e := range events {
		if _, ok := byDevice[e.DeviceID]; !ok {
			order = append(order, e.DeviceID)
		}
		byDevice[e.DeviceID] = append(byDevice[e.DeviceID], e)
	}
	var (
		mu    sync.Mutex
		total client.EventsResponse
		first error
		wg    sync.WaitGroup
		work  = make(chan string)
	)
	for range 8 {
		wg.Go(func() {
			for id := range work {
				r, err := f.device(id).SendEvents(ctx, byDevice[id])
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				total.Accepted += r.Accepted
				total.Rejected += r.Rejected
				total.Unauthenticated += r.Unauthenticated
				total.Results = append(total.Results, r.Results...)
				mu.Unlock()
			}
		})
	}
	for _, id := range order {
		work <- id
	}
	close(work)
	wg.Wait()
	return total, first
}

// devices returns the server's test fleet, creating it on first use.
func (s *server) devices(t *testing.T) *enrolledFleet {
	if s.enrolled == nil {
		s.enrolled = newFleet(t, s.url, s.admin)
	}
	return s.enrolled
}
