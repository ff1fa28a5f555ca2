package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Installed is a product version a device runs.
type Installed struct {
	Product string `json:"product"`
	Version string `json:"version"`
}

// CheckInRequest is what a device reports.
type CheckInRequest struct {
	DeviceID   string            `json:"device_id"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Installed  []Installed       `json:"installed"`
}

// PayloadLink says where to fetch a payload and how to check it.
type PayloadLink struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Delta, when the server has one from the version the device reported
	// installed, rebuilds this payload from that version's file (the
	// Updater uses it when UpdaterConfig.Installed finds the file).
	Delta *DeltaLink `json:"delta,omitempty"`
}

// DeltaLink is a zstd patch-from delta from the installed version's
// payload of the same name (FromSHA256) to the offered one.
type DeltaLink struct {
	FromVersion string `json:"from_version"`
	FromSHA256  string `json:"from_sha256"`
	URL         string `json:"url"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
}

// Offer is an update a device is told to install.
type Offer struct {
	UpdateID     string        `json:"update_id"`
	DeploymentID string        `json:"deployment_id"`
	Product      string        `json:"product"`
	Version      string        `json:"version"`
	Kind         string        `json:"kind"`
	Severity     string        `json:"severity"`
	Title        string        `json:"title,omitempty"`
	Payloads     []PayloadLink `json:"payloads"`
	// Rollback marks an offer of a version older than the device runs;
	// the Updater refuses a downgrade without it.
	Rollback *RollbackOffer `json:"rollback,omitempty"`
	// OfferReceipt is the server's signed record of this offer; cite it in
	// every event about the update (Offer.Event does), or the event does
	// not count toward the release's health.
	OfferReceipt string `json:"offer_receipt,omitempty"`
}

// RollbackOffer says which deployment an offer rolls back, from which
// version, and why.
type RollbackOffer struct {
	DeploymentID string `json:"deployment_id"`
	FromVersion  string `json:"from_version"`
	Reason       string `json:"reason"`
}

// Event returns an event of type typ about this offer, citing its receipt.
func (o Offer) Event(eventID, deviceID, typ string, at time.Time) DeviceEvent {
	return DeviceEvent{EventID: eventID, DeviceID: deviceID, UpdateID: o.UpdateID, DeploymentID: o.DeploymentID,
		Type: typ, Time: at, OfferReceipt: o.OfferReceipt}
}

// CheckInResponse is the server's answer to a check-in.
type CheckInResponse struct {
	Offers           []Offer `json:"offers"`
	NextCheckSeconds int     `json:"next_check_seconds"`
}

// CheckIn reports a device and returns its offers.
func (c *Client) CheckIn(ctx context.Context, req CheckInRequest) (CheckInResponse, error) {
	var out CheckInResponse
	err := c.do(ctx, http.MethodPost, "/v1/device/check", nil, req, &out)
	return out, err
}

// Download fetches a payload into dst in ranged requests of at most chunk
// bytes (the whole file in one request when chunk <= 0) and verifies its
// size and SHA-256 against the offer; on a mismatch it returns an error and
// the caller must discard what was written.
func (c *Client) Download(ctx context.Context, p PayloadLink, dst io.Writer, chunk int64) error {
	if chunk <= 0 {
		chunk = p.Size
	}
	h := sha256.New()
	w := io.MultiWriter(dst, h)
	var got int64
	for got < p.Size {
		end := min(got+chunk, p.Size) - 1
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(p.URL, nil), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", got, end))
		resp, err := c.send(req)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusPartialContent && !(resp.StatusCode == http.StatusOK && got == 0 && end == p.Size-1) {
			resp.Body.Close()
			return fmt.Errorf("download %s: expected a partial answer, got %s", p.Name, resp.Status)
		}
		n, err := io.Copy(w, io.LimitReader(resp.Body, end-got+1))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if n != end-got+1 {
			return fmt.Errorf("download %s: range %d-%d returned %d bytes", p.Name, got, end, n)
		}
		got += n
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != p.SHA256 {
		return fmt.Errorf("download %s: SHA-256 %s does not match the offer's %s", p.Name, sum, p.SHA256)
	}
	return nil
}
