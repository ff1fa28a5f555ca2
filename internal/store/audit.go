package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// audit appends one entry to the hash-chained log. It must run inside the
// transaction that makes the change, so the entry and the change commit
// together or not at all. Taking the head row's lock first serializes
// appends across connections and replicas.
func (q *queries) audit(ctx context.Context, actor string, c audit.Change) error {
	if _, ok := q.db.(*sql.Tx); !ok {
		return fmt.Errorf("audit %s: not inside a transaction", c.Action)
	}
	var seq int64
	var prev string
	err := q.db.QueryRowContext(ctx, `UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash`).Scan(&seq, &prev)
	if err != nil {
		return unavailable(err)
	}
	e := audit.Entry{Seq: seq, At: q.now(), Actor: actor, Action: c.Action, Target: c.Target,
		Before: audit.State(c.Before), After: audit.State(c.After), Reason: c.Reason}
	e.Seal(prev)
	if _, err := q.db.ExecContext(ctx, `
		INSERT INTO audit_log (seq, at, actor, action, target, before_state, after_state, reason, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		e.Seq, e.At, e.Actor, e.Action, e.Target, string(e.Before), string(e.After), e.Reason, e.Prev, e.Hash); err != nil {
		return unavailable(err)
	}
	_, err = q.db.ExecContext(ctx, `UPDATE audit_head SET hash = $1 WHERE id = 1`, e.Hash)
	return unavailable(err)
}

// Audit records a change made in this transaction.
func (t *Tx) Audit(ctx context.Context, actor string, c audit.Change) error {
	return t.audit(ctx, actor, c)
}

// Audit records a change that has no other database write (a key rotation
// whose effect lives elsewhere, say).
func (s *Store) Audit(ctx context.Context, actor string, c audit.Change) error {
	return s.InTx(ctx, func(tx *Tx) error { return tx.audit(ctx, actor, c) })
}

// AuditFilter selects audit entries; zero fields match everything.
type AuditFilter struct {
	Actor  string // exact, or a prefix ending in "*"
	Action string // exact, or a prefix ending in "*"
	Target string
	Since  time.Time
	Until  time.Time
	Before int64 // entries with seq below this (paging backwards)
	Limit  int
}

func matchClause(col, v string, args *[]any, where *[]string) {
	if v == "" {
		return
	}
	*args = append(*args, strings.TrimSuffix(v, "*"))
	n := fmt.Sprintf("$%d", len(*args))
	if strings.HasSuffix(v, "*") {
		*where = append(*where, "substr("+col+", 1, length("+n+")) = "+n)
	} else {
		*where = append(*where, col+" = "+n)
	}
}

// AuditEntries returns matching entries, newest first.
func (q *queries) AuditEntries(ctx context.Context, f AuditFilter) ([]audit.Entry, error) {
	var where []string
	var args []any
	matchClause("actor", f.Actor, &args, &where)
	matchClause("action", f.Action, &args, &where)
	matchClause("target", f.Target, &args, &where)
	for _, c := range []struct {
		op string
		v  any
		ok bool
	}{{"at >= ", f.Since.UTC(), !f.Since.IsZero()}, {"at < ", f.Until.UTC(), !f.Until.IsZero()}, {"seq < ", f.Before, f.Before > 0}} {
		if c.ok {
			args = append(args, c.v)
			where = append(where, fmt.Sprintf("%s$%d", c.op, len(args)))
		}
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	sqlText := `SELECT seq, at, actor, action, target, before_state, after_state, reason, prev_hash, hash FROM audit_log`
	if len(where) > 0 {
		sqlText += " WHERE " + strings.Join(where, " AND ")
	}
	sqlText += fmt.Sprintf(" ORDER BY seq DESC LIMIT %d", f.Limit)
	rows, err := q.db.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []audit.Entry{}
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, e)
	}
	return out, unavailable(rows.Err())
}

func scanAudit(row interface{ Scan(...any) error }) (audit.Entry, error) {
	var e audit.Entry
	var before, after string
	err := row.Scan(&e.Seq, &e.At, &e.Actor, &e.Action, &e.Target, &before, &after, &e.Reason, &e.Prev, &e.Hash)
	e.At = e.At.UTC()
	e.Before, e.After = []byte(before), []byte(after)
	return e, err
}

// AuditReport is the outcome of checking the whole chain.
type AuditReport struct {
	Entries  int64        `json:"entries"`
	Head     audit.Anchor `json:"-"`
	HeadText string       `json:"head"`
	Problems []string     `json:"problems"`
	Intact   bool         `json:"intact"`
}

// VerifyAudit walks the whole chain in order, recomputing every hash, and
// compares its end with the head row. With anchors, it also checks that
// each anchored entry still has the hash recorded earlier.
func (s *Store) VerifyAudit(ctx context.Context, anchors ...audit.Anchor) (AuditReport, error) {
	var rep AuditReport
	err := s.InTx(ctx, func(tx *Tx) error {
		var headSeq int64
		var headHash string
		if err := tx.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&headSeq, &headHash); err != nil {
			return unavailable(err)
		}
		rows, err := tx.db.QueryContext(ctx, `SELECT seq, at, actor, action, target, before_state, after_state, reason, prev_hash, hash FROM audit_log ORDER BY seq`)
		if err != nil {
			return unavailable(err)
		}
		defer rows.Close()
		v := audit.NewVerifier()
		want := map[int64]string{}
		for _, a := range anchors {
			want[a.Seq] = a.Hash
		}
		var anchorProblems []string
		for rows.Next() {
			e, err := scanAudit(rows)
			if err != nil {
				return unavailable(err)
			}
			v.Add(e)
			if h, ok := want[e.Seq]; ok {
				if h != e.Hash {
					anchorProblems = append(anchorProblems, fmt.Sprintf("entry %d no longer has the anchored hash (the chain was rewritten)", e.Seq))
				}
				delete(want, e.Seq)
			}
		}
		if err := rows.Err(); err != nil {
			return unavailable(err)
		}
		for seq := range want {
			anchorProblems = append(anchorProblems, fmt.Sprintf("anchored entry %d is missing", seq))
		}
		rep.Problems = append(v.Finish(headSeq, headHash), anchorProblems...)
		rep.Entries, rep.Head.Hash = v.Checked()
		rep.Head.Seq = rep.Entries
		rep.HeadText = rep.Head.String()
		rep.Intact = len(rep.Problems) == 0
		if rep.Problems == nil {
			rep.Problems = []string{}
		}
		return nil
	})
	return rep, err
}

// AuditEntry returns one entry by sequence number.
func (q *queries) AuditEntry(ctx context.Context, seq int64) (audit.Entry, error) {
	e, err := scanAudit(q.db.QueryRowContext(ctx, `SELECT seq, at, actor, action, target, before_state, after_state, reason, prev_hash, hash FROM audit_log WHERE seq = $1`, seq))
	if errors.Is(err, sql.ErrNoRows) {
		return e, fault.E(fault.NotFound, "no audit entry %d", seq)
	}
	return e, unavailable(err)
}
