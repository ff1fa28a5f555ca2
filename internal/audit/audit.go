// Package audit defines the append-only, hash-chained audit log: every
// change by a person, token, agent or automatic gate is one entry, and each
// entry's hash covers the previous entry's hash, so editing or deleting any
// entry breaks the chain from that point on.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Genesis is the previous hash of the first entry.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// Entry is one audited change.
type Entry struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	// Before and After are the changed object as JSON ("null" when it did
	// not exist, or for actions without a state).
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
	Reason string          `json:"reason,omitempty"`
	Prev   string          `json:"prev_hash"`
	Hash   string          `json:"hash"`
}

// Change is what a caller records; the store fills in the rest.
type Change struct {
	Action string
	Target string
	Before any
	After  any
	Reason string
}

// Seal sets e.Prev and e.Hash, chaining e after prev.
func (e *Entry) Seal(prev string) {
	e.Prev = prev
	e.Hash = e.compute()
}

// compute hashes the entry's content and its predecessor's hash. Fields are
// length-prefixed so no choice of values can shift one field into another.
func (e *Entry) compute() string {
	h := sha256.New()
	for _, f := range []string{
		e.Prev, strconv.FormatInt(e.Seq, 10), e.At.UTC().Format(time.RFC3339Nano),
		e.Actor, e.Action, e.Target, string(e.Before), string(e.After), e.Reason,
	} {
		h.Write([]byte(strconv.Itoa(len(f))))
		h.Write([]byte{':'})
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// State renders v as the JSON stored in Before/After.
func State(v any) json.RawMessage {
	if v == nil {
		return json.RawMessage("null")
	}
	if raw, ok := v.(json.RawMessage); ok {
		return raw
	}
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(strconv.Quote("unencodable: " + err.Error()))
	}
	return b
}

// Verifier checks a chain entry by entry, in sequence order.
type Verifier struct {
	prev     string
	seq      int64
	problems []string
}

// NewVerifier starts a verification at the genesis.
func NewVerifier() *Verifier { return &Verifier{prev: Genesis} }

// maxProblems bounds the report; one problem already means tampering.
const maxProblems = 50

func (v *Verifier) problem(format string, args ...any) {
	if len(v.problems) < maxProblems {
		v.problems = append(v.problems, fmt.Sprintf(format, args...))
	}
}

// Add checks the next entry.
func (v *Verifier) Add(e Entry) {
	switch {
	case e.Seq > v.seq+1:
		v.problem("entries %d-%d are missing (deleted)", v.seq+1, e.Seq-1)
	case e.Seq <= v.seq:
		v.problem("entry %d is out of order", e.Seq)
	}
	if e.Prev != v.prev {
		v.problem("entry %d does not follow entry %d: its previous hash differs (an entry before it was edited, removed or inserted)", e.Seq, v.seq)
	}
	if got := e.compute(); got != e.Hash {
		v.problem("entry %d was edited: its content does not match its hash", e.Seq)
	}
	v.prev, v.seq = e.Hash, e.Seq
}

// Finish compares the chain's end with the recorded head and returns every
// problem found; none means the chain is intact.
func (v *Verifier) Finish(headSeq int64, headHash string) []string {
	if headSeq != v.seq || headHash != v.prev {
		v.problem("the chain ends at entry %d but the head records entry %d (newest entries deleted, or the head edited)", v.seq, headSeq)
	}
	return v.problems
}

// Checked is how many entries were checked, and the last hash.
func (v *Verifier) Checked() (int64, string) { return v.seq, v.prev }

// Anchor is a (seq, hash) pair recorded outside the database, e.g. from an
// earlier `ringmaster audit verify`; a chain that no longer contains it has
// been rewritten wholesale.
type Anchor struct {
	Seq  int64
	Hash string
}

// ParseAnchor reads "SEQ:HASH".
func ParseAnchor(s string) (Anchor, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	if !ok || err != nil || n < 1 || len(hash) != 64 {
		return Anchor{}, fmt.Errorf("an anchor is SEQ:HASH as printed by `ringmaster audit verify`, not %q", s)
	}
	return Anchor{Seq: n, Hash: strings.ToLower(hash)}, nil
}

func (a Anchor) String() string { return strconv.FormatInt(a.Seq, 10) + ":" + a.Hash }

type actorKey struct{}

// WithActor records who is acting in ctx, for the store to audit.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor recorded in ctx, or "system".
func ActorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return "system"
}
