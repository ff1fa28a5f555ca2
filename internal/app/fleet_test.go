package app_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/ringmaster/ringmaster/client"
)

// enrolledFleet sends events the way enrolled devices do: each device enrolls once
// with a real enrollment key and sends only its own events, with its own
// credential.
type enrolledFleet struct {
	t        *testing.T
	url      string
	key      string
	base     *client.Client
	admin    *client.Client
	mu       sync.Mutex
	creds    map[string]string
	products map[string]string // update id → product
}

func newFleet(t *testing.T, url string, admin *client.Client) *enrolledFleet {
	t.Helper()
	_, secret, err := admin.CreateEnrollmentKey(context.Background(), "test-fleet", "")
	if err != nil {
		t.Fatal(err)
	}
	base, _ := client.New(url, "")
	return &enrolledFleet{t: t, url: url, key: secret, base: base, creds: map[string]string{}, products: map[string]string{}, admin: admin}
}

// device returns the client of an enrolled device (from the test's own
// goroutine: it fails the test if the device cannot enroll).
func (f *enrolledFleet) device(id string) *client.Client {
	f.t.Helper()
	return f.base.WithToken(f.credential(id))
}

// credential enrolls a device (once) and returns its credential; from the
// test's own goroutine.
func (f *enrolledFleet) credential(id string) string {
	f.t.Helper()
	c, err := f.enroll(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// enroll enrolls a device once and returns its credential.
func (f *enrolledFleet) enroll(id string) (string, error) {
	f.mu.Lock()
	c, ok := f.creds[id]
	f.mu.Unlock()
	if ok {
		return c, nil
	}
	e, err := f.base.Enroll(context.Background(), f.key, id)
	if err != nil {
		return "", fmt.Errorf("enroll %s: %w", id, err)
	}
	f.mu.Lock()
	f.creds[id] = e.Credential
	f.mu.Unlock()
	return e.Credential, nil
}

// send is how honest devices report: each device checks in first (with
// the events' attributes, running each event's product at 0.0.1) and cites
// the offer receipt of each update it was offered; events about updates
// it was not offered go uncited, and the server answers them not_offered.
func (f *enrolledFleet) send(ctx context.Context, events []client.DeviceEvent) (client.EventsResponse, error) {
	return f.post(ctx, events, true)
}

// sendUncited sends events as they are, citing no offer (forged evidence).
func (f *enrolledFleet) sendUncited(ctx context.Context, events []client.DeviceEvent) (client.EventsResponse, error) {
	return f.post(ctx, events, false)
}

// citeAll has every device of events check in (a few at a time) and
// returns the events citing the offers they were made, without sending
// them: a fleet offered the update before any of it reports.
func (f *enrolledFleet) citeAll(ctx context.Context, events []client.DeviceEvent) ([]client.DeviceEvent, error) {
	var mu sync.Mutex
	var out []client.DeviceEvent
	err := fewAtATime(len(events), func(i int) error {
		cited, err := f.cite(ctx, events[i].DeviceID, events[i:i+1])
		mu.Lock()
		out = append(out, cited...)
		mu.Unlock()
		return err
	})
	return out, err
}

// fewAtATime calls fn(0) … fn(n-1), eight at a time, and returns the first
// error. fn never fails the test itself (from another goroutine that would
// leave the caller blocked).
func fewAtATime(n int, fn func(i int) error) error {
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		work  = make(chan int)
	)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if err := fn(i); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return first
}

// product returns the product of an update.
func (f *enrolledFleet) product(ctx context.Context, updateID string) (string, error) {
	f.mu.Lock()
	p, ok := f.products[updateID]
	f.mu.Unlock()
	if ok {
		return p, nil
	}
	u, err := f.admin.Update(ctx, updateID)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	f.products[updateID] = u.Product
	f.mu.Unlock()
	return u.Product, nil
}

// cite checks device id in and sets the offer receipt of every event about
// an update it is offered. Safe to call from any goroutine.
func (f *enrolledFleet) cite(ctx context.Context, id string, events []client.DeviceEvent) ([]client.DeviceEvent, error) {
	cred, err := f.enroll(id)
	if err != nil {
		return nil, err
	}
	req := client.CheckInRequest{DeviceID: id, Attributes: map[string]string{}}
	seen := map[string]bool{}
	for _, e := range events {
		for k, v := range e.Attributes {
			req.Attributes[k] = v
		}
		p, err := f.product(ctx, e.UpdateID)
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			req.Installed = append(req.Installed, client.Installed{Product: p, Version: "0.0.1"})
		}
	}
	resp, err := f.base.WithToken(cred).CheckIn(ctx, req)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(events)
	for i := range out {
		for _, o := range resp.Offers {
			if o.UpdateID == out[i].UpdateID {
				out[i].OfferReceipt = o.OfferReceipt
			}
		}
	}
	return out, nil
}

// post groups events by device and sends each group with its device's
// credential (checking in first to cite offers, when cite), a few devices
// at a time; the answers are summed.
func (f *enrolledFleet) post(ctx context.Context, events []client.DeviceEvent, cite bool) (client.EventsResponse, error) {
	var order []string
	byDevice := map[string][]client.DeviceEvent{}
	for _, e := range events {
		if _, ok := byDevice[e.DeviceID]; !ok {
			order = append(order, e.DeviceID)
		}
		byDevice[e.DeviceID] = append(byDevice[e.DeviceID], e)
	}
	var mu sync.Mutex
	var total client.EventsResponse
	err := fewAtATime(len(order), func(i int) error {
		id := order[i]
		batch := byDevice[id]
		cred, err := f.enroll(id)
		if err == nil && cite {
			batch, err = f.cite(ctx, id, batch)
		}
		var r client.EventsResponse
		if err == nil {
			r, err = f.base.WithToken(cred).SendEvents(ctx, batch)
		}
		mu.Lock()
		defer mu.Unlock()
		total.Accepted += r.Accepted
		total.Rejected += r.Rejected
		total.NotOffered += r.NotOffered
		total.Unauthenticated += r.Unauthenticated
		total.Results = append(total.Results, r.Results...)
		return err
	})
	return total, err
}

// devices returns the server's test fleet, creating it on first use.
func (s *server) devices(t *testing.T) *enrolledFleet {
	if s.enrolled == nil {
		s.enrolled = newFleet(t, s.url, s.admin)
	}
	return s.enrolled
}
